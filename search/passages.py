"""Page -> Passages: the units that are embedded, searched and cited.

Why section-aware: a citation links to ``url#anchor``, so a passage never spans two
sections (it would cite the wrong heading). Why ~100-250 words on sentence boundaries:
long enough to hold an answer with its context, short enough for the embedder to
represent one topic and for an answer to quote; a sentence of overlap keeps a fact that
straddles a boundary findable from either side. CJK text has no spaces, so its size is
counted in characters (200-500 characters hold about as much as 100-250 English words).
"""

from __future__ import annotations

import re

from search.documents import Page, Passage, passage_id
from search.text import detect_language, has_cjk

MIN_WORDS, MAX_WORDS = 100, 250
MIN_CHARS, MAX_CHARS = 200, 500  # for CJK text
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
# End of a sentence: . ! ? followed by space (Latin, Cyrillic), or CJK full stops.
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+(?=\S)|(?<=[。！？；])")


def is_cjk_text(text: str) -> bool:
    """True when CJK characters dominate (sizes are then counted in characters)."""
    if not has_cjk(text):
        return False
    letters = sum(1 for ch in text if not ch.isspace())
    return letters > 0 and len(_CJK_CHAR.findall(text)) >= 0.3 * letters


def size_of(text: str, cjk: bool) -> int:
    return len("".join(text.split())) if cjk else len(text.split())


def split_sentences(text: str) -> list[str]:
    """Sentences of a section's text; each line (a block: paragraph, list item) ends one."""
    out: list[str] = []
    for line in text.split("\n"):
        for sentence in _SENTENCE_END.split(line):
            sentence = sentence.strip()
            if sentence:
                out.append(sentence)
    return out


def _hard_split(sentence: str, cjk: bool, limit: int) -> list[str]:
    """A sentence longer than a passage (code, tables) is cut by words or characters."""
    if cjk:
        return [sentence[i : i + limit] for i in range(0, len(sentence), limit)]
    words = sentence.split()
    return [" ".join(words[i : i + limit]) for i in range(0, len(words), limit)]


def chunk_section(text: str, cjk: bool | None = None) -> list[str]:
    """Pack sentences into chunks of MIN..MAX size with one sentence of overlap."""
    cjk = is_cjk_text(text) if cjk is None else cjk
    lo, hi = (MIN_CHARS, MAX_CHARS) if cjk else (MIN_WORDS, MAX_WORDS)
    units: list[str] = []
    for sentence in split_sentences(text):
        units.extend(_hard_split(sentence, cjk, hi) if size_of(sentence, cjk) > hi else [sentence])
    joiner = "" if cjk else " "
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for unit in units:
        n = size_of(unit, cjk)
        if current and size + n > hi:
            chunks.append(current)
            last = current[-1]
            keep_overlap = len(current) > 1 and size_of(last, cjk) <= hi // 5 and size_of(last, cjk) + n <= hi
            current = [last] if keep_overlap else []
            size = size_of(last, cjk) if keep_overlap else 0
        current.append(unit)
        size += n
    if current:
        # a short tail joins the previous chunk rather than standing alone
        if chunks and size < lo // 2 and sum(size_of(u, cjk) for u in chunks[-1]) + size <= hi:
            tail = current[1:] if current and current[0] == chunks[-1][-1] else current
            chunks[-1].extend(tail)
        else:
            chunks.append(current)
    return [joiner.join(c).strip() for c in chunks if joiner.join(c).strip()]


def text_language(text: str, fallback: str) -> str:
    """The text's own language when it is long enough to tell, else ``fallback``.

    Why per passage: translations often leave sections, or the second half of a section,
    in English (the Korean FAQ's package-tools chapter is half English); those passages
    are English text and should say so, while a short snippet ("dpkg --help") is too
    little to judge and takes its section's or page's language.
    """
    if len("".join(text.split())) < 200:
        return fallback
    return detect_language(text[:1000], default=fallback or "en")


def split_page(page: Page) -> list[Passage]:
    """The page's passages in reading order, with stable ids (canonical url, anchor, ordinal)."""
    url = page.key_url
    passages: list[Passage] = []
    for section in page.sections:
        section_lang = text_language(section.text, page.lang)
        for chunk in chunk_section(section.text):
            position = len(passages)
            passages.append(
                Passage(
                    id=passage_id(url, section.anchor, position),
                    url=url,
                    text=chunk,
                    anchor=section.anchor,
                    title=page.title,
                    heading=section.heading,
                    lang=text_language(chunk, section_lang),
                    position=position,
                    page_hash=page.content_hash,
                    published=page.published,
                )
            )
    return passages
