"""The whole-daemon benchmark, side by side with lemon24/reader: one command.

    .venv/bin/python -m bench.run            # full run (~10 min once the 1M DB is cached)
    .venv/bin/python -m bench.run --quick    # smoke run, about a minute
    .venv/bin/python -m bench.run --profile  # also write cProfile reports to bench/.cache/

Prints a Markdown table (figure, measured, target, pass/fail) and writes it to
bench/results.md.  See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.archivegen import ensure_archive
from bench.corpus import CORPUS_VERSION, ManifestEntry, build_corpus, feed_ids
from bench.dbgen import ensure_db, make_due, reset, schema_key
from bench.flood import run_flood
from bench.hostile import TARGET_MB as HOSTILE_TARGET_MB
from bench.hostile import run_hostile

# The searches: two-character CJK words (rare and common in real news; in the
# generated corpus, uniform random characters, all pairs are about equally common)
# and a Latin word.
SEARCHES = {"防长": "CJK word", "香港": "CJK word", "covid": "Latin word"}
ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CACHE = BENCH / ".cache"
RUN = CACHE / "run"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- plumbing


def job(name: str, config: dict[str, Any], tag: str) -> dict[str, Any]:
    """Run one bench.workers job in a fresh child process; return its JSON result."""
    config_path = RUN / f"{tag}.config.json"
    result_path = RUN / f"{tag}.result.json"
    config_path.write_text(json.dumps(config, ensure_ascii=False))
    result_path.unlink(missing_ok=True)
    with (RUN / f"{tag}.log").open("w") as stderr:
        done = subprocess.run(
            [sys.executable, "-m", "bench.workers", name, str(config_path), str(result_path)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            check=False,
        )
    if done.returncode != 0:
        tail = (RUN / f"{tag}.log").read_text()[-3000:]
        raise RuntimeError(f"job {tag} failed ({done.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


class FeedServer:
    """bench.feedserver in its own process."""

    def __init__(self, corpus: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.feedserver", str(corpus)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.base_url = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, float]:
        with socket.create_connection(("127.0.0.1", self.port)) as conn:
            conn.sendall(b"GET /__stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        stats: dict[str, float] = json.loads(data.split(b"\r\n\r\n", 1)[1])
        return stats

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


class Daemon:
    """``aggregator run`` as users start it (the console script, in a folder holding
    ``config/``), its HTTP port set from the environment; always stopped on leaving."""

    def __init__(self, folder: Path, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        env = {name: value for name, value in os.environ.items() if "AGGREGATOR_" not in name}
        env |= {
            "AGGREGATOR_HTTP_PORT": str(port),
            "AGGREGATOR_ALLOW_PRIVATE_ADDRESSES": "true",  # the feeds are on 127.0.0.1
        }
        self.started = time.perf_counter()
        with log_path.open("w") as output:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "aggregator"), "run"],
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
            )

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def healthz(self) -> dict[str, Any] | None:
        """The daemon's /healthz, ``None`` while nothing answers on its port."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/healthz")
            body: dict[str, Any] = json.loads(connection.getresponse().read())
            return body
        except OSError:
            return None
        finally:
            connection.close()

    def wait_for(self, done: Any, what: str, timeout: float, every: float = 0.5) -> dict[str, Any]:
        """Ask /healthz every ``every`` seconds until ``done(answer)``; the answer.  A
        daemon that exits or takes longer than ``timeout`` seconds fails the figure
        with its log."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.healthz()
            if answer is not None and done(answer):
                return answer
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text()[-3000:]
                raise RuntimeError(f"aggregator run: no {what} within {timeout:.0f} s:\n{tail}")
            time.sleep(every)

    def start_up(self) -> tuple[float, float]:
        """Seconds from the start of the process to its first /healthz answer, wall
        and CPU (its own and that of the children it has waited for)."""
        self.wait_for(lambda answer: True, "/healthz answer", 60, every=0.01)
        wall = time.perf_counter() - self.started
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        # utime stime cutime cstime, after the command name (which may hold spaces)
        ticks = sum(int(field) for field in stat.rsplit(")", 1)[1].split()[11:15])
        return wall, ticks / os.sysconf("SC_CLK_TCK")


def rss_tree(pid: int) -> list[tuple[str, float]]:
    """VmRSS (MB) of a process and of each process below it, with what each is
    (``daemon``, ``resource tracker`` or ``worker``); one that has exited is left out."""
    found: list[tuple[str, float]] = []
    pending = [pid]
    while pending:
        current = pending.pop(0)
        try:
            command = Path(f"/proc/{current}/cmdline").read_bytes()
            status = Path(f"/proc/{current}/status").read_text()
            tasks = list(Path(f"/proc/{current}/task").iterdir())
            pending += [int(c) for task in tasks for c in (task / "children").read_text().split()]
        except OSError:
            continue
        rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        role = "daemon" if current == pid else "worker"
        if b"resource_tracker" in command:
            role = "resource tracker"
        found.append((role, int(rss.split()[1]) / 1024))
    return found


def toml_value(value: object) -> str:
    """A value of a ``[[source]]`` table written back as TOML (strings as JSON
    strings, which TOML reads the same)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def fresh(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


#: Re-polls per side, in one process: the running daemon re-polls every interval in
#: the same process, and one ~1 s sample on a shared VM is at the mercy of its noise.
REPOLLS = 3


#: Posts in the archive of the import figures (the issue's "archive of any size").
IMPORT_POSTS = 64_000

#: The phases of a run, each a group of figures; ``--only`` picks some.
PHASES = ("polls", "lean", "database", "hostile", "import")

#: Interleaved polls per database size for the growth figure (medians).
GROWTH_ROUNDS = 3

#: The settings and sources users start from, for the at-rest figure.
SHIPPED_CONFIG = ROOT / "config"

#: Seconds the daemon is left alone after its first poll before its memory is read:
#: the pause in which it indexes what the poll stored and hands free heap back.
REST_SECONDS = 5.0


def _rounds(result: dict[str, Any]) -> str:
    """The rounds' wall times, the first in a fresh process (its caches cold)."""
    return ", ".join(f"{wall:.2f}" for wall in result["walls"]) + " s; first in a fresh process"


def feeds_config(manifest: dict[str, ManifestEntry], ids: list[str]) -> list[list[str]]:
    return [[feed_id, manifest[feed_id]["kind"], manifest[feed_id]["name"]] for feed_id in ids]


# --------------------------------------------------------------------------- phases


@dataclass
class Row:
    figure: str
    value: str
    target: str = ""
    ok: bool | None = None

    def cells(self) -> list[str]:
        verdict = "" if self.ok is None else ("PASS" if self.ok else "**FAIL**")
        return [self.figure, self.value, self.target or "-", verdict or "-"]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.small, self.large = (20, 100) if self.quick else (200, 1000)
        self.growth = 20 if self.quick else 100
        self.mixed = 20 if self.quick else 200
        self.sizes = (1_000, 10_000) if self.quick else (10_000, 100_000, 1_000_000)
        self.archive_posts = 2_000 if self.quick else IMPORT_POSTS
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.raw: dict[str, Any] = {}
        self.loads: list[float] = [os.getloadavg()[0]]

    def add(self, figure: str, value: str, target: str = "", ok: bool | None = None) -> None:
        self.loads.append(os.getloadavg()[0])
        self.rows.append(Row(figure, value, target, ok))
        log(
            f"  {figure}: {value}"
            + (f"  (target {target}: {'PASS' if ok else 'FAIL'})" if target else "")
        )

    def ours(self, tag: str, db: Path, ids: list[str], **extra: Any) -> dict[str, Any]:
        config = {
            "db": str(db),
            "base_url": self.server.base_url,
            "feeds": feeds_config(self.manifest, ids),
            **extra,
        }
        before = self.server.stats()
        result = job("poll_ours", config, tag)
        after = self.server.stats()
        result["server_cpu"] = after["cpu"] - before["cpu"]
        result["server_requests"] = after["requests"] - before["requests"] - 1
        if result["errors"]:
            self.notes.append(f"{tag}: poll errors, first: {result['errors'][0]}")
        self.raw[tag] = result
        return result

    def reader(
        self, tag: str, db: Path, ids: list[str], add: bool, rounds: int = 1
    ) -> dict[str, Any]:
        config = {
            "db": str(db),
            "urls": [f"{self.server.base_url}/rss/{feed_id}.xml" for feed_id in ids],
            "workers": self.args.reader_workers,
            "add": add,
            "rounds": rounds,
        }
        before = self.server.stats()
        result = job("poll_reader", config, tag)
        after = self.server.stats()
        result["server_cpu"] = after["cpu"] - before["cpu"]
        if result["broken"]:
            self.notes.append(f"{tag}: reader broken feeds, first: {result['broken'][0]}")
        self.raw[tag] = result
        return result

    def entries(self, ids: list[str]) -> int:
        return sum(self.manifest[feed_id]["items"] for feed_id in ids)

    def run(self) -> None:
        RUN.mkdir(parents=True, exist_ok=True)
        for stale in RUN.iterdir():
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink()
        self.byte_compile()
        phases = self.args.only or PHASES
        if {"polls", "lean", "database", "hostile"} & set(phases) or self.args.profile:
            self.polled(phases)
        if "import" in phases:
            self.imports()  # needs neither the built corpus nor the feed server

    def byte_compile(self) -> None:
        """Byte-compile the package, as pip does when it installs one (a wheel, the
        Docker image): the figures are those of an installed aggregator.  The checkout
        the benchmark runs is an editable install, whose modules are compiled on first
        import, and where ``PYTHONDONTWRITEBYTECODE`` is set (as on this machine) not
        even then: every start compiled the 92 modules the daemon imports again
        (0.1-0.4 s of a start-up's CPU, measured by hand), and every worker its own.
        (pip compiles at install whatever that variable says: the Docker image, which
        sets it, has its ``.pyc`` files.)"""
        package = Path(__file__).resolve().parent.parent / "aggregator"
        if not compileall.compile_dir(package, quiet=1):
            raise RuntimeError(f"could not byte-compile {package}")
        self.notes.append(
            "the package was byte-compiled first, as pip does at install "
            "(PYTHONDONTWRITEBYTECODE kept an editable install compiling at every start)"
        )

    def polled(self, phases: Sequence[str]) -> None:
        """The figures that poll the corpus through the feed server."""
        log("corpus ...")
        main_ids = feed_ids(self.large, 0)
        growth_ids = feed_ids(0, self.growth)
        mixed_ids = feed_ids(0, 0, self.mixed)
        self.manifest = build_corpus(CACHE, main_ids + growth_ids + mixed_ids)
        corpus_dir = CACHE / f"corpus-v{CORPUS_VERSION}"
        total_bytes = sum(m["bytes"] for m in self.manifest.values())
        self.notes.append(
            f"corpus v{CORPUS_VERSION}: {len(main_ids)} + {len(growth_ids)} + {len(mixed_ids)} "
            "(one-shot) feeds, every fifth Atom, the rest CDATA or escaped RSS, "
            f"{self.entries(main_ids)} + {self.entries(growth_ids)} + {self.entries(mixed_ids)} "
            f"items, {total_bytes / 1e6:.0f} MB of XML "
            f"({total_bytes / max(1, self.entries(list(self.manifest))) / 1000:.1f} KB/item), "
            "served gzipped"
        )
        self.server = FeedServer(corpus_dir)
        try:
            if "polls" in phases:
                self.polls(main_ids)
                self.one_shot(mixed_ids)
            if "lean" in phases:
                self.lean(main_ids)
                self.rest(main_ids)
            if "database" in phases:
                self.database()
            if "hostile" in phases:
                self.hostile()
            if self.args.profile:
                self.profiles(main_ids[:40])
        finally:
            self.server.close()

    # -- hostile input (issue 15) -----------------------------------------------------

    def hostile(self) -> None:
        """Peak memory of a poll of each 20 MiB worst case, and a client's p99 under a
        connection flood: each in processes of their own, independent of the corpus."""
        log("hostile: worst-case polls ...")
        for case, peaks in run_hostile().items():
            for mode, peak in peaks.items():
                self.add(
                    f"poll of the {case} worst case, {mode}: peak RSS, process + workers",
                    f"{peak} MB" if peak >= 0 else "poll failed",
                    f"< {HOSTILE_TARGET_MB} MB",
                    0 <= peak < HOSTILE_TARGET_MB,
                )
        log("hostile: connection flood (60 s) ...")
        flood = run_flood()
        p99 = flood["p99_s"]
        self.add(
            "client p99 under 300 idle + 300 trickling sockets (60 s)",
            f"{p99:.3f} s, {flood['failures']} failures of {flood['requests']}"
            if p99 is not None
            else "no answer",
            "< 1 s, 0 failures",
            p99 is not None and p99 < 1 and flood["failures"] == 0,
        )

    # -- polls ---------------------------------------------------------------------

    def polls(self, main_ids: list[str]) -> None:
        small_ids = main_ids[: self.small]
        for count, ids in ((self.small, small_ids), (self.large, main_ids)):
            entries = self.entries(ids)
            log(f"full first poll, {count} feeds ({entries} entries): ours ...")
            db = fresh(RUN / f"ours-{count}.sqlite")
            ours = self.ours(f"ours-full-{count}", db, ids)
            stored = sum(ours["counts"].values())
            if stored != entries:
                self.notes.append(
                    f"ours-full-{count}: {stored} entries accounted for, expected {entries}"
                )
            rate = entries / ours["wall"]
            self.add(
                f"Full first poll, {count} feeds: ours",
                f"{rate:,.0f} entries/s ({entries} entries in {ours['wall']:.1f} s, CPU "
                f"{ours['cpu']:.1f} s + parse workers {ours['workers_cpu']:.1f} s; "
                f"feed server CPU {ours['server_cpu']:.1f} s)",
                ">= 1,500 entries/s",
                rate >= 1500,
            )
            if count == self.large:
                self.add_rss(f"Peak RSS of the daemon, {count}-feed full poll", ours)
                self.catch_up(count, entries, ours)
            else:
                self.fulltext(count, ids, ours)
            reader = None
            if not self.args.skip_reader:
                log(f"full first poll, {count} feeds: reader ...")
                rdb = fresh(RUN / f"reader-{count}.sqlite")
                reader = self.reader(f"reader-full-{count}", rdb, ids, add=True)
                rrate = entries / reader["wall"]
                self.add(
                    f"Full first poll, {count} feeds: reader",
                    f"{rrate:,.0f} entries/s ({reader['entries_stored']} stored in "
                    f"{reader['wall']:.1f} s, CPU {reader['cpu']:.1f} s, peak RSS "
                    f"{reader['VmHWM'] / 2**20:.0f} MB)",
                )
                self.add(
                    f"Full-poll speed ratio ours/reader, {count} feeds",
                    f"{rate / rrate:.2f}x",
                    ">= 3x",
                    rate / rrate >= 3,
                )
            if count == self.large:
                log(f"re-poll, {count} unchanged feeds ({REPOLLS} in one process): ours ...")
                make_due(db)
                again = self.ours(f"ours-repoll-{count}", db, ids, rounds=REPOLLS)
                not_modified = again["statuses"].get("not-modified", 0)
                if not_modified != count * REPOLLS:
                    self.notes.append(
                        f"ours re-poll: only {not_modified}/{count * REPOLLS} were 304"
                    )
                target = 1.2 * count / 1000
                wall = statistics.median(again["walls"])
                self.add(
                    f"Re-poll of {count} unchanged feeds (all 304): ours",
                    f"{wall:.2f} s wall, {statistics.median(again['cpus']):.2f} s CPU "
                    f"(median of {_rounds(again)}; feed server CPU "
                    f"{again['server_cpu']:.2f} s in all)",
                    f"<= {target:.2f} s",
                    wall <= target,
                )
                if reader is not None:
                    log(f"re-poll, {count} unchanged feeds ({REPOLLS} in one process): reader ...")
                    ragain = self.reader(
                        f"reader-repoll-{count}", rdb, ids, add=False, rounds=REPOLLS
                    )
                    rwall = statistics.median(ragain["walls"])
                    self.add(
                        f"Re-poll of {count} unchanged feeds: reader",
                        f"{rwall:.2f} s wall, {statistics.median(ragain['cpus']):.2f} s CPU "
                        f"(median of {_rounds(ragain)})",
                    )
                    ratio = wall / rwall
                    self.add(
                        f"Re-poll time ratio ours/reader, {count} feeds",
                        f"{ratio:.2f}x",
                        "<= 0.5x",
                        ratio <= 0.5,
                    )

    def one_shot(self, ids: list[str]) -> None:
        """``aggregator poll`` as a user runs it, start-up and shut-down included, on the
        independent mixed set, against reader's one-shot ``update_feeds``."""
        count, entries = len(ids), self.entries(ids)
        log(f"one-shot aggregator poll, {count} mixed feeds: ours ...")
        ours = self.cli_poll(ids)
        rate = entries / ours["wall"]
        self.add(
            f"One-shot `aggregator poll`, {count} mixed feeds: ours",
            f"{rate:,.0f} entries/s ({entries} entries in {ours['wall']:.1f} s as a whole "
            f"process, CPU {ours['cpu']:.1f} s with its children; of the wall time, "
            f"{ours['index_wall']:.1f} s the search index before it exits)",
        )
        if self.args.skip_reader:
            return
        log(f"one-shot update, {count} mixed feeds: reader ...")
        reader = self.reader(
            f"reader-oneshot-{count}", fresh(RUN / f"reader-oneshot-{count}.sqlite"), ids, add=True
        )
        rrate = entries / reader["wall"]
        self.add(
            f"One-shot update, {count} mixed feeds: reader",
            f"{rrate:,.0f} entries/s ({reader['entries_stored']} stored in "
            f"{reader['wall']:.1f} s, CPU {reader['cpu']:.1f} s)",
        )
        self.add(
            f"One-shot speed ratio ours/reader, {count} mixed feeds",
            f"{rate / rrate:.2f}x ({entries / (ours['wall'] - ours['index_wall']) / rrate:.2f}x "
            "without the time of the search index, which reader's update_feeds leaves out)",
            ">= 2x",
            rate / rrate >= 2,
        )

    def cli_poll(self, ids: list[str]) -> dict[str, float]:
        """Run ``aggregator poll`` once in a fresh process; wall and CPU (children too).

        Settings come from the environment, as a deployment would set them: the
        sources file lists the feeds, and the per-host cap is lifted to the
        concurrency as the daemon jobs lift it (all feeds share one loopback host).
        """
        sources = RUN / "oneshot-sources.toml"
        sources.write_text(
            "".join(
                f'[[source]]\nid = "{feed_id}"\nname = {json.dumps(name, ensure_ascii=False)}\n'
                f'url = "{self.server.base_url}/rss/{feed_id}.xml"\nadapter = "{kind}"\n\n'
                for feed_id, kind, name in feeds_config(self.manifest, ids)
            )
        )
        db = fresh(RUN / f"ours-oneshot-{len(ids)}.sqlite")
        env = {
            **os.environ,
            "AGGREGATOR_DATABASE_URL": f"sqlite:///{db}",
            "AGGREGATOR_SOURCES_FILE": str(sources),
            "AGGREGATOR_ALLOW_PRIVATE_ADDRESSES": "true",
            "AGGREGATOR_MAX_POLLS_PER_HOST": "8",
        }
        command = [str(Path(sys.executable).parent / "aggregator"), "poll"]
        before = os.times()
        wall = time.perf_counter()
        log_path = RUN / f"ours-oneshot-{len(ids)}.log"
        with log_path.open("w") as output:
            # cwd: a folder without config/, so no repository config file is read.
            done = subprocess.run(
                command, cwd=RUN, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output
            )
        wall = time.perf_counter() - wall
        after = os.times()
        if done.returncode != 0:
            self.notes.append(f"one-shot poll exited {done.returncode}: see its log in {RUN}")
        cpu = (after.children_user - before.children_user) + (
            after.children_system - before.children_system
        )
        # The command logs how long the search index took before it exited (a step
        # reader's update_feeds does not take: its search is updated separately).
        indexed = re.search(
            r"search index: \d+ articles indexed in ([\d.]+) s",
            log_path.read_text(encoding="utf-8", errors="replace"),
        )
        result = {"wall": wall, "cpu": cpu, "index_wall": float(indexed[1]) if indexed else 0.0}
        self.raw[f"ours-oneshot-{len(ids)}"] = result
        return result

    def fulltext(self, count: int, ids: list[str], plain: dict[str, Any]) -> None:
        """The same full first poll with ``fulltext = true``: one article page fetched,
        extracted and stored per entry, beside the plain figure."""
        entries = self.entries(ids)
        log(f"full first poll with full text, {count} feeds ({entries} pages): ours ...")
        db = fresh(RUN / f"ours-fulltext-{count}.sqlite")
        ours = self.ours(
            f"ours-fulltext-{count}",
            db,
            ids,
            fulltext=True,
            settings={"fulltext_pages_per_poll": 1000},
        )
        pages = ours["server_requests"] - count
        extra = (ours["cpu"] + ours["workers_cpu"]) - (plain["cpu"] + plain["workers_cpu"])
        self.add(
            f"Full first poll with full text, {count} feeds: ours",
            f"{entries / ours['wall']:,.0f} entries/s ({entries} entries, {pages} pages in "
            f"{ours['wall']:.1f} s, CPU {ours['cpu']:.1f} s + parse workers "
            f"{ours['workers_cpu']:.1f} s; {extra / max(1, pages) * 1000:.1f} ms of CPU per "
            f"page over the plain poll)",
        )

    def add_rss(self, figure: str, ours: dict[str, Any]) -> None:
        """Peak memory of the daemon: its own process and every process it started."""
        main = ours["VmHWM"] / 2**20
        children = [hwm / 2**20 for hwm in ours["workers_hwm"]]
        total = main + sum(children)
        started = f"{ours['rss_start'] / 2**20:.0f} MB after start-up"
        if children:
            parts = " + ".join(f"{child:.0f}" for child in children)
            detail = f"daemon process {main:.0f} MB ({started}) + pool processes {parts} MB"
        else:
            detail = f"one process ({started})"
        self.add(figure, f"{total:.0f} MB (sum of VmHWM): {detail}", "<= 150 MB", total <= 150)

    def lean(self, ids: list[str]) -> None:
        """The same poll with ``parse_processes = 0`` (parsing on a thread of the daemon):
        the setting for a machine where memory matters more than speed."""
        count, entries = len(ids), self.entries(ids)
        log(f"full first poll, {count} feeds, parse_processes = 0: ours ...")
        db = fresh(RUN / f"ours-lean-{count}.sqlite")
        ours = self.ours(f"ours-lean-{count}", db, ids, settings={"parse_processes": 0})
        rate = entries / ours["wall"]
        self.add(
            f"Full first poll, {count} feeds, parse_processes = 0: ours",
            f"{rate:,.0f} entries/s ({entries} entries in {ours['wall']:.1f} s, "
            f"CPU {ours['cpu']:.1f} s)",
        )
        self.add_rss(f"Peak RSS, {count}-feed full poll, parse_processes = 0", ours)

    def rest(self, ids: list[str]) -> None:
        """``aggregator run`` as users run it: the shipped settings and sources, each
        source's URL (mirrors dropped) a corpus feed of its adapter's kind, full text
        off (the page links are the real sites'), a fresh database.  Its start-up to
        the first /healthz answer, and the memory of the daemon and its children at
        rest after every source has polled once; then the start-up again on the
        database it left."""
        folder = RUN / "rest"
        (folder / "config").mkdir(parents=True)
        shutil.copy(SHIPPED_CONFIG / "aggregator.toml", folder / "config")
        shipped = tomllib.loads((SHIPPED_CONFIG / "sources.toml").read_text(encoding="utf-8"))
        sources = shipped["source"]
        feeds = []
        lines = []
        for source in sources:
            kind = source["adapter"]
            feed_id = next(i for i in ids if self.manifest[i]["kind"] == kind and i not in feeds)
            feeds.append(feed_id)
            kept = {key: value for key, value in source.items() if key not in ("urls", "mirrors")}
            kept["url"] = f"{self.server.base_url}/rss/{feed_id}.xml"
            # The corpus's item links name the real sites: a page fetch would leave
            # the machine.  (Full text loads trafilatura, some 20 MB more, when used.)
            kept["fulltext"] = False
            lines += ["[[source]]", *(f"{k} = {toml_value(v)}" for k, v in kept.items()), ""]
        (folder / "config" / "sources.toml").write_text("\n".join(lines), encoding="utf-8")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        entries = self.entries(feeds)
        log(f"at rest: aggregator run, shipped config, {len(sources)} sources ({entries} entries)")
        with Daemon(folder, port, RUN / "rest.log") as daemon:
            fresh_start = daemon.start_up()

            def polled(answer: dict[str, Any]) -> bool:
                states = answer.get("sources", {}).values()
                attempted = sum(1 for state in states if state["last_attempt"])
                return attempted == len(sources) and answer.get("search_backlog") == 0

            answer = daemon.wait_for(polled, "first poll of every source", 300)
            time.sleep(REST_SECONDS)
            processes = rss_tree(daemon.process.pid)
        failing = [f"{p['source']}: {p['message']}" for p in answer.get("failing", [])]
        if failing:
            self.notes.append(f"at rest: sources failing after their first poll: {failing}")
        with sqlite3.connect(f"file:{folder / 'data' / 'aggregator.db'}?mode=ro", uri=True) as db:
            (stored,) = db.execute("SELECT count(*) FROM articles").fetchone()
        db.close()
        with Daemon(folder, port, RUN / "rest-again.log") as daemon:
            migrated_start = daemon.start_up()
        total = sum(rss for _, rss in processes)
        own = processes[0][1]
        children = ", ".join(f"{role} {rss:.1f} MB" for role, rss in processes[1:]) or "none"
        self.raw["rest"] = {
            "processes": processes,
            "start_fresh": fresh_start,
            "start_migrated": migrated_start,
            "articles": stored,
        }
        self.add(
            f"Memory at rest, shipped {len(sources)}-source config after its first poll",
            f"{total:.1f} MB VmRSS (daemon {own:.1f} MB; children: {children}; "
            f"{stored} articles from {entries} entries, read {REST_SECONDS:.0f} s after "
            "the poll and its search indexing)",
            "<= 80 MB",
            total <= 80,
        )
        for when, (wall, cpu) in (("on a fresh database", fresh_start), ("again", migrated_start)):
            self.add(
                f"Start-up of `aggregator run` {when}, to its first /healthz answer",
                f"{wall:.2f} s ({cpu:.2f} s CPU; shipped config, {len(sources)} sources)",
                "< 1 s",
                wall < 1,
            )

    def profiles(self, ids: list[str]) -> None:
        """Separate, profiled runs (cProfile distorts timings, so none of them is a figure)."""
        db = fresh(RUN / "profiled.sqlite")
        for tag, title in (("full-poll", "full first poll"), ("repoll", "re-poll, all 304")):
            path = CACHE / f"profile-{tag}.txt"
            log(f"profiling: {title} of {len(ids)} feeds -> {path}")
            self.ours(
                f"profile-{tag}", db, ids, profile=str(path), title=f"{title} of {len(ids)} feeds"
            )
            make_due(db)
        self.notes.append(
            "cProfile reports: bench/.cache/profile-full-poll.txt, profile-repoll.txt"
        )

    # -- import --------------------------------------------------------------------

    def imports(self) -> None:
        """``aggregator import`` of a big archive made from the corpus: speed and the
        peak memory summed over the importing process and its parse pool."""
        count = self.archive_posts
        folder = ensure_archive(CACHE, count, log)
        log(f"import of a {count:,}-post archive: ours ...")
        db = fresh(RUN / "import.sqlite")
        ours = job("import_ours", {"db": str(db), "archive": str(folder)}, "import")
        self.raw["import"] = ours
        counts = ours["counts"]
        if counts["skipped"]:
            self.notes.append(
                f"import: {counts['skipped']} files skipped, first: {ours['skipped'][:1]}"
            )
        rate = count / ours["wall"]
        self.add(
            f"Import of a {count:,}-post archive: ours",
            f"{rate:,.0f} posts/s ({count:,} posts in {ours['wall']:.1f} s, CPU "
            f"{ours['cpu']:.1f} s + parse workers {ours['workers_cpu']:.1f} s; "
            f"{counts['new']:,} new, {counts['duplicates']:,} re-published by a second "
            "feed of the corpus)",
            ">= 1,200 posts/s",
            rate >= 1200,
        )
        indexed = ours["catch_up_articles"]
        whole = count / (ours["wall"] + ours["catch_up_wall"])
        self.add(
            f"Import of a {count:,}-post archive: search index afterwards",
            f"{indexed:,} articles in {ours['catch_up_wall']:.1f} s "
            f"({ours['catch_up_cpu'] / max(indexed, 1) * 1000:.3f} ms CPU per article; "
            f"`aggregator import` does it before exiting: {whole:,.0f} posts/s with it)",
        )
        main = ours["VmHWM"] / 2**20
        children = [hwm / 2**20 for hwm in ours["workers_hwm"]]
        total = main + sum(children)
        parts = " + ".join(f"{child:.0f}" for child in children) or "none"
        self.add(
            f"Peak RSS, import of {count:,} posts",
            f"{total:.0f} MB (sum of VmHWM): importing process {main:.0f} MB + pool "
            f"processes {parts} MB",
            "<= 200 MB",
            total <= 200,
        )

    # -- database size -------------------------------------------------------------

    def database(self) -> None:
        key = schema_key(CACHE)
        dbs = {size: ensure_db(CACHE, key, size, log) for size in self.sizes}
        largest = max(self.sizes)
        big = dbs[largest]
        label = f"{largest // 1000}k" if largest < 1_000_000 else "1M"
        log(f"export from the {label}-article database ...")
        export = job("export", {"db": str(big), "source": "b123"}, "export")
        self.raw["export"] = export
        for kind, text in (("merged", "merged"), ("source", "one source")):
            figures = export[kind]
            first_ms = figures["first"] * 1000
            self.add(
                f"Latest 100 from {label} articles, {text}: first request, new connection",
                f"{first_ms:.2f} ms (engine kept, pool emptied: a new SQLite connection)",
                "<= 5 ms",
                first_ms <= 5,
            )
            self.add(
                f"Latest 100 from {label} articles, {text}: first call on a new Store (new engine)",
                f"{figures['first_new_store'] * 1000:.2f} ms "
                "(new connection and empty statement cache)",
            )
            self.add(
                f"Latest 100 from {label} articles, {text}: warm",
                f"{figures['warm'] * 1000:.2f} ms "
                f"(+ last_updated {figures['last_updated'] * 1000:.2f} ms)",
            )
        self.search(big, label)
        self.http(big, label)
        self.growth_cost(dbs)

    def search(self, db: Path, label: str) -> None:
        log(f"search in the {label}-article database ...")
        result = job("search", {"db": str(db), "queries": list(SEARCHES)}, "search")
        self.raw["search"] = result
        for text, kind in SEARCHES.items():
            figures = result[text]
            first_ms, warm_ms = figures["first"] * 1000, figures["warm"] * 1000
            self.add(
                f"Search {text} ({kind}) in {label} articles, latest 50: warm",
                f"{warm_ms:.1f} ms p50 ({figures['found']} found)",
                "<= 50 ms",
                warm_ms <= 50,
            )
            self.add(
                f"Search {text} ({kind}) in {label} articles, latest 50: new connection",
                f"{first_ms:.1f} ms p50",
                "<= 200 ms",
                first_ms <= 200,
            )
        index, total = result["index_bytes"], result["total_bytes"]
        share = index / max(1, total - index)
        self.add(
            f"Search index size in the {label}-article database",
            f"{index / 1e6:,.0f} MB against {(total - index) / 1e6:,.0f} MB for the rest "
            f"(+{share:.0%})",
            "<= +100% (at most doubles the database)",
            share <= 1.0,
        )

    def http(self, db: Path, label: str) -> None:
        log("HTTP /feed.xml through uvicorn ...")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config_path = RUN / "http.config.json"
        config_path.write_text(json.dumps({"db": str(db), "port": port}))
        with (RUN / "http.log").open("w") as stderr:
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.workers",
                    "serve_http",
                    str(config_path),
                    str(RUN / "http.result.json"),
                ],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=stderr,
                stderr=stderr,
            )
            try:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        if time.monotonic() > deadline or server.poll() is not None:
                            raise RuntimeError("HTTP server did not start") from None
                        time.sleep(0.1)
                duration = 2.0 if self.quick else 6.0
                results = {}
                for name, headers in (
                    ("full", b"Accept-Encoding: gzip\r\n"),
                    ("conditional", None),
                ):
                    results[name] = asyncio.run(
                        load(port, b"/feed.xml", headers, self.args.http_connections, duration)
                    )
            finally:
                assert server.stdin is not None
                server.stdin.close()
                server.wait(timeout=30)
        self.raw["http"] = results
        full = results["full"]
        self.add(
            f"HTTP GET /feed.xml ({label} DB, 50 items, gzip, "
            f"{self.args.http_connections} connections)",
            f"{full['rps']:,.0f} requests/s (p50 {full['p50'] * 1000:.1f} ms, "
            f"p99 {full['p99'] * 1000:.1f} ms, "
            f"{full['bytes'] / max(1, full['count']) / 1000:.0f} KB each)",
            ">= 500 requests/s",
            full["rps"] >= 500,
        )
        cond = results["conditional"]
        self.add(
            "HTTP GET /feed.xml with a matching If-None-Match (304)",
            f"{cond['rps']:,.0f} requests/s (p50 {cond['p50'] * 1000:.1f} ms)",
        )

    def catch_up(self, count: int, entries: int, ours: dict[str, Any]) -> None:
        """The search index, written in the pause after the poll: its cost beside the
        poll's own (daemon and parse workers), per article."""
        indexed = ours["catch_up_articles"]
        if not indexed:
            self.notes.append(f"ours-full-{count}: the search index had nothing to catch up")
            return
        per_article = ours["catch_up_cpu"] / indexed
        poll_cpu = (ours["cpu"] + ours["workers_cpu"]) / entries
        self.add(
            f"Search index catch-up after the {count}-feed full poll",
            f"{indexed} articles in {ours['catch_up_wall']:.1f} s, "
            f"{per_article * 1000:.3f} ms CPU per article "
            f"({per_article / poll_cpu:.0%} of the poll's {poll_cpu * 1000:.3f} ms of CPU "
            "per entry, daemon and parse workers; taken when the polls pause)",
        )

    def growth_cost(self, dbs: dict[int, Path]) -> None:
        growth_ids = feed_ids(0, self.growth)
        entries = self.entries(growth_ids)
        walls: dict[int, list[float]] = {size: [] for size in dbs}
        cpus: dict[int, list[float]] = {size: [] for size in dbs}
        index_shares: list[float] = []  # search-index writes / the rest of the daemon CPU
        # Interleaved rounds (10k, 100k, 1M, 10k, ...), medians: one ~3 s poll per size
        # compared sizes measured minutes apart, and the VM's speed drifts that much.
        for turn in range(1 if self.quick else GROWTH_ROUNDS):
            for size, db in sorted(dbs.items()):
                log(
                    f"per-entry poll cost with {size:,} stored articles "
                    f"({self.growth} feeds, round {turn + 1}) ..."
                )
                reset(db)
                try:
                    result = self.ours(f"growth-{size}-{turn}", db, growth_ids)
                finally:
                    reset(db)
                walls[size].append(result["wall"] / entries)
                cpus[size].append(result["cpu"] / entries)
                index_shares.append(result["index_cpu"] / (result["cpu"] - result["index_cpu"]))
        per_entry = {
            size: (statistics.median(walls[size]), statistics.median(cpus[size])) for size in dbs
        }
        smallest = min(per_entry)
        for size, (wall, cpu) in sorted(per_entry.items()):
            ratio = wall / per_entry[smallest][0]
            label = f"{size // 1000}k" if size < 1_000_000 else "1M"
            is_last = size == max(per_entry)
            each = ", ".join(f"{value * 1000:.3f}" for value in walls[size])
            self.add(
                f"Per-entry full-poll cost with {label} stored articles",
                f"{wall * 1000:.3f} ms wall, {cpu * 1000:.3f} ms CPU per entry "
                f"({ratio:.2f}x the {smallest // 1000}k cost; median of {each} ms)",
                f"<= 1.2x the {smallest // 1000}k cost" if is_last else "",
                ratio <= 1.2 if is_last else None,
            )
        share = statistics.median(index_shares)
        self.add(
            "Search index writes in a full poll (store thread CPU, all sizes)",
            f"+{share:.1%} of the daemon's other CPU per entry (the poll queues its "
            "articles; the index itself is written after it: see the catch-up)",
            "<= +25%",
            share <= 0.25,
        )

    # -- output --------------------------------------------------------------------

    def table(self) -> str:
        cpu = "?"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        head = [
            "# Benchmark results"
            + (" (--quick: smoke sizes, not the target sizes)" if self.quick else ""),
            "",
            f"`{' '.join(['python -m bench.run', *sys.argv[1:]])}` on "
            f"{platform.python_implementation()} "
            f"{platform.python_version()}, {os.cpu_count()} CPUs ({cpu}), "
            f"{time.strftime('%Y-%m-%d %H:%M')}; reader {reader_version()}, "
            f"reader workers={self.args.reader_workers}; ours: `Settings` defaults "
            "(max_concurrent_polls=8, Fetcher max_connections=16) but "
            "max_polls_per_host=8: the corpus's feeds share one loopback host.",
            "",
            "| Figure | Measured | Target | Result |",
            "| --- | --- | --- | --- |",
        ]
        lines = ["| " + " | ".join(row.cells()) + " |" for row in self.rows]
        misses = [row.figure for row in self.rows if row.ok is False]
        summary = [
            "",
            f"{sum(1 for r in self.rows if r.ok)} of "
            f"{sum(1 for r in self.rows if r.ok is not None)} "
            "targets met" + (f"; missed: {'; '.join(misses)}." if misses else "."),
        ]
        notes = ["", "Notes:", ""] + [f"- {note}" for note in self.notes]
        return "\n".join(head + lines + summary + notes) + "\n"


def reader_version() -> str:
    try:
        from importlib.metadata import version

        return version("reader")
    except Exception:
        return "not installed"


async def load(
    port: int, path: bytes, headers: bytes | None, connections: int, duration: float
) -> dict[str, float]:
    """A minimal keep-alive HTTP/1.1 load generator (the client must cost little)."""
    etag = b""
    if headers is None:  # conditional: learn the ETag first
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: bench\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"etag:"):
                etag = line.split(b":", 1)[1].strip()
        writer.close()
        headers = b"If-None-Match: " + etag + b"\r\n"
    request = b"GET " + path + b" HTTP/1.1\r\nHost: bench\r\n" + headers + b"\r\n"
    latencies: list[float] = []
    sizes = [0]
    warmup_end = time.perf_counter() + min(1.0, duration / 4)
    stop = warmup_end + duration

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while True:
            started = time.perf_counter()
            if started >= stop:
                break
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 304")):
                raise RuntimeError(head[:200])
            if length:
                await reader.readexactly(length)
            if started >= warmup_end:
                latencies.append(time.perf_counter() - started)
                sizes[0] += length
        writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    latencies.sort()
    count = len(latencies)
    return {
        "count": count,
        "rps": count / duration,
        "p50": latencies[count // 2] if count else 0.0,
        "p99": latencies[min(count - 1, int(count * 0.99))] if count else 0.0,
        "bytes": sizes[0],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run at small sizes")
    parser.add_argument("--profile", action="store_true", help="write cProfile reports")
    parser.add_argument("--skip-reader", action="store_true", help="only our side")
    parser.add_argument("--reader-workers", type=int, default=8, help="update_feeds(workers=N)")
    parser.add_argument("--http-connections", type=int, default=8)
    parser.add_argument(
        "--only",
        action="append",
        choices=PHASES,
        help="only these groups of figures (repeatable; the table has only their rows)",
    )
    parser.add_argument("--output", type=Path, default=BENCH / "results.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    bench = Bench(args)
    bench.run()
    bench.notes.append(f"whole run took {time.monotonic() - started:.0f} s")
    bench.notes.append(
        f"1-minute load average when figures were taken: {min(bench.loads):.1f} to "
        f"{max(bench.loads):.1f} on {os.cpu_count()} CPUs (a run alone on the machine "
        "stays near 1-1.5: the poll child plus the feed or HTTP server); wall-clock "
        "figures taken under a higher load are pessimistic, CPU-second figures less so"
    )
    (CACHE / "raw-results.json").write_text(json.dumps(bench.raw, indent=1))
    table = bench.table()
    print(table)
    # A smoke run or a run of some phases never replaces the real figures.
    if not (args.quick or args.only) or args.output != BENCH / "results.md":
        args.output.write_text(table)
    else:
        (CACHE / "results-quick.md").write_text(table)


if __name__ == "__main__":
    main()
