"""HTML -> Page: main text, title, language, date, links and sections with anchors.

Why two passes over one parsed tree: trafilatura is good at telling main content from
boilerplate but drops headings and their ids (DocBook's ``<h2><a id="x"/>`` headings vanish
entirely), and citations need ``url#anchor``. So our own walk of the lxml tree yields the
document's blocks and headings in order, and trafilatura's text decides which blocks are
main content. The walk costs a small fraction of trafilatura's own time.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from urllib.parse import urljoin

import lxml.html
from lxml import etree

from search.documents import Page, Section
from search.text import detect_language

HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details", "dialog", "div",
    "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "html", "li", "main",
    "menu", "ol", "p", "pre", "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    "br",
}
SKIP_TAGS = {
    "script", "style", "noscript", "template", "svg", "head", "iframe", "object", "embed", "canvas", "button",
    "select", "option", "input", "textarea", "nav", "math",
}
MAX_GAP = 2
# trafilatura parses with one module-global lxml HTMLParser (trafilatura.utils.HTML_PARSER);
# lxml parser objects are not thread-safe, and two crawl threads inside it at once crashed
# the process (SIGABRT in libxml2). Our own parsing uses lxml's per-thread default parser.
_TRAFILATURA_LOCK = threading.Lock()
VOTERS = 5
_WS = re.compile(r"\s+")
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.I)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DATE_META = (
    "article:published_time", "og:published_time", "datepublished", "date", "dc.date", "dc.date.issued",
    "dcterms.created", "dcterms.issued", "pubdate", "publishdate", "publication_date", "sailthru.date",
)
_JSONLD_DATE = re.compile(r'"datePublished"\s*:\s*"([^"]+)"')


class ExtractError(ValueError):
    """The document is not HTML we can read."""

    reason = "bad-html"  # the skip reason a crawl reports


@dataclass
class Extracted:
    page: Page
    links: list[str] = field(default_factory=list)  # absolute, in document order, not normalised
    noindex: bool = False
    nofollow: bool = False


def _clean(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _key(text: str) -> str:
    """Whitespace-free form used to match our blocks against trafilatura's text."""
    return _WS.sub("", text)


# ------------------------------------------------------------------ headings and anchors
def heading_anchor(h: etree._Element) -> str:
    """The id a link can use to jump to heading ``h``, found the ways real sites mark it:
    the heading's own id; an ``<a id|name>`` inside it (DocBook); a Sphinx permalink
    (``<a class="headerlink" href="#x">``); empty anchors just before it; or the id of a
    section/div that the heading opens (PostgreSQL, Sphinx ``<section id>``)."""
    if h.get("id"):
        return h.get("id")
    for a in h.iter("a"):
        if a.get("id") or a.get("name"):
            return a.get("id") or a.get("name")
    for a in h.iter("a"):
        href = a.get("href") or ""
        if href.startswith("#") and len(href) > 1 and "headerlink" in (a.get("class") or ""):
            return href[1:]
    prev = h.getprevious()
    while prev is not None and isinstance(prev.tag, str) and prev.tag in ("a", "span") and not _clean(prev.text_content()):
        if prev.get("id") or prev.get("name"):
            return prev.get("id") or prev.get("name")
        prev = prev.getprevious()
    child = h
    for _ in range(5):
        parent = child.getparent()
        if parent is None or parent.tag in ("body", "html"):
            break
        first = next((c for c in parent if isinstance(c.tag, str) and (_clean(c.text_content()) or c is child)), None)
        if first is not child or _clean(parent.text or ""):
            break
        if parent.get("id"):
            return parent.get("id")
        child = parent
    return ""


def heading_text(h: etree._Element) -> str:
    return _clean(h.text_content()).rstrip("¶#").strip()


def walk_blocks(root: etree._Element) -> list[tuple]:
    """Document-order events: ("h", level, anchor, text) for headings and
    ("b", text, link_share) for text blocks (the text of a block element outside its nested
    blocks; link_share is the part of it that is link text, high in menus and sidebars)."""
    events: list[tuple] = []
    buf: list[tuple[str, bool]] = []
    in_link = 0

    def add(text: str | None) -> None:
        if text:
            buf.append((text, in_link > 0))

    def flush() -> None:
        if buf:
            text = _clean("".join(t for t, _ in buf))
            if text:
                linked = sum(len(_key(t)) for t, is_link in buf if is_link)
                events.append(("b", text, linked / max(1, len(_key(text)))))
            buf.clear()

    stack: list[tuple[etree._Element, bool]] = [(root, False)]
    while stack:
        el, closing = stack.pop()
        tag = el.tag if isinstance(el.tag, str) else None
        if closing:
            if tag in BLOCK_TAGS:
                flush()
            if tag == "a":
                in_link -= 1
            add(el.tail)
            continue
        if tag is None or tag in SKIP_TAGS or el.get("role") == "navigation":
            add(el.tail)
            continue
        if tag in HEADINGS:
            flush()
            text = heading_text(el)
            if text:
                events.append(("h", HEADINGS[tag], heading_anchor(el), text))
            add(el.tail)
            continue
        if tag in BLOCK_TAGS:
            flush()
        if tag == "a":
            in_link += 1
        add(el.text)
        stack.append((el, True))
        for child in reversed(el):
            stack.append((child, False))
    flush()
    return events


def event_text(ev: tuple) -> str:
    return ev[3] if ev[0] == "h" else ev[1]


def _select_main(events: list[tuple], main_text: str) -> list[bool]:
    """Which text blocks are main content: those found, in order, in trafilatura's text.

    A short block found far ahead is not trusted (a "Next" link would otherwise match some
    later word and skip the cursor past real content); a long block is kept if most of
    it is there (trafilatura sometimes drops an inline part of a paragraph).
    """
    kept_text = _key(main_text)
    keep = [False] * len(events)
    cursor = 0
    for i, ev in enumerate(events):
        if ev[0] != "b":
            continue
        key = _key(ev[1])
        if not key:
            continue
        pos = kept_text.find(key, cursor)
        if pos != -1 and (len(key) >= 40 or pos - cursor <= 400):
            keep[i] = True
            cursor = pos + len(key)
            continue
        if len(key) >= 40:
            if kept_text.find(key) != -1:
                keep[i] = True
                continue
            pieces = [key[j : j + 24] for j in range(0, len(key) - 23, 24)]
            if pieces and sum(1 for p in pieces if p in kept_text) >= 0.6 * len(pieces):
                keep[i] = True
    # trafilatura drops some short paragraphs of the main text ("The kbd package supports
    # this."; a last answer just before the footer). Put back (1) runs of at most MAX_GAP
    # blocks between kept ones and (2) after the last kept block, a block that directly
    # follows a heading; never blocks that are mostly link text (menus, sidebars).
    blocks = [i for i, ev in enumerate(events) if ev[0] == "b"]
    kept_at = [n for n, i in enumerate(blocks) if keep[i]]
    for a, b in zip(kept_at, kept_at[1:]):
        if 1 < b - a <= MAX_GAP + 1:
            for n in range(a + 1, b):
                if events[blocks[n]][2] < 0.5:
                    keep[blocks[n]] = True
    if kept_at:
        after_heading = False
        for i in range(blocks[kept_at[-1]] + 1, len(events)):
            ev = events[i]
            if ev[0] == "h":
                after_heading = True
                continue
            if after_heading and ev[2] < 0.5:
                keep[i] = True
            after_heading = False
    return keep


def build_sections(events: list[tuple], keep: list[bool]) -> list[Section]:
    """Group kept blocks under the nearest heading above them. A heading without an id
    inherits the nearest anchored heading's id, so every passage can still deep-link."""
    sections: list[Section] = []
    anchor, heading, blocks = "", "", []
    for ev, kept in zip(events, keep):
        if ev[0] == "h":
            if blocks:
                sections.append(Section(anchor=anchor, heading=heading, text="\n".join(blocks)))
            anchor = ev[2] or anchor
            heading = ev[3]
            blocks = []
        elif kept:
            blocks.append(ev[1])
    if blocks:
        sections.append(Section(anchor=anchor, heading=heading, text="\n".join(blocks)))
    return sections


# ------------------------------------------------------------------ metadata
def _meta(tree: etree._Element) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in tree.iter("meta"):
        name = (m.get("property") or m.get("name") or m.get("itemprop") or "").strip().lower()
        content = m.get("content")
        if name and content and name not in out:
            out[name] = content.strip()
    return out


def _published(meta: dict[str, str], html_text: str) -> date | None:
    candidates = [meta[k] for k in _DATE_META if k in meta]
    m = _JSONLD_DATE.search(html_text[:200000])
    if m:
        candidates.append(m.group(1))
    for value in candidates:
        d = _DATE.search(value)
        if d:
            try:
                found = date(int(d.group(1)), int(d.group(2)), int(d.group(3)))
            except ValueError:
                continue
            if 1990 <= found.year <= datetime.now(timezone.utc).year + 1:
                return found
    return None


def _title(tree: etree._Element, meta: dict[str, str], events: list[tuple]) -> str:
    """og:title / DC title when present, else ``<title>``, else the first heading.

    Why not trafilatura's metadata title: it guesses from headings and gets some pages
    wrong (PostgreSQL's "SELECT" page comes out as "Note").
    """
    for key in ("og:title", "dc.title", "twitter:title"):
        if meta.get(key):
            return _clean(meta[key])
    t = tree.find(".//title")
    if t is not None and _clean(t.text_content()):
        return _clean(t.text_content())
    for ev in events:
        if ev[0] == "h":
            return ev[3]
    return ""


def _language(text: str, events: list[tuple], sections: list[Section]) -> str:
    """The page's language: a vote of its sections, weighted by their length.

    Why a vote: translated pages often keep some sections (or front matter) in English,
    so a sample from one place can land on the untranslated part. When the main text is
    a small part of the page (an index page whose only "main" text is a licence note) the
    whole visible text votes instead.
    """
    visible = [event_text(ev) for ev in events]
    if len(_key(text)) < 0.3 * sum(len(_key(v)) for v in visible):
        parts = visible
    else:
        parts = [s.text for s in sections] or [text]
    # at most VOTERS contiguous groups vote, so long pages cost a few detections, not dozens
    size = -(-len(parts) // VOTERS)
    votes: dict[str, int] = {}
    for i in range(0, len(parts), size):
        group = "\n".join(parts[i : i + size])
        if group.strip():
            lang = detect_language(group[:1000])
            votes[lang] = votes.get(lang, 0) + len(group)
    return max(votes, key=votes.get) if votes else detect_language(text)


def content_hash(events: list[tuple]) -> str:
    """Hash of the page's whole visible text (not only the main text): two pages are
    exact duplicates when everything a reader sees is the same. Hashing only trafilatura's
    text would merge distinct pages whose main text it reduced to the same boilerplate
    (the translated FAQ index pages all keep just an English licence note)."""
    visible = "\n".join(event_text(ev) for ev in events)
    return hashlib.sha1(visible.encode("utf-8")).hexdigest()


def parse_html(html: str) -> etree._Element:
    html = _XML_DECL.sub("", html, count=1)
    if not html.strip():
        raise ExtractError("empty document")
    try:
        return lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError) as exc:
        raise ExtractError(f"cannot parse HTML: {exc}") from None


def extract(html: str, url: str, final_url: str | None = None, fast: bool = False) -> Extracted:
    """Extract a Page (without fetch metadata) and its outgoing links from decoded HTML.

    ``fast`` skips trafilatura's fallback extractors (readability, jusText), which it
    otherwise runs on every page to compare with its own result: ~40% less CPU per page
    on the corpus, same text on 96% of pages (setting ``extract_fast``, README).
    """
    import trafilatura

    final_url = final_url or url
    tree = parse_html(html)
    base = final_url
    base_el = tree.find(".//base[@href]")
    if base_el is not None:
        base = urljoin(final_url, base_el.get("href").strip())
    meta = _meta(tree)
    robots = meta.get("robots", "").lower()
    canonical = ""
    links: list[str] = []
    for el in tree.iter("a", "area", "link"):
        rel = (el.get("rel") or "").lower().split()
        href = (el.get("href") or "").strip()
        if not href:
            continue
        if el.tag == "link":
            if "canonical" in rel and not canonical:
                canonical = urljoin(base, href).split("#", 1)[0]
            continue
        if "nofollow" not in rel and not href.startswith(("javascript:", "mailto:", "#")):
            links.append(urljoin(base, href))

    events = walk_blocks(tree.find("body") if tree.find("body") is not None else tree)
    with _TRAFILATURA_LOCK:
        main_text = trafilatura.extract(tree, url=final_url, include_comments=False, include_tables=True,
                                        fast=fast) or ""
    if main_text.strip():
        keep = _select_main(events, main_text)
        sections = build_sections(events, keep)
        covered = sum(len(_key(s.text)) for s in sections)
        if covered < 0.5 * len(_key(main_text)):
            # our blocks do not line up with trafilatura's text: keep its text, unanchored
            sections = [Section(anchor="", heading="", text=main_text.strip())]
    else:
        # trafilatura found no main content (index pages, link lists): use every block
        keep = [ev[0] == "b" for ev in events]
        sections = build_sections(events, keep)
        main_text = "\n".join(s.text for s in sections)
    text = main_text.strip()
    page = Page(
        url=url,
        final_url=final_url,
        canonical_url=canonical,
        title=_title(tree, meta, events),
        lang=_language(text, events, sections) if text else "",
        text=text,
        sections=sections,
        published=_published(meta, html),
        content_hash=content_hash(events) if text else "",
    )
    return Extracted(page=page, links=links, noindex="noindex" in robots or "none" in robots,
                     nofollow="nofollow" in robots or "none" in robots)
