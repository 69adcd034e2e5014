"""Peak memory of ``aggregator poll`` on the 20 MiB worst cases of issue 15.

    .venv/bin/python -m bench.hostile          # prints one JSON object

Each case is one RSS item filling the response cap: 860k tiny tags, a 19 MB title,
100k-deep nesting.  It is served from loopback, polled by ``python -m aggregator
poll`` in its own process (with the default parse pool, and with
``parse_processes = 0``), and the peak of the RSS summed over that process and its
parse workers is read from ``/proc`` while it runs (Linux only).  Target: 250 MB.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TARGET_MB = 250
_CAP = 20 * 1024 * 1024


def worst_cases() -> dict[str, bytes]:
    """The three documents, each just under the 20 MiB response cap."""
    tags = "<p>text</p>" + "<b></b>" * 860_000
    deep = "<div>" * 100_000 + "x" + "</div>" * 100_000
    items = {
        "860k-tags": ("t", tags),
        "19mb-title": ("長" * 6_300_000, "<p>body</p>"),  # 19 MB of UTF-8
        "100k-deep": ("t", deep),
    }
    documents = {}
    for name, (title, body) in items.items():
        document = (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>h</title>'
            f"<item><title>{html.escape(title, quote=False)}</title>"
            "<link>https://example.org/1</link>"
            f"<description>{html.escape(body, quote=False)}</description></item>"
            "</channel></rss>"
        ).encode()
        assert len(document) < _CAP, (name, len(document))
        documents[name] = document
    return documents


def _tree(root: int) -> list[int]:
    """``root`` and its descendants now alive."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _high_water_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def poll_peak_mb(url: str, *, parse_processes: int, folder: Path) -> tuple[int, int]:
    """Run ``aggregator poll`` of one source at ``url``; return its exit code and the
    sum, over the process and its parse workers, of each one's peak RSS in MB (each
    process's high-water mark as last seen: at least the peak of the sum).

    The database is created beforehand: the migration's own child process, which
    exits before the poll starts, would otherwise be summed with the processes of
    the poll as if they ran at the same time."""
    (folder / "sources.toml").write_text(
        f'[[source]]\nid = "worst"\nname = "worst"\nurl = "{url}"\n', encoding="utf-8"
    )
    config = folder / "aggregator.toml"
    config.write_text(
        f'database_url = "sqlite:///{folder / "db.sqlite"}"\n'
        f'sources_file = "{folder / "sources.toml"}"\n'
        f"allow_private_addresses = true\nparse_processes = {parse_processes}\n"
        'log_level = "ERROR"\n',
        encoding="utf-8",
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("AGGREGATOR_")}
    command = [sys.executable, "-m", "aggregator", "--config", str(config)]
    subprocess.run([*command, "db", "upgrade"], env=env, capture_output=True, check=True)
    process = subprocess.Popen(
        [*command, "poll"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peaks: dict[int, int] = {}
    while process.poll() is None:
        for pid in _tree(process.pid):
            peaks[pid] = max(peaks.get(pid, 0), _high_water_kb(pid))
        time.sleep(0.05)
    return process.returncode, sum(peaks.values()) // 1024


@contextmanager
def _serving(documents: dict[str, bytes]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = documents[self.path.strip("/")]
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_hostile() -> dict[str, dict[str, int]]:
    """``{case: {"pool": MB, "no-pool": MB}}``; a poll that exits non-zero is -1."""
    documents = worst_cases()
    figures: dict[str, dict[str, int]] = {}
    with _serving(documents) as base:
        for name in documents:
            figures[name] = {}
            for label, processes in (("pool", -1), ("no-pool", 0)):
                with tempfile.TemporaryDirectory() as folder:
                    code, peak = poll_peak_mb(
                        f"{base}/{name}", parse_processes=processes, folder=Path(folder)
                    )
                figures[name][label] = peak if code == 0 else -1
    return figures


if __name__ == "__main__":
    print(json.dumps(run_hostile(), indent=1))
