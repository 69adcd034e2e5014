"""The HTML pages: the index (with the search form and failing sources) and the
article page, both script-free.

Imports from the package: ``export``, ``health``, ``search``, ``types`` and :mod:`.site`.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Iterable, Mapping
from datetime import datetime
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .. import health
from ..export.feeds import (
    encode_cursor,
)
from ..search import Query, html_text, snippet
from ..search.script import Script, chinese_script
from ..types import Provenance, StoredArticle
from .site import (
    _FEED_PATHS,
    ArticleReader,
    _articles,
    _feed_title,
    _in_script,
    _Links,
    _parse_query,
    _Query,
    _script_of,
    _Site,
)

_PAGE = """<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
{alternates}
<style>
body {{ font-family: sans-serif; max-width: 48rem; margin: 1rem auto; padding: 0 1rem; }}
nav a {{ margin-right: .75rem; }} nav a.current {{ font-weight: bold; }}
li {{ margin: .4rem 0; }} .meta {{ color: #666; font-size: .9em; }}
form.search input {{ width: min(100%, 24rem); }} .snippet {{ margin: .2rem 0; }}
mark {{ background: #fe6; color: inherit; }}
.failing {{ color: #a00; }}
</style>
</head>
<body>
<h1>{title}</h1>
<nav>{nav}</nav>
{failing}
{search}
<p>Feeds: {feed_links}</p>
<ol class="articles">
{items}
</ol>
{older}
</body>
</html>
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _safe_href(url: str) -> str | None:
    """Article links come from third-party feeds: only http(s) may become an href."""
    return url if urlsplit(url).scheme.lower() in ("http", "https") else None


def _index_endpoint(reader: ArticleReader, site: _Site) -> Route:
    def endpoint(request: Request) -> Response:
        query = _parse_query(request, site)
        links = _Links.of(request, site)
        # Titles only for a plain listing: no body is read (a search reads bodies
        # for its snippets).
        bound = dataclasses.replace(site.read_bound, body_chars=0, head_chars=0)
        page, more = _articles(reader, query, bound)
        counts = reader.article_counts()
        title = _feed_title(site, query)
        params = query.params(site)
        alternates = "\n".join(
            f'<link rel="alternate" type="{fmt.mime}" title="{_e(title)} ({fmt.name})" '
            f'href="{_e(links.url(path, params))}">'
            for path, fmt in _FEED_PATHS.items()
        )
        feed_links = " ".join(
            f'<a href="{_e(links.url(path, params))}">{fmt.name}</a>'
            for path, fmt in _FEED_PATHS.items()
        )
        problems = {
            problem.source_id: problem
            for problem in health.failing(reader.states(), site.catalog.enabled)
        }
        nav = [f'<a href="{_e(links.url("/"))}"{_current(not query.sources)}>All</a>']
        for source_id, name in site.sources.items():
            href = links.url("/", [("source", source_id)])
            label = f"{name} ({counts.get(source_id, 0)})"
            marked = ' class="failing" title="failing"' if source_id in problems else ""
            current = _current(query.sources == (source_id,))
            nav.append(f'<a href="{_e(href)}"{current}><span{marked}>{_e(label)}</span></a>')
        for topic in site.topics.values():
            href = links.url("/", [("topic", topic.id)])
            current = _current(query.topic is not None and query.topic.id == topic.id)
            nav.append(f'<a class="topic" href="{_e(href)}"{current}>{_e(topic.title)}</a>')
        empty = "<li>No articles found.</li>" if query.search else "<li>No articles yet.</li>"
        items = "\n".join(
            _index_item(links, _in_script(stored, query.script), query) for stored in page
        )
        items = items or empty
        older = ""
        if more and page:
            href = links.url("/", query.params(site, before=encode_cursor(page[-1].cursor)))
            older = f'<p><a rel="next" href="{_e(href)}">Older articles</a></p>'
        document = _PAGE.format(
            lang=_e(site.language or "en"),
            title=_e(title),
            alternates=alternates,
            nav="\n".join(nav),
            search=_search_form(links, query),
            failing=_failing_list(problems.values(), site.sources),
            feed_links=feed_links,
            items=items,
            older=older,
        )
        return Response(
            document,
            media_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": "no-cache",
                # No scripts at all; inline style only for the small stylesheet above.
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return Route("/", endpoint, methods=["GET"], name="index")


def _failing_list(problems: Iterable[health.Failing], names: Mapping[str, str]) -> str:
    """The failing sources, each with since when and why, above the articles."""
    rows = []
    for problem in problems:
        since = f"{problem.since:%Y-%m-%d %H:%M} UTC" if problem.since else "the last poll"
        retry = (
            f" (next try {problem.next_retry:%Y-%m-%d %H:%M} UTC)"
            if problem.next_retry
            else " (disabled)"
        )
        name = names.get(problem.source_id, problem.source_id)
        rows.append(
            f'<li class="failing"><b>{_e(name)}</b>: failing since {since}: '
            f"{_e(problem.message[:300])}{retry}</li>"
        )
    if not rows:
        return ""
    return '<ul class="failing-sources">\n' + "\n".join(rows) + "\n</ul>"


def _current(flag: bool) -> str:
    return ' class="current"' if flag else ""


def _search_form(links: _Links, query: _Query) -> str:
    """A plain GET form: the page stays script-free.  What the search keeps (the
    sources, the script, the token) goes in hidden fields: a browser replaces the
    query of a GET form's action with the form's fields."""
    value = str(query.search) if query.search is not None and query.topic is None else ""
    kept = [("source", source) for source in query.sources]
    kept += [("script", query.script)] if query.script else []
    kept += [("token", links.token)] if links.token else []
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{_e(value)}">' for name, value in kept
    )
    return (
        f'<form class="search" role="search" method="get" action="{_e(links.site.url("/"))}">'
        f'<input type="search" name="q" value="{_e(value)}" aria-label="Search" '
        f'placeholder="防长, &quot;exact phrase&quot;, -excluded, a OR b">{hidden}'
        "<button>Search</button></form>"
    )


def _snippet_html(stored: StoredArticle, search: Query) -> str:
    text = " ".join(html_text(stored.article.body).split())
    pieces = snippet(text, search, width=140)
    return "".join(f"<mark>{_e(part)}</mark>" if marked else _e(part) for part, marked in pieces)


def _index_item(links: _Links, stored: StoredArticle, query: _Query) -> str:
    article = stored.article
    search = query.search
    href = _safe_href(article.link)
    title = _e(article.title or article.link)
    heading = f'<a href="{_e(href)}">{title}</a>' if href else title
    names = dict.fromkeys(p.source_name for p in stored.provenance) or {article.source_name: None}
    stamp = _time_html(links.site, stored.cursor.sort_time)
    read = _e(_article_url(links, stored.id, query.script))
    meta = (
        f'<span class="meta">{_e(", ".join(names))} · {stamp} · '
        f'<a class="read" href="{read}">read here</a></span>'
    )
    if search is None:
        return f"<li>{heading} {meta}</li>"
    return f'<li>{heading} {meta}<p class="snippet">{_snippet_html(stored, search)}</p></li>'


# --- the article page ----------------------------------------------------------------

_ARTICLE_PAGE = """<!DOCTYPE html>
<html lang="{site_lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title} · {site_title}</title>
<style>
:root {{ color-scheme: light dark; --fg: #1d1d1f; --bg: #fff; --muted: #666; --link: #0b57d0; }}
@media (prefers-color-scheme: dark) {{
  :root {{ --fg: #e6e6e6; --bg: #121212; --muted: #9a9a9a; --link: #8ab4f8; }}
}}
body {{ margin: 0; color: var(--fg); background: var(--bg);
  font: 1.0625rem/1.75 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; }}
:lang(zh-Hans) {{ font-family: "PingFang SC", "Hiragino Sans GB", "Noto Sans CJK SC",
  "Source Han Sans SC", "Microsoft YaHei", system-ui, sans-serif; }}
:lang(zh-Hant) {{ font-family: "PingFang TC", "Noto Sans CJK TC", "Source Han Sans TC",
  "Microsoft JhengHei", system-ui, sans-serif; }}
main {{ max-width: 40rem; margin: 0 auto; padding: 1rem; overflow-wrap: anywhere; }}
article:lang(zh) {{ max-width: 36em; }}
h1 {{ font-size: 1.5rem; line-height: 1.4; margin: .5rem 0; }}
a {{ color: var(--link); }} a.current {{ font-weight: bold; }}
.meta {{ color: var(--muted); font-size: .9rem; }}
.meta ul {{ margin: .2rem 0; padding-left: 1.2rem; }}
.body img, .body video {{ max-width: 100%; height: auto; }}
.body pre {{ overflow-x: auto; }} .body table {{ display: block; overflow-x: auto; }}
blockquote {{ margin: 1rem 0; padding-left: 1rem; border-left: 3px solid var(--muted); }}
</style>
</head>
<body>
<main>
<nav class="meta"><a href="{home}">{site_title}</a> · {scripts}</nav>
<article lang="{lang}">
<h1>{heading}</h1>
<div class="meta">
<p>Published {published} · updated {updated}</p>
<ul class="sources">{sources}</ul>
</div>
<div class="body">
{body}
</div>
</article>
</main>
</body>
</html>
"""
_LANG: Mapping[Script, str] = {"hans": "zh-Hans", "hant": "zh-Hant"}
_SCRIPT_LABELS: Mapping[Script, str] = {"hans": "简体", "hant": "繁體"}


def _time_html(site: _Site, moment: datetime | None) -> str:
    if moment is None:
        return "unknown"
    local = moment.astimezone(site.timezone)
    return f'<time datetime="{moment.isoformat()}">{local:%Y-%m-%d %H:%M %Z}</time>'


def _article_url(links: _Links, article_id: int, script: Script | None) -> str:
    return links.url(f"/articles/{article_id}", [("script", script)] if script else [])


def _source_item(site: _Site, route: Provenance) -> str:
    """One route the article came by: the source, a link to its copy (named by its
    host: a percent-encoded Chinese path fills a phone's screen) and when we saw it."""
    name = _e(route.source_name or route.source_id)
    seen = f"seen {_time_html(site, route.first_seen)}"
    link = _safe_href(route.link)
    if link is None:
        return f"<li>{name}, {seen}</li>"
    host = _e(urlsplit(link).hostname or link)
    return f'<li>{name}: <a href="{_e(link)}">{host}</a>, {seen}</li>'


def _article_endpoint(reader: ArticleReader, site: _Site) -> Route:
    """``/articles/ID``: one article to read here, cleaned, in the reader's script."""

    def endpoint(request: Request) -> Response:
        article_id: int = request.path_params["article_id"]
        script = _script_of(request)
        links = _Links.of(request, site)
        found = reader.article(article_id)
        if found is None:
            return PlainTextResponse("no such article\n", status_code=404)
        stored = _in_script(found, script)
        article = stored.article
        written = script or chinese_script(article.title + article.body)
        href = _safe_href(article.link)
        title = _e(article.title or article.link)
        sources = "".join(_source_item(site, route) for route in stored.provenance)
        scripts = " ".join(
            f'<a href="{_e(_article_url(links, article_id, choice))}" lang="{_LANG[choice]}"'
            f"{_current(choice == script)}>{label}</a>"
            for choice, label in _SCRIPT_LABELS.items()
        )
        document = _ARTICLE_PAGE.format(
            site_lang=_e(site.language or "en"),
            site_title=_e(site.title),
            title=title,
            home=_e(links.url("/")),
            scripts=scripts,
            lang=_LANG[written] if written else _e(site.language or "en"),
            heading=f'<a href="{_e(href)}">{title}</a>' if href else title,
            published=_time_html(site, article.published),
            updated=_time_html(site, stored.updated),
            sources=sources,
            body=article.body,  # cleaned and sanitised when stored
        )
        return Response(
            document,
            media_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": "no-cache",
                # As the index, plus the article's own pictures (https only).
                "Content-Security-Policy": (
                    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:"
                ),
            },
        )

    return Route("/articles/{article_id:int}", endpoint, methods=["GET"], name="article")
