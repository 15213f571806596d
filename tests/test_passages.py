"""search/passages.py: section-aware, sentence-bounded passages with stable ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.documents import Page, Section, passage_id
from search.passages import (
    MAX_CHARS, MAX_WORDS, MIN_WORDS, chunk_section, is_cjk_text, size_of, split_page,
)

SENTENCES = [f"Sentence number {i} explains one more detail about installing packages on Debian." for i in range(80)]


def make_page(sections: list[Section], url: str = "http://h/doc.html") -> Page:
    return Page(url=url, title="Doc title", lang="en", sections=sections, content_hash="abc", text="x")


def test_long_section_is_split_on_sentences_with_overlap():
    text = " ".join(SENTENCES)
    chunks = chunk_section(text)
    assert len(chunks) >= 3
    for chunk in chunks:
        words = len(chunk.split())
        assert words <= MAX_WORDS
        assert chunk.endswith(".")  # sentence boundaries, never mid-sentence
    for chunk in chunks[:-1]:
        assert len(chunk.split()) >= MIN_WORDS
    for a, b in zip(chunks, chunks[1:]):
        last = a.rsplit(". ", 1)[-1]
        assert b.startswith(last.rstrip(".")), "one sentence of overlap"
    joined = " ".join(chunks)
    assert all(s in joined for s in SENTENCES)  # nothing lost


def test_short_sections_stay_whole_and_never_merge():
    page = make_page([Section("q1", "Question one?", "Short answer one."),
                      Section("q2", "Question two?", "Short answer two. With a second sentence.")])
    passages = split_page(page)
    assert [(p.anchor, p.heading, p.text) for p in passages] == [
        ("q1", "Question one?", "Short answer one."),
        ("q2", "Question two?", "Short answer two. With a second sentence."),
    ]
    assert [p.position for p in passages] == [0, 1]
    assert passages[0].id == passage_id("http://h/doc.html", "q1", 0)
    assert passages[0].title == "Doc title" and passages[0].lang == "en" and passages[0].page_hash == "abc"


def test_ids_are_stable_and_use_the_canonical_url():
    sections = [Section("s", "S", " ".join(SENTENCES))]
    a = split_page(make_page(sections))
    b = split_page(make_page(sections))
    assert [p.id for p in a] == [p.id for p in b]
    assert len({p.id for p in a}) == len(a)
    page = make_page(sections, url="http://h/doc.en.html")
    page.canonical_url = "http://h/doc.html"
    assert [p.id for p in split_page(page)] == [p.id for p in a]
    assert all(p.url == "http://h/doc.html" for p in split_page(page))


def test_very_long_sentence_is_cut():
    chunks = chunk_section("word " * 1000)
    assert len(chunks) >= 4 and all(len(c.split()) <= MAX_WORDS for c in chunks)


def test_cjk_is_sized_in_characters():
    text = "".join(f"これは日本語の文です。パッケージ管理について説明します{i}。" for i in range(60))
    assert is_cjk_text(text)
    chunks = chunk_section(text)
    assert len(chunks) >= 3
    assert all(len(c) <= MAX_CHARS for c in chunks)
    assert all(c.endswith("。") for c in chunks)
    assert not is_cjk_text("Plain English text with one 日本 word in it, mostly Latin letters.")


def test_real_faq_page_passages():
    path = Path("/usr/share/doc/debian/FAQ/ja/pkgtools.ja.html")
    if not path.exists():
        pytest.skip("debian-faq-ja is not installed")
    from crawler.extract import extract
    from crawler.fetch import decode_html

    page = extract(decode_html(path.read_bytes())[0], "http://h/pkgtools.ja.html").page
    passages = split_page(page)
    assert {"pkgprogs", "dpkg", "filesearch"} <= {p.anchor for p in passages}
    # Japanese sections are sized in characters; a section mostly in English (untranslated) in words
    assert all(size_of(p.text, True) <= MAX_CHARS or size_of(p.text, False) <= MAX_WORDS for p in passages)
    assert sum(size_of(p.text, True) > 150 for p in passages) >= 5  # not chopped into crumbs
    assert all(p.lang == "ja" for p in passages)
