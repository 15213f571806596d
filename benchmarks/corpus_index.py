"""Build (once) and load a cached passage index of the whole evaluation corpus.

Why this exists: retrieval experiments need the ~3,600-page corpus as passages with
vectors, and embedding ~34k passages costs minutes of CPU. The crawler is not needed for
that: the corpus is static HTML under /usr/share, so this script reads the files
directly, splits them at their anchored headings, embeds once and caches the result under
$CITED_CACHE/retrieval-corpus/<model>/ (passages.jsonl + vectors.npy). Every experiment
then loads it in a second.

URLs are the paths relative to /usr/share (as in the development set), so page-level
scoring is a plain string comparison.

    python -m benchmarks.corpus_index [--model use-multilingual] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.config import Settings

CORPUS_ROOT = Path(os.environ.get("CITED_CORPUS_ROOT", "/usr/share"))
CACHE = Path(os.environ.get("CITED_CACHE", "/root/.cache/cited"))
CORPUS_DIRS = (
    "doc/debian/FAQ",
    "debian-reference",
    "doc/installation-guide-amd64",
    "doc/python3.11/html",
    "doc/postgresql-doc-15/html",
)
# Navigation, tables of contents and sidebars repeat on every page and are not content.
_DROP_XPATH = (
    "//script|//style|//noscript|//div[contains(@class,'toc')]|//div[contains(@class,'navheader')]"
    "|//div[contains(@class,'navfooter')]|//div[contains(@class,'sphinxsidebar')]"
    "|//div[contains(@class,'related')]|//div[@class='footer']|//div[contains(@class,'list-of-')]"
    "|//dl[contains(@class,'toc')]|//nav|//header|//footer"
)
_HEADING = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCK = {"p", "div", "li", "dt", "dd", "pre", "tr", "section", "table", "blockquote", "br", "ul", "ol", "dl"}
MAX_CHARS = 1000


@dataclass
class Record:
    id: str
    url: str
    anchor: str
    title: str
    heading: str
    lang: str
    text: str
    position: int


def corpus_files() -> list[Path]:
    """Every real HTML file of the corpus (symlinks such as FAQ/X.html -> X.en.html skipped)."""
    files = []
    for d in CORPUS_DIRS:
        for path in sorted((CORPUS_ROOT / d).rglob("*.html")):
            if path.is_file() and not path.is_symlink():
                files.append(path)
    return files


def _anchor_of(el) -> str:
    """A heading's link target: its id, an <a id/name> inside, or its section's id."""
    if el.get("id"):
        return el.get("id")
    for a in el.iter("a"):
        if a.get("id") or a.get("name"):
            return a.get("id") or a.get("name")
    parent = el.getparent()
    while parent is not None and parent.tag in ("div", "section"):
        if parent.get("id"):
            return parent.get("id")
        parent = parent.getparent()
    return ""


def sections_of(html: bytes) -> tuple[str, list[tuple[str, str, str]]]:
    """(title, [(anchor, heading, text)]) of one HTML page, split at its headings."""
    import lxml.html

    root = lxml.html.fromstring(html)
    title = " ".join((root.findtext(".//title") or "").split())
    for el in root.xpath(_DROP_XPATH):
        el.drop_tree()
    body = root.find("body")
    if body is None:
        body = root
    sections: list[list] = [["", "", []]]

    def walk(el) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag in _HEADING:
            sections.append([_anchor_of(el), " ".join(el.text_content().replace("\u00b6", " ").split()), []])
        else:
            if tag in _BLOCK:
                sections[-1][2].append("\n")
            if el.text and tag:
                sections[-1][2].append(el.text)
            for child in el:
                walk(child)
            if tag in _BLOCK:
                sections[-1][2].append("\n")
        if el.tail:
            sections[-1][2].append(el.tail)

    walk(body)
    out = []
    last_anchor = ""
    for anchor, heading, parts in sections:
        anchor = anchor or last_anchor
        last_anchor = anchor
        lines = [" ".join(line.split()) for line in "".join(parts).split("\n")]
        text = "\n".join(line for line in lines if line)
        if text or heading:
            out.append((anchor, heading, text))
    return title, out


def chunks(text: str, limit: int = MAX_CHARS) -> list[str]:
    """Pack lines into pieces of at most ``limit`` characters (long lines cut at sentences)."""
    pieces: list[str] = []
    for line in text.split("\n"):
        while len(line) > limit:
            cut = max(line.rfind(". ", 0, limit), line.rfind(" ", 0, limit))
            cut = cut + 1 if cut > limit // 2 else limit
            pieces.append(line[:cut].strip())
            line = line[cut:].strip()
        if line:
            pieces.append(line)
    out: list[str] = []
    for piece in pieces:
        if out and len(out[-1]) + 1 + len(piece) <= limit:
            out[-1] += "\n" + piece
        else:
            out.append(piece)
    return out


def extract_corpus(limit: int | None = None) -> list[Record]:
    from tqdm import tqdm

    from search.documents import passage_id
    from search.text import detect_language

    records: list[Record] = []
    files = corpus_files()[:limit] if limit else corpus_files()
    for path in tqdm(files, desc="extract", unit="page"):
        url = str(path.relative_to(CORPUS_ROOT))
        try:
            title, sections = sections_of(path.read_bytes())
        except Exception as exc:  # one bad page must not stop the build
            print(f"skip {url}: {exc}", file=sys.stderr)
            continue
        page_text = " ".join(t for _, _, t in sections)
        lang = detect_language(page_text[:3000])
        position = 0
        for anchor, heading, text in sections:
            for piece in chunks(text) or [""]:
                if not piece and not heading:
                    continue
                records.append(
                    Record(passage_id(url, anchor, position), url, anchor, title, heading, lang, piece, position)
                )
                position += 1
    return records


def embed_text(r: Record) -> str:
    """What the embedder sees: exactly what search.embed.passage_vectors gives it."""
    from search.embed import passage_input

    return passage_input(r.heading, r.text, EMBED_CHARS)


EMBED_CHARS = int(os.environ.get("CITED_EMBED_PASSAGE_CHARS", "0")) or Settings().embed_passage_chars


def cache_dir(model: str) -> Path:
    return CACHE / "retrieval-corpus" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", model) + f"-c{EMBED_CHARS}")


def build(model: str, limit: int | None = None, batch: int = 256) -> Path:
    """Extract and embed the corpus into the cache; resumes from a partial vectors file."""
    from tqdm import tqdm

    from search.config import Settings
    from search.embed import load_embedder

    out = cache_dir(model)
    out.mkdir(parents=True, exist_ok=True)
    passages_path = out / "passages.jsonl"
    if not passages_path.exists():
        records = extract_corpus(limit)
        tmp = passages_path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            for r in records:
                fh.write(json.dumps(r.__dict__, ensure_ascii=False) + "\n")
        tmp.rename(passages_path)
    records = load_records(out)
    print(f"{len(records)} passages from {len({r.url for r in records})} pages", file=sys.stderr)
    settings = Settings.load(env={**os.environ, "CITED_EMBED_MODEL": model})
    embedder = load_embedder(settings)
    parts_dir = out / "parts"
    parts_dir.mkdir(exist_ok=True)
    started = time.time()
    for start in tqdm(range(0, len(records), batch), desc=f"embed {model}", unit="batch"):
        part = parts_dir / f"{start:07d}.npy"
        if part.exists():
            continue
        vectors = embedder.encode_passages([embed_text(r) for r in records[start : start + batch]])
        np.save(part, vectors.astype(np.float32))
    matrix = np.vstack([np.load(p) for p in sorted(parts_dir.glob("*.npy"))])
    assert matrix.shape[0] == len(records), (matrix.shape, len(records))
    np.save(out / "vectors.npy", matrix)
    print(f"embedded in {time.time() - started:.0f}s -> {out}", file=sys.stderr)
    return out


def load_records(out: Path) -> list[Record]:
    with open(out / "passages.jsonl") as fh:
        return [Record(**json.loads(line)) for line in fh]


def load(model: str = "use-multilingual", partial: bool = False) -> tuple[list[Record], np.ndarray]:
    """The cached corpus passages and their unit vectors (build it first).

    ``partial``: while the build is still running, the passages embedded so far (the
    corpus directories are embedded in order, the FAQ first) -- for early experiments only.
    """
    out = cache_dir(model)
    if partial and not (out / "vectors.npy").exists():
        parts = sorted((out / "parts").glob("*.npy"))
        matrix = np.vstack([np.load(p) for p in parts])
        print(f"PARTIAL corpus: {matrix.shape[0]} passages", file=sys.stderr)
        return load_records(out)[: matrix.shape[0]], matrix
    if not (out / "vectors.npy").exists():
        raise SystemExit(f"no cached corpus index for {model}: run python -m benchmarks.corpus_index --model {model}")
    return load_records(out), np.load(out / "vectors.npy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="use-multilingual")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pages (for a quick try)")
    args = parser.parse_args()
    build(args.model, args.limit)


if __name__ == "__main__":
    main()


def load_blended(model: str = "use-multilingual", heading_weight: float = 0.5, partial: bool = False) -> tuple[list[Record], np.ndarray]:
    """The cached passages with index-time vectors as search.embed.passage_vectors makes them.

    The cache holds E(heading + text) per passage and E(heading) per distinct heading
    (benchmarks/heading_vectors.py); the blend is w * E(heading) + (1 - w) * E(heading + text).
    """
    records, body = load(model, partial)
    if heading_weight <= 0:
        return records, body
    out = cache_dir(model)
    if not (out / "headings.npy").exists():
        raise SystemExit(f"no heading vectors for {model}: run python -m benchmarks.heading_vectors --model {model}")
    headings = json.loads((out / "headings.json").read_text())
    index = {h: i for i, h in enumerate(headings)}
    hv = np.load(out / "headings.npy")
    rows = np.array([index[r.heading] for r in records])
    has = np.array([bool(r.heading) for r in records])[:, None]
    blended = np.where(has, heading_weight * hv[rows] + (1 - heading_weight) * body, body)
    blended /= np.linalg.norm(blended, axis=1, keepdims=True)
    return records, blended.astype(np.float32)
