"""Benchmark: answer latency on CPU with the packaged GGUF, against bare llama.cpp.

    python benchmarks/answer.py [--queries 5] [--max-tokens 128] [--data-dir DIR]

Prints ONE JSON line: time to sources, time to first token, total time (p50/p90/max),
generated tokens/s, peak RSS, and, in the same run on the same prompts, the bare
llama-cpp-python call's time to first token, with
  first_token_ratio = pipeline first token / bare first token   (target <= 1.2)
  sources_p50_s                                                 (target <= 0.3)

Fairness: the llama.cpp context is reset before every timed call (pipeline and bare), so
neither reuses the other's cached prompt. Related questions are off (they are a second
generation after the answer). Without --data-dir, the Debian FAQ package-tools chapter
(en, de, ja, zh) from /usr/share is indexed into a temporary LocalStore.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QUESTIONS = [
    "How can I find out what package produced a particular file?",
    "Wie kann ich herausfinden, welches Paket eine bestimmte Datei angelegt hat?",
    "特定のファイルをどのパッケージが提供しているのか調べる方法はありますか?",
    "如何查出一个特定的文件属于哪个软件包？",
    "How can I tell what packages are already installed on a Debian system?",
    "What programs does Debian provide for managing its packages?",
    "How do I display the files of an installed package?",
    "Debian claims to be able to update a running program; how is this accomplished?",
]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return 0.0
    k = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return round(values[k], 4)


def _retriever(settings, data_dir: str | None):
    """search.retrieve.Retriever over the given store; before that module exists, the test
    suite's BM25+kNN stand-in over a temporary index of the FAQ slice."""
    from search.embed import load_embedder

    embedder = load_embedder(settings)
    try:
        from search.retrieve import Retriever

        if data_dir:
            return Retriever(settings), embedder, "search.retrieve.Retriever"
    except ModuleNotFoundError:
        Retriever = None  # noqa: N806
    sys.path.insert(0, str(REPO / "tests"))
    from answer_support import TestRetriever, faq_passages, index_passages
    from search.store.local import LocalStore

    store = LocalStore(Path(tempfile.mkdtemp(prefix="cited-bench-")) / "store.sqlite3")
    index_passages(store, embedder, faq_passages("http://127.0.0.1/usr/share"))
    if Retriever is not None:
        return Retriever(settings, store=store, embedder=embedder), embedder, "search.retrieve.Retriever"
    return TestRetriever(store, embedder), embedder, "tests.answer_support.TestRetriever"


class _Recording:
    """Wraps the generator to keep the exact messages the pipeline sent (for the bare call)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.is_model = inner.is_model
        self.messages = None

    def stream(self, messages, *args, **kwargs):
        self.messages = list(messages)
        self.inner.llm.reset()
        return self.inner.stream(messages, *args, **kwargs)

    def complete(self, *args, **kwargs):
        return self.inner.complete(*args, **kwargs)


def bare_first_token(generator, messages, max_tokens: int) -> tuple[float, int, float]:
    """llama-cpp-python alone on the same messages: (first token s, tokens, total s)."""
    llm = generator.llm
    llm.reset()
    start = time.perf_counter()
    first = None
    tokens = 0
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True):
        if chunk["choices"][0].get("delta", {}).get("content"):
            tokens += 1
            if first is None:
                first = time.perf_counter() - start
    return first or 0.0, tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--data-dir", default=None, help="use this CITED_DATA_DIR's store instead of the FAQ slice")
    args = parser.parse_args()

    from search.answer import AnswerPipeline
    from search.cite import estimate_tokens
    from search.config import Settings
    from search.generate import load_llama_cpp

    env = dict(os.environ)
    if args.data_dir:
        env["CITED_DATA_DIR"] = args.data_dir
    env.setdefault("CITED_MODEL_DIR", str(Path(env.get("CITED_CACHE", Path.home() / ".cache/cited")) / "models"))
    env["CITED_RELATED_QUESTIONS"] = "0"
    env["CITED_ANSWER_MAX_TOKENS"] = str(args.max_tokens)
    settings = Settings.load(env=env)

    t = time.perf_counter()
    generator = load_llama_cpp(settings)
    load_s = time.perf_counter() - t
    retriever, embedder, retriever_name = _retriever(settings, args.data_dir)
    recording = _Recording(generator)
    pipeline = AnswerPipeline(settings, retriever=retriever, generator=recording, embedder=embedder)
    # Warm-up (first-call costs: page faults of the mmapped model, embedder caches).
    list(pipeline.stream("What is Debian?"))

    rows = []
    for query in QUESTIONS[: args.queries]:
        start = time.perf_counter()
        t_sources = t_first = None
        token_times = []
        done = {}
        for event, data in pipeline.stream(query):
            now = time.perf_counter() - start
            if event == "sources":
                t_sources = now
            elif event == "token":
                token_times.append(now)
                t_first = t_first if t_first is not None else now
            elif event == "done":
                done = data
            elif event == "error":
                raise SystemExit(f"pipeline error on {query!r}: {data}")
        total = time.perf_counter() - start
        messages = recording.messages
        prompt_tokens = generator.count_tokens(messages[0]["content"] + messages[1]["content"])
        bare_first, bare_tokens, bare_total = bare_first_token(generator, messages, args.max_tokens)
        gen_span = token_times[-1] - token_times[0] if len(token_times) > 1 else 0.0
        rows.append({
            "query": query,
            "sources_s": t_sources,
            "first_token_s": t_first,
            "total_s": total,
            "tokens": len(token_times),
            "tokens_per_s": (len(token_times) - 1) / gen_span if gen_span else 0.0,
            "prompt_tokens": prompt_tokens,
            "prompt_tokens_estimated": sum(estimate_tokens(m["content"]) for m in messages),
            "bare_first_token_s": bare_first,
            "bare_total_s": bare_total,
            "bare_tokens": bare_tokens,
            "finish_reason": done.get("finish_reason"),
        })
        # Progress on stderr (a loaded machine can take minutes per query; stdout stays one line).
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()},
                         ensure_ascii=False), file=sys.stderr, flush=True)

    ratios = [r["first_token_s"] / r["bare_first_token_s"] for r in rows if r["bare_first_token_s"]]
    result = {
        "benchmark": "answer",
        "device": "cpu",
        "cores": os.cpu_count(),
        "generator": generator.name,
        "retriever": retriever_name,
        "embedder": embedder.name,
        "queries": len(rows),
        "max_tokens": args.max_tokens,
        "evidence_tokens": settings.evidence_tokens,
        "model_load_s": round(load_s, 3),
        "sources_p50_s": _pct([r["sources_s"] for r in rows], 0.5),
        "sources_max_s": _pct([r["sources_s"] for r in rows], 1.0),
        "first_token_p50_s": _pct([r["first_token_s"] for r in rows], 0.5),
        "first_token_p90_s": _pct([r["first_token_s"] for r in rows], 0.9),
        "total_p50_s": _pct([r["total_s"] for r in rows], 0.5),
        "total_p90_s": _pct([r["total_s"] for r in rows], 0.9),
        "tokens_per_s_p50": _pct([r["tokens_per_s"] for r in rows], 0.5),
        "prompt_tokens_p50": _pct([r["prompt_tokens"] for r in rows], 0.5),
        "prompt_tokens_per_s_p50": _pct([r["prompt_tokens"] / r["bare_first_token_s"] for r in rows
                                         if r["bare_first_token_s"]], 0.5),
        "bare_first_token_p50_s": _pct([r["bare_first_token_s"] for r in rows], 0.5),
        "first_token_ratio_p50": _pct(ratios, 0.5),
        "first_token_ratio_max": _pct(ratios, 1.0),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "targets": {"first_token_ratio_le_1_2": bool(ratios) and statistics.median(ratios) <= 1.2,
                    "sources_p50_le_0_3s": _pct([r["sources_s"] for r in rows], 0.5) <= 0.3},
        "per_query": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                      for r in rows],
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
