"""URL canonicalisation: one spelling per article, so dedupe can compare links.

Feeds spell the same article many ways (``//`` doubled paths from feedx, RFI links
both raw UTF-8 and percent-encoded, ``utm_*`` tails from share buttons).  The link
is often the only identity an entry has (feedx sends no ``<guid>``), so every
variant must collapse to one string before it reaches the store.

The chosen percent-encoding form is RFC 3986 "URI" form: non-ASCII and unsafe
characters percent-encoded with upper-case hex, unreserved characters decoded,
reserved characters left exactly as sent (decoding ``%2F`` would change meaning).

Imports from the package: nothing of the package (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

__all__ = ["TRACKING_PARAMS", "canonical_url", "is_http_url", "unproxy_image"]

#: Query keys that only say where a click came from; dropping them never changes the page.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_ga",
        "_gl",
        "spm",
        "share_token",
        "cmpid",
        "ito",
    }
)
_TRACKING_PREFIXES = ("utm_",)
#: ``ref`` is a real parameter on some sites; only these values are pure tracking.
_TRACKING_REF_VALUES = frozenset({"article-inline", "rss", "feed", "homepage", "share"})

#: Image proxies feedx wraps images in; the ``url`` query holds the original.
_IMAGE_PROXY_HOSTS = frozenset({"images.weserv.nl", "wsrv.nl"})

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Characters allowed literally per component (RFC 3986 pchar / query); anything else is encoded.
_SUB_DELIMS = "!$&'()*+,;="
_PATH_SAFE = frozenset(_UNRESERVED | set(_SUB_DELIMS) | set(":@/"))
_QUERY_SAFE = frozenset(_PATH_SAFE | set("?"))


def _needs_work(safe: frozenset[str]) -> re.Pattern[str]:
    """What :func:`_normalise_percent` rewrites in a component whose safe set is ``safe``.

    That is a ``%`` (with the escape it may start) or a run of characters outside
    ``safe``; everything else is copied as it is.
    """
    return re.compile(f"%(?:[0-9A-Fa-f]{{2}})?|[^%{re.escape(''.join(sorted(safe)))}]+")


_PATH_WORK = _needs_work(_PATH_SAFE)
_QUERY_WORK = _needs_work(_QUERY_SAFE)
_SLASHES = re.compile("/{2,}")


def is_http_url(text: str | None) -> bool:
    """True for an absolute http(s) URL with a host (a guid that can double as a link)."""
    if not text:
        return False
    try:
        parts = urlsplit(text.strip())
    except ValueError:  # e.g. an unclosed IPv6 bracket: "http://[::1"
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _normalise_percent(component: str, work: re.Pattern[str]) -> str:
    """Re-encode ``component`` so raw UTF-8 and percent-encoded spellings agree.

    Escapes of unreserved characters are decoded (``%7E`` -> ``~``); other escapes are
    kept with upper-case hex; literal characters outside the component's safe set
    (``work`` finds them: Chinese path segments, spaces) are UTF-8 percent-encoded.
    One regex pass: most URLs need nothing, and are then returned as they are.
    """
    return work.sub(_normalised, component)


def _normalised(match: re.Match[str]) -> str:
    text = match.group()
    if text == "%":
        return "%25"  # a stray '%' that starts no escape
    if text[0] == "%":
        decoded = chr(int(text[1:], 16))
        return decoded if decoded in _UNRESERVED else text.upper()
    # "%" before each byte: bytes.hex() puts its separator only between them.
    return "%" + text.encode("utf-8", "surrogatepass").hex("%").upper()


def _is_tracking(key: str, value: str) -> bool:
    lowered = key.lower()
    if lowered in TRACKING_PARAMS or lowered.startswith(_TRACKING_PREFIXES):
        return True
    return lowered == "ref" and value.lower() in _TRACKING_REF_VALUES


def _clean_query(query: str) -> str:
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = [(key, value) for key, value in pairs if not _is_tracking(key, value)]
    if len(kept) == len(pairs):
        return _normalise_percent(query, _QUERY_WORK)  # untouched: keep the original spelling
    return _normalise_percent(urlencode(kept), _QUERY_WORK)


def _host(hostname: str) -> str:
    host = hostname.lower().rstrip(".")
    if host.isascii():
        # What the idna codec gives back for an ASCII name, or raises on and is then
        # kept anyway (an empty or over-long label); the codec call is the slow part.
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def canonical_url(
    url: str,
    base: str | None = None,
    *,
    host_aliases: Mapping[str, str] | None = None,
) -> str:
    """Return the one spelling of ``url`` that dedupe compares.

    ``base`` resolves relative and protocol-relative links (a protocol-relative link
    with no base is assumed https).  ``host_aliases`` maps a mirror host to the
    canonical one; it is per-source data (``www.zaobao.com`` vs ``zaobao.com``), so
    this function never needs to know which source it is cleaning.  Non-http(s)
    URLs (``mailto:``, ``javascript:``) are returned stripped but otherwise as sent;
    the sanitizer decides their fate.
    """
    aliases = tuple(host_aliases.items()) if host_aliases else ()
    return _canonical_url(url, base, aliases)


#: Cleaning reads every URL of a body twice (its check pass runs on its own output,
#: where an already canonical URL comes back as it was), and a changed feed sends its
#: unchanged items again.  A thousand entries (a few hundred kB) cover a poll's worth.
_URL_CACHE_SIZE = 1024


@functools.lru_cache(maxsize=_URL_CACHE_SIZE)
def _canonical_url(url: str, base: str | None, host_aliases: tuple[tuple[str, str], ...]) -> str:
    """:func:`canonical_url`, memoised (the aliases as a tuple, so they can be hashed)."""
    text = url.strip()
    if base:
        try:
            text = _resolve(base.strip(), text)
        except ValueError:  # unparseable ("http://[::1"): returned as sent, like below
            return text
    elif text.startswith("//"):
        text = "https:" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text
    scheme = parts.scheme.lower()
    hostname = parts.hostname
    if scheme not in ("http", "https") or not hostname:
        return text
    host = _host(hostname)
    if host_aliases:
        host = dict(host_aliases).get(host, host)
    netloc = host
    if parts.username or parts.password:
        # Credentials in a feed link are almost certainly a mistake; keep them visibly.
        netloc = f"{parts.username or ''}{':' + parts.password if parts.password else ''}@{host}"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    path = _SLASHES.sub("/", parts.path) or "/"
    path = _normalise_percent(path, _PATH_WORK)
    query = _clean_query(parts.query)
    return urlunsplit((scheme, netloc, path, query, ""))


def _resolve(base: str, link: str) -> str:
    """``urljoin(base, link)``, without its cost where it cannot change the outcome.

    urljoin gives an absolute http(s) link back as it is, or re-spelled as
    ``urlunparse(urlparse(link))``, which splits into the same parts; except that
    urlparse takes a ``;`` in the last segment for parameters and drops an empty
    one, and that a link whose port does not parse is returned in urljoin's
    spelling.  Those still go through urljoin.  Raises ValueError where it would.
    """
    parts = urlsplit(link)
    urlsplit(base)
    if parts.scheme in ("http", "https") and parts.netloc and ";" not in parts.path:
        try:
            _ = parts.port
        except ValueError:
            pass
        else:
            return link
    return urljoin(base, link)


@functools.lru_cache(maxsize=_URL_CACHE_SIZE)
def unproxy_image(url: str) -> str:
    """Unwrap an image-proxy URL (``images.weserv.nl?url=gdb.voanews.com/x.jpg``).

    The proxy only exists to dodge hotlink protection for feedx readers; the original
    host is the stable identity and does not leak readers' addresses to a third
    party.  Anything that is not a known proxy is returned unchanged.
    """
    text = url.strip()
    if text.startswith("//"):
        text = "https:" + text
    try:
        parts = urlsplit(text)
    except ValueError:
        return url
    if (parts.hostname or "").lower() not in _IMAGE_PROXY_HOSTS:
        return url
    target = dict(parse_qsl(parts.query)).get("url", "").strip()
    if not target:
        return url
    if target.startswith("//"):
        return "https:" + target
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", target):
        # weserv takes the target without a scheme; https is what every host serves now.
        target = target.removeprefix("ssl:")
        return "https://" + target
    return target
