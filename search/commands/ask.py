"""`cited ask`: answer a question (or a file of questions) from the index, with citations.

    cited ask "How do I find which package owns a file?"          # readable answer
    cited ask "..." --stream                                        # tokens as they come
    cited ask "..." --json                                          # one JSON object
    cited ask "..." --stream --json                                 # one JSON line per event
    cited ask --queries FILE.jsonl --json                           # one JSON line per query

A queries file holds one ``{"id", "query"}`` object a line (optional ``history``: earlier
turns as strings or {"role", "content"}). A bad line gives a JSON line with ``error``
and the run goes on.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Iterator

import click

from search.config import Settings


def record_from_events(events: Iterable[tuple[str, dict[str, Any]]], query: str) -> dict[str, Any]:
    """One JSON-ready answer from a pipeline's events (the ``--json`` output)."""
    record: dict[str, Any] = {
        "query": query, "answer": "", "lang": "", "sources": [], "citations": [], "supported_share": 0.0,
        "related": [], "timings": {}, "models": {},
    }
    raw = ""
    for event, data in events:
        if event == "sources":
            record["lang"] = data.get("lang", "")
            record["sources"] = [
                {"n": s["n"], "url": s["url"], "title": s["title"], "lang": s.get("lang", "")} for s in data["sources"]
            ]
        elif event == "token":
            raw += data["text"]
        elif event == "citations":
            record["answer"] = data["text"]
            record["citations"] = [
                {k: c[k] for k in ("n", "sentence", "supported", "url", "quote", "score", "fragment_url") if k in c}
                for c in data["citations"]
            ]
            record["supported_share"] = data["supported_share"]
            record["dropped_citations"] = data.get("dropped", [])
            record["truncated"] = data.get("truncated", False)
        elif event == "related":
            record["related"] = data["questions"]
        elif event == "done":
            record["timings"] = data["timings"]
            record["models"] = data.get("models", {})
            record["lang"] = data.get("lang", record["lang"])
            record["finish_reason"] = data.get("finish_reason", "")
        elif event == "error":
            record["error"] = {"code": data["code"], "message": data["message"]}
    if not record["answer"]:
        record["answer"] = raw
    return record


def _read_queries(path: str) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, f"line {number}: not JSON ({exc.msg})"
                continue
            if not isinstance(item, dict) or not isinstance(item.get("query"), str):
                yield number, None, f"line {number}: needs a \"query\" string"
                continue
            yield number, item, ""


def _print_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, ensure_ascii=False))


@click.command()
@click.argument("question", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one line per query or, with --stream, per event).")
@click.option("--stream", is_flag=True, help="Print the answer while it is written.")
@click.option("--queries", type=click.Path(exists=True, dir_okay=False), help="A JSONL file of {\"id\", \"query\"}.")
@click.option("--history", "history_path", type=click.Path(exists=True, dir_okay=False),
              help="A JSON list of earlier turns (strings or {role, content}) for a follow-up question.")
@click.option("--lang", default="", help="Answer in this language (ISO 639-1) instead of the question's.")
@click.option("--generator", default="", help="Override CITED_GENERATOR (auto, llama-cpp, openai, transformers, extractive).")
@click.option("--no-related", is_flag=True, help="Do not suggest related questions.")
def ask(question: str | None, as_json: bool, stream: bool, queries: str | None, history_path: str | None,
        lang: str, generator: str, no_related: bool) -> None:
    """Answer QUESTION from the index: a short answer in its language, cited [n], with sources."""
    if bool(question) == bool(queries):
        raise click.UsageError("give a QUESTION or --queries FILE.jsonl (one of them)")
    if queries and not as_json:
        raise click.UsageError("--queries prints JSON lines: add --json")
    settings = Settings.load()
    changes: dict[str, Any] = {}
    if lang:
        changes["answer_lang"] = lang
    if generator:
        changes["generator"] = generator
    if no_related:
        changes["related_questions"] = False
    if changes:
        settings = settings.replace(**changes)
    from search.answer import AnswerPipeline

    pipeline = AnswerPipeline(settings)
    if queries:
        _ask_many(pipeline, queries)
        return
    history = None
    if history_path:
        try:
            with open(history_path, encoding="utf-8") as fh:
                history = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise click.UsageError(f"cannot read --history {history_path}: {exc}") from None
        if not isinstance(history, list):
            raise click.UsageError("--history must hold a JSON list of turns")
    events = pipeline.stream(question or "", history)
    if stream and as_json:
        failed = False
        for event, data in events:
            _print_json({"event": event, "data": data})
            failed |= event == "error"
        sys.exit(1 if failed else 0)
    if as_json:
        record = record_from_events(events, question or "")
        _print_json(record)
        sys.exit(1 if "error" in record else 0)
    _ask_text(events, question or "", stream)


def _ask_many(pipeline, path: str) -> None:
    from tqdm import tqdm

    items = list(_read_queries(path))
    for number, item, problem in tqdm(items, desc="answering", unit="q", file=sys.stderr, disable=None):
        if item is None:
            _print_json({"id": None, "line": number, "error": {"code": "bad_input", "message": problem}})
            continue
        record = record_from_events(pipeline.stream(item["query"], item.get("history")), item["query"])
        _print_json({"id": item.get("id"), **record})


def _ask_text(events, question: str, stream: bool) -> None:
    """Readable output: the answer (streamed or whole), its sources and citation checks."""
    collected: list[tuple[str, dict[str, Any]]] = []
    for event, data in events:
        collected.append((event, data))
        if event == "token" and stream:
            click.echo(data["text"], nl=False)
            sys.stdout.flush()
        if event == "error":
            if stream:
                click.echo()
            click.echo(f"Error ({data['code']}): {data['message']}", err=True)
            sys.exit(1)
    record = record_from_events(collected, question)
    if stream:
        click.echo()
        if record["answer"] and record["citations"]:
            click.echo(f"\n(checked) {record['answer']}")
    else:
        click.echo(record["answer"])
    if record["sources"]:
        click.echo("\nSources:")
        for s in record["sources"]:
            click.echo(f"  [{s['n']}] {s['title']}\n      {s['url']}")
    if record["citations"]:
        share = record["supported_share"]
        unsupported = [c for c in record["citations"] if not c["supported"]]
        click.echo(f"\nCitations: {len(record['citations'])}, sentences supported: {share:.0%}"
                   + (f", {len(unsupported)} not supported" if unsupported else ""))
    if record["related"]:
        click.echo("\nRelated:")
        for q in record["related"]:
            click.echo(f"  - {q}")
    t = record["timings"]
    if t:
        click.echo(f"\n({t.get('sources', 0):.2f}s to sources, {t.get('first_token', 0):.2f}s to first token, "
                   f"{t.get('total', 0):.2f}s total; {record['models'].get('generator', '')})", err=True)
