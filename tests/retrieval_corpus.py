"""A small real slice of the corpus, split and embedded once per test session.

Why a module and not conftest fixtures: the retrieval, rerank and CLI tests share it, and
other helpers own conftest.py. Pages are read from the installed Debian documentation and
split with the benchmark's extractor (section-aware, anchors kept); vectors come from the
real USE multilingual model.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from benchmarks.corpus_index import CORPUS_ROOT, chunks, sections_of
from search.config import Settings
from search.documents import Passage, passage_id
from search.text import detect_language

# English FAQ chapters (the cross-lingual targets), one German FAQ chapter (so a language
# filter has something to keep) and one Python page (another "site" by URL prefix).
PAGES = (
    "doc/debian/FAQ/basic-defs.en.html",
    "doc/debian/FAQ/pkg-basics.en.html",
    "doc/debian/FAQ/uptodate.en.html",
    "doc/debian/FAQ/support.en.html",
    "doc/debian/FAQ/de/basic-defs.de.html",
    "doc/python3.11/html/library/os.path.html",
)
EVAL_FILE = Path("/work/shared/eval/debian-faq.jsonl")


def page_passages(rel: str, base_url: str = "http://docs.test") -> list[Passage]:
    title, sections = sections_of((CORPUS_ROOT / rel).read_bytes())
    url = f"{base_url}/{rel}"
    lang = detect_language(" ".join(t for _, _, t in sections)[:3000])
    out: list[Passage] = []
    for anchor, heading, text in sections:
        for piece in chunks(text) or ([""] if heading else []):
            out.append(Passage(passage_id(url, anchor, len(out)), url, piece, anchor, title, heading, lang, len(out)))
    return out


@lru_cache(maxsize=1)
def embedder():
    from search.embed import load_embedder

    return load_embedder(Settings.load(env={"CITED_EMBED_MODEL": "use-multilingual"}))


@lru_cache(maxsize=1)
def corpus() -> tuple[Passage, ...]:
    """The slice's passages with USE vectors (embedded once per session)."""
    passages = [p for rel in PAGES for p in page_passages(rel)]
    from search.embed import passage_vectors

    vectors = passage_vectors(embedder(), passages, heading_weight=Settings().heading_weight)
    for p, v in zip(passages, vectors):
        p.vector = np.asarray(v, dtype=np.float32)
    return tuple(passages)


def dev_question(qid: str) -> dict:
    """One development-set question by id (the dev set ships with the repository's eval data)."""
    for line in EVAL_FILE.open(encoding="utf-8"):
        item = json.loads(line)
        if item["id"] == qid:
            return item
    raise KeyError(qid)
