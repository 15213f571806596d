"""Embed the distinct section headings of the cached corpus (for the heading-blend experiment).

Why: a question usually names its topic the way a heading does; a passage vector that is
a blend of the heading's vector and the passage's vector lets dense retrieval match the
heading without the body's words drowning it. Headings are short, so this costs ~2% of
embedding the passages.

    python -m benchmarks.heading_vectors [--model use-multilingual]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from benchmarks.corpus_index import cache_dir, load_records
from search.config import Settings
from search.embed import load_embedder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="use-multilingual")
    args = parser.parse_args()
    out = cache_dir(args.model)
    out.mkdir(parents=True, exist_ok=True)
    records = load_records(out)
    headings = sorted({r.heading for r in records})
    embedder = load_embedder(Settings.load(env={**os.environ, "CITED_EMBED_MODEL": args.model}))
    vectors = embedder.encode_passages([h or " " for h in headings])
    np.save(out / "headings.npy", vectors)
    with open(out / "headings.json", "w") as fh:
        json.dump(headings, fh, ensure_ascii=False)
    print(f"{len(headings)} headings embedded -> {out}")


if __name__ == "__main__":
    main()
