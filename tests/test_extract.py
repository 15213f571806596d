"""crawler/extract.py on real documentation pages (Debian FAQ, reference, Python, PostgreSQL)
and on small pages that isolate one rule."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from crawler.extract import extract, heading_anchor, parse_html
from crawler.fetch import decode_html

SHARE = Path("/usr/share")


def real(path: str):
    f = SHARE / path
    if not f.exists():
        pytest.skip(f"{f} is not installed")
    html = decode_html(f.read_bytes(), "text/html")[0]
    return extract(html, "http://127.0.0.1:1/" + path), html


def ids_in(html: str) -> set[str]:
    return set(re.findall(r'\b(?:id|name)="([^"]+)"', html))


def test_debian_faq_sections_keep_heading_ids():
    ex, html = real("doc/debian/FAQ/pkgtools.en.html")
    page = ex.page
    assert page.title == "Chapter 8. The Debian package management tools"
    assert page.lang == "en"
    anchors = [s.anchor for s in page.sections]
    for expected in ("pkgprogs", "dpkg", "apt-get", "whatpackages", "filesearch"):
        assert expected in anchors
    assert set(anchors) <= ids_in(html)
    filesearch = next(s for s in page.sections if s.anchor == "filesearch")
    assert filesearch.heading.startswith("8.5. How can I find out what package produced a particular file?")
    assert "dpkg" in filesearch.text or "apt-file" in filesearch.text
    # boilerplate: the navigation header and the table of contents are not main text
    assert "Table of Contents" not in page.text
    assert any(link.endswith("uptodate.en.html") for link in ex.links)


@pytest.mark.parametrize("path, lang, anchor", [
    ("doc/debian/FAQ/ja/pkgtools.ja.html", "ja", "filesearch"),
    ("doc/debian/FAQ/zh-cn/pkgtools.zh-cn.html", "zh", "filesearch"),
    ("doc/debian/FAQ/ko/basic-defs.ko.html", "ko", "difference"),
    ("doc/debian/FAQ/ru/pkgtools.ru.html", "ru", "filesearch"),
    ("doc/debian/FAQ/de/pkgtools.de.html", "de", "filesearch"),
    ("doc/debian/FAQ/fr/index.fr.html", "fr", ""),  # an index page: its main text is a licence note
])
def test_language_is_detected_from_text(path, lang, anchor):
    ex, html = real(path)
    assert ex.page.lang == lang
    if anchor:
        assert anchor in [s.anchor for s in ex.page.sections]


def test_half_translated_page_is_labelled_by_its_majority():
    # the Korean package-tools chapter is mostly untranslated English
    ex, _ = real("doc/debian/FAQ/ko/pkgtools.ko.html")
    assert ex.page.lang == "en"


def test_sphinx_section_ids_and_postgres_title():
    ex, html = real("doc/python3.11/html/library/os.html")
    anchors = {s.anchor for s in ex.page.sections}
    assert "file-names-command-line-arguments-and-environment-variables" in anchors
    assert "process-parameters" in anchors
    assert "Navigation" not in {s.heading for s in ex.page.sections}
    pg, _ = real("doc/postgresql-doc-15/html/sql-select.html")
    assert pg.page.title == "SELECT"  # trafilatura's metadata says "Note"
    assert {"SQL-WITH", "SQL-FROM"} <= {s.anchor for s in pg.page.sections}


def test_installation_guide_a_name_anchors():
    ex, html = real("doc/installation-guide-amd64/en/ch02s01.html")
    anchors = [s.anchor for s in ex.page.sections]
    assert anchors[0] == "hardware-supported" and "laptops" in anchors


def test_base_href_canonical_robots_and_date():
    html = """<html><head><title>Release notes</title><base href="http://other.example/docs/">
    <link rel="canonical" href="/notes/final.html">
    <meta name="robots" content="noindex, nofollow">
    <meta property="article:published_time" content="2023-06-10T08:00:00Z"></head>
    <body><article><h1 id="top">Release notes</h1><p>""" + "Debian twelve was released with many changes. " * 20 + """</p>
    <h2><a name="upgrades"></a>Upgrades</h2><p>""" + "Upgrading from the previous release is supported. " * 20 + """</p>
    <p><a href="next.html">next</a> <a href="#top">top</a> <a rel="nofollow" href="ads.html">ad</a>
    <a href="mailto:x@y">mail</a></p></article></body></html>"""
    ex = extract(html, "http://site.example/a/page.html")
    assert ex.links == ["http://other.example/docs/next.html"]
    assert ex.page.canonical_url == "http://other.example/notes/final.html"
    assert ex.noindex and ex.nofollow
    assert ex.page.published == date(2023, 6, 10)
    assert [s.anchor for s in ex.page.sections] == ["top", "upgrades"]
    assert ex.page.sections[1].heading == "Upgrades"


def test_headings_without_ids_inherit_the_previous_anchor():
    html = ("<html><body><h1 id='a'>A</h1><p>" + "alpha words here. " * 30 + "</p><h2>No id</h2><p>"
            + "beta words here. " * 30 + "</p></body></html>")
    sections = extract(html, "http://h/").page.sections
    assert [(s.anchor, s.heading) for s in sections] == [("a", "A"), ("a", "No id")]


def test_heading_anchor_rules():
    tree = parse_html("""<html><body>
      <h2 id="own">x</h2>
      <h2><a id="inner"></a>y</h2>
      <span id="before"></span><h2>z</h2>
      <section id="sec"><h2>w<a class="headerlink" href="#sec">¶</a></h2></section>
      <div class="sect1" id="PG"><div class="titlepage"><div><h2>v</h2></div></div></div>
      <div id="notmine"><p>text first</p><h2>u</h2></div>
    </body></html>""")
    assert [heading_anchor(h) for h in tree.iter("h2")] == ["own", "inner", "before", "sec", "PG", ""]


def test_bad_input_is_a_clear_error():
    from crawler.extract import ExtractError

    with pytest.raises(ExtractError):
        extract("   ", "http://h/")
    page = extract("<html><body><script>var menu = 1;</script><style>p {}</style></body></html>", "http://h/").page
    assert page.text == "" and page.sections == []
