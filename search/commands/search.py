"""`cited search`: ranked passages for one query, or one JSON line per query of a JSONL file."""

from __future__ import annotations

import json
import sys
from datetime import date
from typing import Iterator, TextIO

import click

from search.config import Settings
from search.documents import Filters
from search.retrieve import MODES, QueryError, Retriever, SearchResult, clean_query

BATCH = 64  # queries embedded together in --queries mode


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2024-05-31") from None


def _print_result(result: SearchResult) -> None:
    lang_note = f"  (query language: {result.lang})"
    trunc = "  [query truncated]" if result.truncated else ""
    click.echo(f"{len(result.hits)} hits for {result.query[:80]!r} [{result.mode}]{lang_note}{trunc}")
    for rank, hit in enumerate(result.hits, start=1):
        p = hit.passage
        scores = "  ".join(f"{name}={value:.4g}" for name, value in hit.scores.items())
        snippet = " ".join(p.text.split())[:200]
        click.echo(f"\n{rank:>2}. {p.title or p.url}" + (f" > {p.heading}" if p.heading else ""))
        click.echo(f"    {p.link}")
        click.echo(f"    {snippet}")
        click.echo(f"    [{p.lang or '?'}] {scores}")
    click.echo("\ntimings (ms): " + "  ".join(f"{k}={v * 1000:.1f}" for k, v in result.timings.items()))


def _line(query_id: object, result: SearchResult | None, error: str = "") -> str:
    if result is None:
        return json.dumps({"id": query_id, "hits": [], "timings": {}, "error": error}, ensure_ascii=False)
    data = result.to_json()
    hits = [{"url": h["url"], "title": h["title"], "text": h["text"], "scores": h["scores"]} for h in data["hits"]]
    return json.dumps({"id": query_id, "lang": result.lang, "hits": hits, "timings": data["timings"]}, ensure_ascii=False)


def _read_queries(fh: TextIO) -> Iterator[tuple[object, object, str]]:
    """(id, query, error) per non-empty line; a bad line becomes an error, not a stop."""
    for number, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield f"line-{number}", None, f"line {number} is not JSON: {exc.msg}"
            continue
        if not isinstance(item, dict) or "query" not in item:
            yield f"line-{number}", None, f'line {number} has no "query" field'
            continue
        yield item.get("id", f"line-{number}"), item["query"], ""


def _run_file(retriever: Retriever, fh: TextIO, k: int, mode: str, filters: Filters) -> None:
    pending: list[tuple[object, str]] = []

    def flush() -> None:
        if pending:
            results = retriever.search_many([q for _, q in pending], k=k, mode=mode, filters=filters)
            for (qid, _), result in zip(pending, results):
                click.echo(_line(qid, result))
            pending.clear()

    for qid, query, error in _read_queries(fh):
        if not error:
            try:
                clean_query(query)
            except QueryError as exc:
                error = str(exc)
        if error:
            flush()  # keep output in input order
            click.echo(_line(qid, None, error))
            continue
        pending.append((qid, query))
        if len(pending) >= BATCH:
            flush()
    flush()


@click.command()
@click.argument("query", required=False)
@click.option("--k", "k", type=click.IntRange(1, 1000), default=10, show_default=True, help="How many passages.")
@click.option("--mode", type=click.Choice(MODES), default="hybrid", show_default=True)
@click.option("--lang", multiple=True, help="Only passages in this language (repeatable), e.g. en.")
@click.option("--site", multiple=True, help="Only passages from this host (repeatable).")
@click.option("--url-prefix", default=None, help="Only passages whose URL starts with this.")
@click.option("--from", "date_from", callback=_date, help="Published on or after (YYYY-MM-DD).")
@click.option("--to", "date_to", callback=_date, help="Published on or before (YYYY-MM-DD).")
@click.option("--queries", type=click.File("r", encoding="utf-8"), help='JSONL file of {"id","query"}; one JSON line out per query.')
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def search(query, k, mode, lang, site, url_prefix, date_from, date_to, queries, as_json) -> None:
    """Search the index for QUERY and print ranked passages with scores and timings."""
    if (query is None) == (queries is None):
        raise click.UsageError('give a QUERY or --queries FILE.jsonl (one of them)')
    settings = Settings.load()
    filters = Filters(lang=list(lang) or None, site=list(site) or None, url_prefix=url_prefix,
                      published_from=date_from, published_to=date_to)
    retriever = Retriever(settings)
    try:
        try:
            if queries is not None:
                _run_file(retriever, queries, k, mode, filters)
                return
            result = retriever.search(query, k=k, mode=mode, filters=filters)
        except QueryError as exc:
            raise click.UsageError(str(exc)) from None
        if as_json:
            click.echo(json.dumps(result.to_json(), ensure_ascii=False))
        else:
            _print_result(result)
    finally:
        retriever.close()
    sys.stdout.flush()
