"""`cited eval`: evaluate retrieval (and answers) on a query set, or compare two runs.

Why the retriever and answer pipeline are built by small functions here: the command only
wires settings to the pinned interfaces (``search.retrieve.Retriever``,
``search.answer.AnswerPipeline``); the work lives in search/evaluate.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from search.config import Settings
from search.evaluate import (
    DEFAULT_K,
    METRICS_FILE,
    MODES,
    REPORT_FILE,
    RESULTS_FILE,
    RELEVANT_FIELDS,
    EvalError,
    EvalRun,
    compare,
    format_comparison,
    format_table,
    load_queries,
)


def build_retriever(settings: Settings) -> Any:
    try:
        from search.retrieve import Retriever
    except ModuleNotFoundError as exc:
        if exc.name != "search.retrieve":
            raise
        raise EvalError("retrieval (search/retrieve.py) is not part of this build; cannot evaluate modes") from None
    return Retriever(settings)


def build_answerer(settings: Settings, retriever: Any) -> Any:
    try:
        from search.answer import AnswerPipeline
    except ModuleNotFoundError as exc:
        if exc.name != "search.answer":
            raise
        raise EvalError("the answer pipeline (search/answer.py) is not part of this build; drop --answers") from None
    return AnswerPipeline(settings, retriever=retriever)


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _err(message: str) -> None:
    click.echo(message, err=True)


@click.command()
@click.argument("queries", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--modes", default=",".join(MODES), show_default=True,
              help="Comma-separated retrieval modes to evaluate (bm25, dense, hybrid, rerank); empty for none.")
@click.option("--answers", "with_answers", is_flag=True, help="Also generate answers and score their citations.")
@click.option("--base-url", default=None, help="Join relative 'relevant' paths to this URL (where the corpus was crawled from).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: DATA_DIR/eval/<query file name>].")
@click.option("--resume", is_flag=True, help="Skip queries already in OUT/results.jsonl.")
@click.option("--overwrite", is_flag=True, help="Discard an existing OUT/results.jsonl and start again.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics document as the last line.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate only the first N queries.")
@click.option("--relevant-field", type=click.Choice(RELEVANT_FIELDS), default="relevant", show_default=True,
              help="Which list scores the results (relevant_en for the cross-lingual scenario).")
@click.option("--langs", default=None, help="Comma-separated query languages to keep (e.g. de,fr,ja).")
@click.option("--filter-lang", default=None,
              help="Search only passages in these languages (comma-separated), as if the index held only them.")
@click.option("--k", "k", type=click.IntRange(min=1), default=DEFAULT_K, show_default=True,
              help="Hits retrieved per query (recall@50 needs 50).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Queries per search_many call (embedding and reranking are batched).")
@click.option("--compare", "compare_paths", nargs=2, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Compare two metrics.json files (A B): differences and paired p-values.")
def evaluate(queries: Path | None, modes: str, with_answers: bool, base_url: str | None, out_dir: Path | None,
             resume: bool, overwrite: bool, as_json: bool, limit: int | None, relevant_field: str, langs: str | None,
             filter_lang: str | None, k: int, batch_size: int, compare_paths: tuple[Path, Path] | None) -> None:
    """Evaluate retrieval modes (and answers) on QUERIES.jsonl, or --compare A/metrics.json B/metrics.json.

    QUERIES.jsonl has one object a line: {"id", "query", "lang"?, "relevant"?: ["path#anchor"
    or URL, ...], "answer"?}. Bad rows are reported with their line numbers and skipped.
    Writes OUT/metrics.json, OUT/results.jsonl (appended as it goes) and OUT/report.html.
    """
    try:
        if compare_paths:
            if queries is not None:
                raise click.UsageError("give either QUERIES.jsonl or --compare A B, not both")
            result = compare(*compare_paths)
            if as_json:
                click.echo(json.dumps(result, ensure_ascii=False))
            else:
                click.echo(format_comparison(result))
            return
        if queries is None:
            raise click.UsageError("missing QUERIES.jsonl (or use --compare A/metrics.json B/metrics.json)")
        if resume and overwrite:
            raise click.UsageError("--resume and --overwrite contradict each other")
        mode_list = _split(modes)
        unknown = [m for m in mode_list if m not in MODES]
        if unknown:
            raise click.UsageError(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
        if not mode_list and not with_answers:
            raise click.UsageError("nothing to evaluate: give --modes and/or --answers")
        loaded, bad = load_queries(queries, relevant_field=relevant_field, langs=_split(langs) or None, limit=limit)
        for row in bad:
            _err(f"{queries}: skipped {row}")
        if not loaded:
            raise EvalError(f"{queries}: no usable queries ({len(bad)} bad row(s))")
        settings = Settings.load()
        out = out_dir or Path(settings.data_dir) / "eval" / queries.stem
        retriever = build_retriever(settings) if mode_list or with_answers else None
        answerer = build_answerer(settings, retriever) if with_answers else None
        info = {
            "queries_file": str(queries),
            "relevant_field": relevant_field,
            "langs": _split(langs) or "all",
            "base_url": base_url,
            "filter_lang": filter_lang,
            "k": k,
            "store": settings.store,
            "embed_model": settings.embed_model,
            "rerank_model": settings.rerank_model,
            "generator": settings.generator if with_answers else None,
        }
        filters = None
        if filter_lang:
            from search.documents import Filters

            filters = Filters(lang=_split(filter_lang))
        run = EvalRun(
            queries=loaded, out_dir=out, retriever=retriever, modes=mode_list, answerer=answerer,
            base_url=base_url, filters=filters, k=k, batch_size=batch_size, resume=resume, overwrite=overwrite,
            bad_rows=bad, info=info, log=_err,
        )
        doc = run.run()
    except EvalError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False))
        return
    for level in ("page", "section"):
        click.echo(format_table(doc, level))
        click.echo()
    if doc.get("answers"):
        click.echo("answers: " + json.dumps({k: v for k, v in doc["answers"].items() if k != "by_lang"}, ensure_ascii=False))
    click.echo(f"wrote {out / METRICS_FILE}, {out / RESULTS_FILE}, {out / REPORT_FILE}", file=sys.stderr)
