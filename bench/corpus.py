"""A deterministic corpus of feedx-like feeds, cached as gzip files under bench/.cache/.

Every feed is RSS 2.0 in the feedx shape (see /work/shared/design/SOURCES.md): CDATA
title and link, no guid, the *full* article as entity-escaped HTML in
``description``, an RFC 822 ``pubDate``.  Bodies are 3-8 KB of Chinese HTML with the
junk each source really carries (Zaobao ad slots ``section#imu``/``dfp-ad-*``,
shuffled ``data-s`` paragraphs, paywall links and lazy images; VOA weserv proxies and
date lines; RFI share bars; RFA zoom chrome) and, on a quarter of the items, the
feedx footer.  About 5% of the items re-publish an article of a neighbouring feed of
the same kind, so the cross-source merge path runs too.

A feed's bytes depend only on its id (``f0000``..: the main set; ``g000``..: the
database-growth set, whose links never collide with the main set), so a smaller run
polls a prefix of exactly the same feeds.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import TypedDict

__all__ = ["CORPUS_VERSION", "FeedSpec", "build_corpus", "feed_spec", "render_feed"]

CORPUS_VERSION = "1"
KINDS = ("zaobao", "rfi", "voa", "rfa")
NAMES = {"zaobao": "联合早报", "rfi": "法广", "voa": "美国之音", "rfa": "自由亚洲电台"}
_BASE_TIME = datetime(2024, 6, 1, tzinfo=UTC)

# ~500 common characters; sentences are random draws, which is all a parser,
# cleaner or database can tell about Chinese prose.
_HANZI = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动"
    "同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二"
    "理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社"
    "义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没"
    "结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活"
    "设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放"
    "决西被干做必战先回则任取据处府研质局报道称表示官员星期记者会议北京香港台湾美国俄罗"
    "斯欧盟选举总统外交经济市场疫情病毒防控措施军事演习协作伙伴关系领导人访问谈判声明政"
    "策改革发展安全稳定贸易关税制裁抗议警方法院判决媒体社交网络平台公司企业投资银行金融"
)
_PUNCT = "，，，，、。"


@dataclass(frozen=True)
class FeedSpec:
    """One generated feed: its id, kind (also our adapter name) and display name."""

    id: str
    kind: str
    name: str
    items: int

    @property
    def path(self) -> str:
        return f"/rss/{self.id}.xml"


def _set_and_index(feed_id: str) -> tuple[str, int]:
    return feed_id[0], int(feed_id[1:])


def feed_spec(feed_id: str) -> FeedSpec:
    prefix, index = _set_and_index(feed_id)
    kind = KINDS[index % len(KINDS)]
    rng = random.Random(f"bench-{CORPUS_VERSION}-count-{feed_id}")
    return FeedSpec(feed_id, kind, f"{NAMES[kind]} {prefix}{index}", rng.randint(20, 50))


def _sentence(rng: random.Random) -> str:
    words = "".join(rng.choices(_HANZI, k=rng.randint(12, 40)))
    cut = rng.randint(4, max(5, len(words) - 4))
    tail = rng.choice("。。。！？")
    extra = f"{rng.randint(2, 2024)}年" if rng.random() < 0.2 else ""
    return f"{words[:cut]}{rng.choice(_PUNCT)}{extra}{words[cut:]}{tail}"


def _paragraph(rng: random.Random) -> str:
    return "".join(_sentence(rng) for _ in range(rng.randint(2, 5)))


def _hex(rng: random.Random, n: int = 32) -> str:
    return "".join(rng.choices("0123456789abcdef", k=n))


_FOOTER = (
    '<br><hr><div>获取更多RSS：<br><a href="https://feedx.net" style="color:orange" '
    'target="_blank">https://feedx.net</a> <br><a href="https://feedx.{host}" '
    'style="color:orange" target="_blank">https://feedx.{host}</a><br></div>'
)


def _footer(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return _FOOTER.format(host=rng.choice(("fun", "run", "best", "site")))
    return ""


def _data_s(rng: random.Random, rank: int) -> str:
    junk = "".join(
        rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", k=3)
    )
    return junk + base64.b32encode(str(rank).encode()).decode()


def _body_zaobao(rng: random.Random, target: int, link: str) -> str:
    paragraphs: list[str] = []
    size = 1200  # the junk below
    while size < target:
        paragraphs.append(_paragraph(rng))
        size += len(paragraphs[-1].encode()) + 40
    blocks = [
        f'<p data-s="{_data_s(rng, rank)}">{text}</p>' for rank, text in enumerate(paragraphs)
    ]
    ad = f'<section data-s="{_data_s(rng, len(blocks))}"> <div id="dfp-ad-imu1"></div> </section>'
    blocks.insert(min(2, len(blocks)), ad)
    rng.shuffle(blocks)  # the HK/CN anti-scraping shuffle; data-s gives the order back
    story = rng.randint(1_000_000, 1_400_000)
    further = (
        f'<section><h4>延伸阅读</h4><a href="/news/china/story20221205-{story}">'
        f"{_sentence(rng)[:20]}</a></section>"
    )
    image = (
        f'<img class="lazyload" data-src="https://static.zaobao.com/s3fs-public/2022-12/'
        f'{_hex(rng, 12)}.jpg" pinger-seen="true" referrerpolicy="no-referrer">'
    )
    paywall = "".join(
        f'<a href="https://subscribe.sph.com.sg/promotions/zbpe-3-months-99-cents-promotion/'
        f"?utm_campaign=zbpe399&utm_medium=sph-publication&utm_source=zb&utm_content="
        f'subscribelink-free-endofarticle" target="_blank"><img class="view-{view} lazyload" '
        f'data-src="https://static.zaobao.com/s3fs-public/freemium_images/20210901/paywall_'
        f'{view}-zbpe399_2.png?VersionId={_hex(rng, 32)}" alt style="width:100%;" '
        f'pinger-seen="true" referrerpolicy="no-referrer"></a>'
        for view in ("desktop", "mobile")
    )
    return (
        "<div></div>\n "
        + "\n ".join(blocks[:3])
        + '<section id="imu"><div id="dfp-ad-imu1">        </div></section>'
        + image
        + "\n ".join(blocks[3:])
        + further
        + paywall
        + '<div class="cx_paywall_placeholder" id="sph_cdp_40"></div>'
        + _footer(rng)
    )


def _body_voa(rng: random.Random, target: int, when: datetime) -> str:
    parts = [f"<div><i>{format_datetime(when, usegmt=True)}</i></div>"]
    size = 0
    while size < target:
        if rng.random() < 0.15:
            parts.append(
                f'<div ><img src="https://images.weserv.nl?url=gdb.voanews.com/'
                f'{_hex(rng, 8)}-{_hex(rng, 4)}_w1024_q10_s.jpg" width="100%" border="0"/></div>'
                f'<div><small style="color: #999;">{_sentence(rng)}</small></div>'
            )
        text = _paragraph(rng)
        parts.append(f'<p style="text-align:start"><span style="color:#000000">{text}</span></p>')
        size += len(parts[-1].encode()) + 60
    return "".join(parts) + _footer(rng)


def _body_rfi(rng: random.Random, target: int, when: datetime) -> str:
    paris = when + timedelta(hours=1)
    parts = [
        f"<div>{paris:%d/%m/%Y - %H:%M}</div>",
        f'<img src="https://s.rfi.fr/media/display/{_hex(rng, 8)}-{_hex(rng, 4)}/w:1280/'
        f'p:16x9/{_hex(rng, 10)}.JPG" referrerpolicy="no-referrer">',
        f"<p><strong>{_paragraph(rng)} </strong></p>",
    ]
    size = 1500
    while size < target:
        parts.append(f"<p>{_paragraph(rng)}</p>")
        size += len(parts[-1].encode())
    code = _hex(rng, 6)
    parts.append(
        f'<a href="https://web.whatsapp.com/send?text=https%3A%2F%2Frfi.my%2F{code}">'
        f'<span></span></a><a href="https://x.com/intent/tweet?url=https%3A%2F%2Frfi.my%2F'
        f'{code}&via=RFI_Cn&related=RFI_Cn"><span></span></a><a href="https://www.facebook.com'
        f'/dialog/share?href=https%3A%2F%2Frfi.my%2F{code}"><span></span></a>'
        '<span data-root-share><share-button v-on:open="openModal"></share-button>'
        '<share-modal v-if="modal" v-on:close="closeModal"></share-modal></span>'
    )
    return "".join(parts) + _footer(rng)


def _body_rfa(rng: random.Random, target: int, link: str) -> str:
    parts = [
        f'<img src="{link}/@@images/{_hex(rng, 32)}.jpeg" referrerpolicy="no-referrer"> '
        f'<span class="lead_image_caption">{_sentence(rng)}</span><div id="zoomattribute">'
        f'<a id="single_image" data-fancybox href="{link}/@@images/{_hex(rng, 32)}.jpeg">'
        '<img src="https://www.rfa.org/++plone++rfa-resources/img/icon-zoom.png"></a>'
        '<span class="copyright">俄新社</span></div> <!-- zoomattribute -->',
        "<ul>"
        + "".join(
            f'<li><a href="https://www.rfa.org/mandarin/yataibaodao/zhengzhi/'
            f'{_hex(rng, 6)}.html"><strong>{_sentence(rng)[:24]}</strong></a></li>'
            for _ in range(3)
        )
        + "</ul>",
    ]
    size = 1600
    while size < target:
        parts.append(f'<p><span style="font-weight: 400;">{_paragraph(rng)}</span></p>')
        if rng.random() < 0.2:
            parts.append("&nbsp; &nbsp;<p> </p>")
        size += len(parts[-1].encode())
    parts.append("<p>编译：乔琴恩 责编：梒青 网编：洪伟</p>")
    return "".join(parts) + _footer(rng)


def _link(kind: str, uid: int, when: datetime) -> str:
    if kind == "zaobao":
        return f"https://www.zaobao.com//realtime/china/story{when:%Y%m%d}-{uid}"
    if kind == "rfi":
        return f"https://www.rfi.fr/cn/%E4%B8%AD%E5%9B%BD/{when:%Y%m%d}-bench-{uid}"
    if kind == "voa":
        return f"https://www.voachinese.com/a/bench-story-{when:%Y%m%d}/{uid}.html"
    eastern = when - timedelta(hours=4)
    return f"https://www.rfa.org/mandarin/yataibaodao/zhengzhi/b{uid}-{eastern:%m%d%Y%H%M%S}.html"


def _item(feed_id: str, kind: str, index: int) -> tuple[str, str, str, datetime]:
    """``(title, link, body html, published)`` of one item; a pure function of its ids."""
    prefix, feed_no = _set_and_index(feed_id)
    rng = random.Random(f"bench-{CORPUS_VERSION}-item-{feed_id}-{index}")
    # ~5% re-publish an article of the previous feed of the same kind (cross-source merge).
    if feed_no >= len(KINDS) and rng.random() < 0.05:
        return _item(f"{prefix}{feed_no - len(KINDS):04d}", kind, index)
    set_no = {"f": 0, "g": 1}.get(prefix, 2)
    uid = 10_000_000 + set_no * 1_000_000 * 10 + feed_no * 1000 + index
    when = _BASE_TIME - timedelta(minutes=index * 37 + feed_no % 97, seconds=rng.randint(0, 59))
    link = _link(kind, uid, when)
    target = rng.randint(3000, 8000)
    if kind == "zaobao":
        body = _body_zaobao(rng, target, link)
    elif kind == "voa":
        body = _body_voa(rng, target, when)
    elif kind == "rfi":
        body = _body_rfi(rng, target, when)
    else:
        body = _body_rfa(rng, target, link)
    title = _sentence(rng)[: rng.randint(12, 30)].rstrip("，、。！？")
    return title, link, body, when


def render_feed(spec: FeedSpec) -> bytes:
    """The feed document, byte for byte the same on every run."""
    offset = timedelta(hours=8) if spec.kind == "zaobao" else timedelta(0)
    parts = [
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{spec.name}</title><description>{spec.name}全文RSS。获取更多全文RSS："
        "https://feedx.net</description><link>http://www.example.com</link>"
    ]
    for index in range(spec.items):
        title, link, body, when = _item(spec.id, spec.kind, index)
        local = when.astimezone(UTC) + offset
        stamp = local.strftime("%a, %d %b %Y %H:%M:%S ") + ("+0800" if offset else "+0000")
        parts.append(
            f"<item><title><![CDATA[{title}]]></title><link><![CDATA[{link}]]></link>"
            f"<description>{html.escape(body, quote=True)}</description>"
            f"<pubDate>{stamp}</pubDate></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


def feed_ids(main: int, growth: int) -> list[str]:
    return [f"f{i:04d}" for i in range(main)] + [f"g{i:03d}" for i in range(growth)]


class ManifestEntry(TypedDict):
    """One feed of the corpus, as ``manifest.json`` records it."""

    kind: str
    name: str
    items: int
    bytes: int


def build_corpus(cache: Path, ids: list[str]) -> dict[str, ManifestEntry]:
    """Write (or reuse) ``<cache>/corpus-v<N>/<id>.xml.gz``; return the manifest."""
    folder = cache / f"corpus-v{CORPUS_VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "manifest.json"
    manifest: dict[str, ManifestEntry] = {}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
    changed = False
    for feed_id in ids:
        path = folder / f"{feed_id}.xml.gz"
        if feed_id in manifest and path.exists():
            continue
        spec = feed_spec(feed_id)
        raw = render_feed(spec)
        path.write_bytes(gzip.compress(raw, compresslevel=6, mtime=0))
        manifest[feed_id] = {
            "kind": spec.kind,
            "name": spec.name,
            "items": spec.items,
            "bytes": len(raw),
        }
        changed = True
    if changed:
        manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, sort_keys=True))
    return {feed_id: manifest[feed_id] for feed_id in ids}
