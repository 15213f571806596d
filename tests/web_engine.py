"""A tiny real retriever and answer pipeline for the web tests (tests only).

Why: the web app is built against the pinned interfaces of search.retrieve.Retriever and
search.answer.AnswerPipeline, and its tests must not depend on model loading. These run
for real on a small slice of the real corpus: sections of Debian FAQ pages parsed from
/usr/share, indexed in an SQLite FTS5 file (BM25 over the same bm25_text the stores use),
answered extractively (the first sentence of the best passages, cited). They are not part
of the engine; never import them from search/ or web/.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import quote as quote_url

import lxml.html

from search.documents import Answer, Citation, Filters, Hit, Passage, Source, passage_id
from search.store.base import StoreInfo, StoreUnavailable
from search.retrieve import QueryError, SearchResult
from search.text import bm25_terms, bm25_text, detect_language

# A crawled page whose text carries markup: it must show as text and never run.
XSS_TEXT = (
    'Cited xss probe: <script>window.__pwned = 1; document.title = "pwned"</script> '
    '<img src=x onerror="window.__pwned = 2"> and <b>bold</b> markup should show as text.'
)





def corpus_passages(root: Path, base_url: str, pages: Sequence[str]) -> list[Passage]:
    """Passages from real FAQ pages: one per section, anchored at the heading's id."""
    out: list[Passage] = []
    for rel in pages:
        doc = lxml.html.parse(str(root / rel)).getroot()
        title = " ".join((doc.findtext(".//title") or rel).split())
        url = f"{base_url}/{rel}"
        for position, heading in enumerate(doc.xpath("//h2|//h3|//h4")):
            anchors = heading.xpath(".//a[@id]/@id")
            section = heading.xpath("ancestor::div[contains(@class,'section')][1]")
            if not anchors or not section:
                continue
            copy = lxml.html.fromstring(lxml.html.tostring(section[0]))
            for nested in copy.xpath("./div[contains(@class,'section')]"):
                nested.getparent().remove(nested)
            for head in copy.xpath(".//div[@class='titlepage']"):
                head.getparent().remove(head)
            text = " ".join(copy.text_content().split())
            if len(text) < 40:
                continue
            out.append(
                Passage(
                    id=passage_id(url, anchors[0], 0),
                    url=url,
                    anchor=anchors[0],
                    title=title,
                    heading=" ".join(heading.text_content().split()),
                    lang=detect_language(text),
                    text=text,
                    position=position,
                )
            )
    return out


def xss_passage(base_url: str) -> Passage:
    url = f"{base_url}/doc/debian/FAQ/xss-probe.html"
    return Passage(id=passage_id(url, "probe", 0), url=url, anchor="probe", title='Probe <i>title</i> "quoted"',
                   heading="<em>probe</em>", lang="en", text=XSS_TEXT)


class TinyStore:
    """Read-only view of the SQLite file: reachable while the file is there."""

    backend = "tiny-sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> sqlite3.Connection:
        try:
            return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc

    def info(self) -> StoreInfo:
        with self.connect() as db:
            try:
                passages, pages = db.execute("select count(*), count(distinct url) from meta").fetchone()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot read {self.path}: {exc}") from exc
        return StoreInfo(backend=self.backend, location=str(self.path), passages=passages, pages=pages, dim=0, model="")


class TinyRetriever:
    """BM25 (SQLite FTS5) over a handful of passages, with the pinned search() signature."""

    def __init__(self, path: Path, passages: Sequence[Passage] = ()) -> None:
        self.store = TinyStore(path)
        if passages:
            with sqlite3.connect(path) as db:
                db.execute("create table meta (id text primary key, url text, anchor text, title text, heading text, lang text, text text, position int)")
                db.execute("create virtual table fts using fts5(id unindexed, body, tokenize='unicode61')")
                for p in passages:
                    db.execute("insert into meta values (?,?,?,?,?,?,?,?)", (p.id, p.url, p.anchor, p.title, p.heading, p.lang, p.text, p.position))
                    db.execute("insert into fts values (?, ?)", (p.id, bm25_text(f"{p.title} {p.heading} {p.text}")))

    def search(self, query: str, k: int = 10, mode: str = "hybrid", filters: Filters | None = None) -> SearchResult:
        started = time.perf_counter()
        terms = bm25_terms(query)
        if not terms:
            raise QueryError("the query has no words to search for")
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms[:64])
        with self.store.connect() as db:
            try:
                rows = db.execute(
                    "select m.id, m.url, m.anchor, m.title, m.heading, m.lang, m.text, m.position, bm25(fts) "
                    "from fts join meta m on m.id = fts.id where fts match ? order by bm25(fts) limit ?",
                    (match, k * 5),
                ).fetchall()
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"cannot search {self.store.path}: {exc}") from exc
        hits = []
        for pid, url, anchor, title, heading, lang, text, position, score in rows:
            p = Passage(id=pid, url=url, anchor=anchor, title=title, heading=heading, lang=lang, text=text, position=position)
            if filters is None or filters.matches(p):
                hits.append(Hit(passage=p, scores={"bm25": -float(score)}))
        return SearchResult(query, detect_language(query), mode, hits[:k], {"bm25": time.perf_counter() - started})


def _first_sentence(text: str) -> str:
    m = re.match(r"(.{20,240}?[.!?。！？])(\s|$)", text)
    return (m.group(1) if m else text[:200]).strip()


class TinyPipeline:
    """Extractive answers with the pinned event protocol: sources, token..., citations, related, done."""

    name = "tiny-extractive"

    def __init__(self, retriever: TinyRetriever, token_delay: float = 0.01) -> None:
        self.retriever = retriever
        self.generator = self
        self.token_delay = token_delay

    def stream(self, query: str, history: list[dict] | None = None) -> Iterator[tuple[str, dict]]:
        started = time.perf_counter()
        asked = [t["content"] for t in history or [] if t.get("role") == "user"]
        standalone = f"{asked[-1]} {query}" if asked else query
        result = self.retriever.search(standalone, k=4)
        hits = result.hits
        sources = [
            Source(n=i, url=h.passage.link, title=h.passage.title, passage_id=h.passage.id, lang=h.passage.lang, snippet=h.passage.text[:200])
            for i, h in enumerate(hits, start=1)
        ]
        yield "sources", {"sources": [s.__dict__ for s in sources], "lang": result.lang, "query": standalone}
        citations, text = [], ""
        for source, hit in list(zip(sources, hits))[:2]:
            sentence = _first_sentence(hit.passage.text)
            for word in re.findall(r"\S+\s*", sentence + f" [{source.n}] "):
                text += word
                yield "token", {"text": word}
                time.sleep(self.token_delay)
            quote = " ".join(sentence.split()[:8])
            citation = Citation(n=source.n, sentence=sentence, supported=True, url=source.url, quote=quote).__dict__
            citations.append(dict(citation, fragment_url=f"{source.url}:~:text={quote_url(quote, safe='')}"))
        yield "citations", {"text": text.strip(), "citations": citations, "supported_share": 1.0 if citations else 0.0}
        yield "related", {"questions": [h.passage.heading for h in hits[2:4]]}
        yield "done", {"timings": {"total": time.perf_counter() - started}, "models": {"generator": self.name}, "lang": result.lang}

    def answer(self, query: str, history: list[dict] | None = None) -> Answer:
        answer = Answer(query=query, lang=detect_language(query), text="")
        for event, data in self.stream(query, history):
            if event == "sources":
                answer.sources = [Source(**s) for s in data["sources"]]
            elif event == "citations":
                answer.text = data["text"]
                answer.citations = [Citation(**{k: v for k, v in c.items() if k != "fragment_url"}) for c in data["citations"]]
            elif event == "related":
                answer.related = data["questions"]
            elif event == "done":
                answer.timings = data["timings"]
        return answer
