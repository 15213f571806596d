"""Batch evaluation: run a query set through every retrieval mode (and the answer
pipeline), keep each query's result on disk as it is produced, and summarise.

Why the results file comes first: a full run over the development set takes long enough
to be interrupted, so every finished batch is appended to ``results.jsonl`` and flushed
before the next begins; ``--resume`` skips what is already there. The metrics are always
computed from that file (never from memory), so a resumed run and an uninterrupted one
give the same numbers, and ``--compare`` can run paired tests on the per-query rows.

Input: one JSON object a line, ``{"id", "query", "lang"?, "relevant"?, "answer"?}`` (the
development set also carries ``relevant_en`` and ``answer_en``). A bad row is reported
with its line number and skipped; it never stops the run.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from search import metrics as M
from search.text import detect_language

MODES = ("bm25", "dense", "hybrid", "rerank")
ANSWER_MODE = "answer"
KNOWN_FIELDS = frozenset({"id", "query", "lang", "relevant", "relevant_en", "answer", "answer_en"})
RELEVANT_FIELDS = ("relevant", "relevant_en")
MAIN_METRICS = ("recall@1", "recall@5", "recall@10", "recall@50", "ndcg@10", "mrr@10")
TESTED_METRICS = ("recall@10", "ndcg@10", "mrr@10")
DEFAULT_K = 50
RESULTS_FILE = "results.jsonl"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
_CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")


class EvalError(ValueError):
    """An evaluation cannot start or finish (bad arguments, unreadable files); says why."""


# ---------------------------------------------------------------------------- queries
@dataclass
class EvalQuery:
    id: str
    query: str
    lang: str
    relevant: list[str]
    answer: str | None
    line: int
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class BadRow:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def _normalise_lang(lang: str) -> str:
    """Language codes as ``detect_language`` returns them: ``zh-cn`` -> ``zh``, ``pt-BR`` -> ``pt``."""
    return lang.strip().lower().replace("_", "-").split("-")[0]


def parse_query_row(raw: str, line: int, relevant_field: str = "relevant") -> EvalQuery | BadRow:
    """One line of a query file, checked; a ``BadRow`` says what is wrong with it."""
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        return BadRow(line, f"not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(row, dict):
        return BadRow(line, f"expected a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - KNOWN_FIELDS)
    if unknown:
        return BadRow(line, f"unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(KNOWN_FIELDS))}")
    query = row.get("query")
    if not isinstance(query, str) or not query.strip():
        return BadRow(line, "no query (the 'query' field must be a non-empty string)")
    qid = row.get("id")
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or str(qid).strip() == "":
        return BadRow(line, "no id (the 'id' field must be a non-empty string or integer)")
    for name in RELEVANT_FIELDS:
        value = row.get(name)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            return BadRow(line, f"'{name}' must be a list of strings (paths or URLs)")
    lang = row.get("lang")
    if lang is not None and (not isinstance(lang, str) or not lang.strip()):
        return BadRow(line, "'lang' must be a non-empty string")
    answer = row.get("answer")
    if answer is not None and not isinstance(answer, str):
        return BadRow(line, "'answer' must be a string")
    return EvalQuery(
        id=str(qid),
        query=query,
        lang=_normalise_lang(lang) if lang else detect_language(query),
        relevant=list(row.get(relevant_field) or []),
        answer=answer,
        line=line,
        fields=row,
    )


def load_queries(
    path: str | Path, relevant_field: str = "relevant", langs: Sequence[str] | None = None, limit: int | None = None
) -> tuple[list[EvalQuery], list[BadRow]]:
    """Read a query file: the good queries (in file order) and the bad rows with line numbers.

    ``langs`` keeps only queries in those languages (the cross-lingual scenario asks the
    non-English questions); ``limit`` keeps the first N good queries. Duplicate ids are bad
    rows too, since results are keyed by id.
    """
    if relevant_field not in RELEVANT_FIELDS:
        raise EvalError(f"the relevant field must be one of {', '.join(RELEVANT_FIELDS)}, not {relevant_field!r}")
    wanted = {_normalise_lang(x) for x in langs} if langs else None
    queries: list[EvalQuery] = []
    bad: list[BadRow] = []
    seen: dict[str, int] = {}
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise EvalError(f"cannot read the query file {path}: {exc.strerror or exc}") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            parsed = parse_query_row(raw, number, relevant_field)
            if isinstance(parsed, BadRow):
                bad.append(parsed)
                continue
            if parsed.id in seen:
                bad.append(BadRow(number, f"duplicate id {parsed.id!r} (first on line {seen[parsed.id]})"))
                continue
            seen[parsed.id] = number
            if wanted is not None and parsed.lang not in wanted:
                continue
            if limit is None or len(queries) < limit:
                queries.append(parsed)
    return queries, bad


# ---------------------------------------------------------------------------- interfaces
class SearchResultLike(Protocol):
    query: str
    lang: str
    mode: str
    hits: list
    timings: dict[str, float]


class RetrieverLike(Protocol):
    """What evaluation needs of ``search.retrieve.Retriever`` (the pinned interface)."""

    def search(self, query: str, k: int = 10, mode: str = "hybrid", filters: Any = None) -> SearchResultLike: ...

    def search_many(self, queries: list[str], k: int, mode: str, filters: Any = None) -> list[SearchResultLike]: ...


class AnswererLike(Protocol):
    """What evaluation needs of ``search.answer.AnswerPipeline``."""

    def answer(self, query: str, history: Any = None) -> Any: ...


# ---------------------------------------------------------------------------- results file
class ResultsFile:
    """``results.jsonl``: one row per (query id, mode), appended and flushed as it goes.

    Why the repair step: a run killed mid-write can leave a half line at the end; it is cut
    off on open so the next append starts on a fresh line and the file stays readable.
    """

    def __init__(self, path: Path, resume: bool, overwrite: bool = False) -> None:
        self.path = path
        self.skipped_lines: list[int] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        exists = path.exists() and path.stat().st_size > 0
        if exists and not resume and not overwrite:
            raise EvalError(
                f"{path} already holds results; pass --resume to continue that run "
                "or --overwrite to start again (or choose another --out)"
            )
        if exists and overwrite and not resume:
            path.unlink()
        self._repair()
        self.done: set[tuple[str, str]] = {(r["id"], r["mode"]) for r in self.rows()}
        self._handle = open(path, "a", encoding="utf-8")

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as fh:
                fh.truncate(cut)

    def rows(self) -> Iterator[dict[str, Any]]:
        return read_results(self.path, self.skipped_lines)

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.done.add((row["id"], row["mode"]))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def read_results(path: Path, skipped: list[int] | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a results file; unreadable lines are skipped (their numbers go to ``skipped``)."""
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
                if isinstance(row, dict) and "id" in row and "mode" in row:
                    yield row
                    continue
            except json.JSONDecodeError:
                pass
            if skipped is not None:
                skipped.append(number)


# ---------------------------------------------------------------------------- one row
def _hit_record(hit: Any) -> dict[str, Any]:
    passage = hit.passage
    return {
        "link": passage.link,
        "title": passage.title,
        "lang": passage.lang,
        "score": round(float(hit.score), 6),
    }


def retrieval_row(q: EvalQuery, mode: str, result: SearchResultLike | None, relevant: list[str],
                  wall_s: float, error: str | None = None) -> dict[str, Any]:
    """The results row of one query in one retrieval mode."""
    hits = [_hit_record(h) for h in result.hits] if result is not None else []
    scored = M.score_ranking([h["link"] for h in hits], relevant)
    timings = {k: float(v) for k, v in (result.timings if result is not None else {}).items()}
    timings["wall"] = wall_s
    return _row(q, mode, relevant, timings, error, page=scored["page"], section=scored["section"], hits=hits)


def _row(q: EvalQuery, mode: str, relevant: list[str], timings: dict[str, float], error: str | None,
         **fields: Any) -> dict[str, Any]:
    """A results row: the query and mode first, the mode's own fields, then timings and error."""
    return {"id": q.id, "mode": mode, "query": q.query, "lang": q.lang, "relevant": relevant, **fields,
            "timings": timings, "error": error}


def citation_numbers(text: str) -> list[int]:
    """Every [n] in an answer, in order, with [n, m] and [n][m] split.

    >>> citation_numbers("Use apt [1][3]. Or dpkg [2, 4]; see [x] and [10].")
    [1, 3, 2, 4, 10]
    """
    out: list[int] = []
    for m in _CITATION.finditer(text):
        out.extend(int(n) for n in re.split(r"\s*[,;]\s*", m.group(1)))
    return out


def answer_checks(answer: Any, expected_lang: str, relevant: list[str]) -> dict[str, Any]:
    """Per-answer checks: citations in range, citing a relevant source, support, language.

    Why parse the text instead of trusting ``answer.citations``: the point is to catch what
    the pipeline gets wrong, and a citation it dropped or mis-numbered is only visible in
    the text the reader sees.
    """
    text = answer.text or ""
    sources = list(answer.sources or [])
    numbers = citation_numbers(text)
    valid = [n for n in numbers if 1 <= n <= len(sources)]
    cited_links = [sources[n - 1].url for n in dict.fromkeys(valid)]
    verified = list(answer.citations or [])
    supported = sum(1 for c in verified if getattr(c, "supported", False))
    page_rel = {M.page_of(r) for r in relevant}
    cites_page = any(M.page_of(M.normalize_link(link)) in page_rel for link in cited_links)
    section_rel = set(relevant)
    cites_section = any(M.normalize_link(link) in section_rel for link in cited_links)
    no_answer = getattr(answer, "no_answer", None)
    if no_answer is None:
        # The pipeline's own "the sources do not answer" reply, or any reply that cites
        # nothing valid (a model saying so in its own words cites nothing either).
        no_answer = not valid or _is_no_answer_text(text)
    answer_lang = detect_language(text) if text.strip() else ""
    return {
        "citations": len(numbers),
        "valid_citations": len(valid),
        "cites_relevant_page": bool(relevant) and cites_page,
        "cites_relevant_section": bool(relevant) and cites_section,
        "verified": len(verified),
        "supported": supported,
        "answer_lang": answer_lang,
        "lang_match": answer_lang == expected_lang,
        "length_chars": len(text),
        "no_answer": bool(no_answer),
    }


def _is_no_answer_text(text: str) -> bool:
    try:
        from search.cite import NO_ANSWER
    except ImportError:  # the answers stage is not installed: only the citation rule applies
        return False
    stripped = text.strip()
    return any(stripped.startswith(phrase) for phrase in NO_ANSWER.values())


# Timing entries that are counts, not seconds (the answer pipeline reports generated tokens).
NON_TIME_KEYS = frozenset({"tokens"})


def answer_row(q: EvalQuery, answer: Any | None, relevant: list[str], wall_s: float,
               error: str | None = None) -> dict[str, Any]:
    models = getattr(answer, "models", None) or {}
    if answer is not None and error is None and models.get("error"):
        # AnswerPipeline.answer turns failures into an Answer with models["error"] set.
        error = f"{models['error']}: {models.get('message', '')}".strip()
    payload = answer.to_json() if answer is not None and hasattr(answer, "to_json") else None
    checks = answer_checks(answer, q.lang, relevant) if answer is not None else None
    timings = {k: float(v) for k, v in ((answer.timings or {}) if answer is not None else {}).items()
               if k not in NON_TIME_KEYS and isinstance(v, (int, float))}
    timings["wall"] = wall_s
    return _row(q, ANSWER_MODE, relevant, timings, error, answer=payload, checks=checks)


# ---------------------------------------------------------------------------- running
@dataclass
class EvalRun:
    """Everything one evaluation needs; ``run()`` does it and returns the metrics document."""

    queries: list[EvalQuery]
    out_dir: Path
    retriever: RetrieverLike | None
    modes: Sequence[str] = MODES
    answerer: AnswererLike | None = None
    base_url: str | None = None
    filters: Any = None  # documents.Filters for every search (e.g. lang="en": an English-only index)
    k: int = DEFAULT_K
    batch_size: int = 32
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    bad_rows: list[BadRow] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    report: bool = True
    log: Callable[[str], None] = lambda message: None

    def run(self) -> dict[str, Any]:
        for mode in self.modes:
            if mode not in MODES:
                raise EvalError(f"unknown mode {mode!r}; expected some of {', '.join(MODES)}")
        if self.modes and self.retriever is None:
            raise EvalError("retrieval modes need a retriever")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        results = ResultsFile(self.out_dir / RESULTS_FILE, resume=self.resume, overwrite=self.overwrite)
        mode_errors: dict[str, str] = {}
        try:
            todo = {mode: [q for q in self.queries if (q.id, mode) not in results.done] for mode in self.modes}
            answer_todo = (
                [q for q in self.queries if (q.id, ANSWER_MODE) not in results.done] if self.answerer else []
            )
            total = sum(len(v) for v in todo.values()) + len(answer_todo)
            resumed = len(self.queries) * (len(self.modes) + (1 if self.answerer else 0)) - total
            if resumed and self.resume:
                self.log(f"resuming: {resumed} query/mode results already in {results.path}")
            bar = _progress(total, self.progress)
            try:
                for mode, pending in todo.items():
                    error = self._run_mode(mode, pending, results, bar)
                    if error:
                        mode_errors[mode] = error
                        self.log(f"mode {mode} failed and was skipped: {error}")
                for q in answer_todo:
                    results.append([self._answer_one(q)])
                    bar.update(1)
            finally:
                bar.close()
            if results.skipped_lines:
                self.log(f"{results.path}: skipped unreadable line(s) {results.skipped_lines[:10]}")
        finally:
            results.close()
        doc = summarise(
            list(read_results(self.out_dir / RESULTS_FILE)),
            self.queries,
            modes=list(self.modes),
            with_answers=self.answerer is not None,
            base_url=self.base_url,
            bad_rows=self.bad_rows,
            mode_errors=mode_errors,
            info=self.info,
        )
        write_json(self.out_dir / METRICS_FILE, doc)
        if self.report:
            from search.eval_report import write_report

            write_report(self.out_dir, doc, list(read_results(self.out_dir / RESULTS_FILE)))
        return doc

    def _relevant(self, q: EvalQuery) -> list[str]:
        return M.resolve_relevant(q.relevant, self.base_url)

    def _run_mode(self, mode: str, pending: list[EvalQuery], results: ResultsFile, bar: Any) -> str | None:
        """Run one mode in batches; returns an error message when the mode cannot run at all."""
        bar.set_description(mode)
        for start in range(0, len(pending), self.batch_size):
            batch = pending[start : start + self.batch_size]
            t0 = time.perf_counter()
            try:
                found = self.retriever.search_many([q.query for q in batch], k=self.k, mode=mode, filters=self.filters)
                wall = (time.perf_counter() - t0) / len(batch)
                rows = [retrieval_row(q, mode, r, self._relevant(q), wall) for q, r in zip(batch, found, strict=True)]
            except ValueError:
                # One unusable query (QueryError is a ValueError) must not sink its batch:
                # ask one by one and record the bad one as an error row.
                rows = [self._search_one(q, mode) for q in batch]
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # a mode that cannot run (no reranker, store down)
                if start == 0:
                    bar.update(len(pending))
                    return f"{type(exc).__name__}: {exc}"
                raise
            results.append(rows)
            bar.update(len(batch))
        return None

    def _search_one(self, q: EvalQuery, mode: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            result = self.retriever.search(q.query, k=self.k, mode=mode, filters=self.filters)
        except ValueError as exc:
            return retrieval_row(q, mode, None, self._relevant(q), time.perf_counter() - t0, error=str(exc))
        return retrieval_row(q, mode, result, self._relevant(q), time.perf_counter() - t0)

    def _answer_one(self, q: EvalQuery) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            answer = self.answerer.answer(q.query)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # recorded per query: one failing answer must not end the run
            return answer_row(q, None, self._relevant(q), time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}")
        return answer_row(q, answer, self._relevant(q), time.perf_counter() - t0)


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    # disable=None: a bar on a terminal, silence in pipes and CI logs.
    return tqdm(total=total, unit="query", disable=None if enabled else True, dynamic_ncols=True)


# ---------------------------------------------------------------------------- summarising
def _rows_by_mode(rows: Iterable[dict[str, Any]], ids: set[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """The last row per (mode, id) for the wanted ids (a resumed run may repeat none, but be safe)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row["id"] in ids:
            out.setdefault(row["mode"], {})[row["id"]] = row
    return out


def per_query_scores(rows: dict[str, dict[str, Any]], queries: Sequence[EvalQuery], base_url: str | None
                     ) -> dict[str, dict[str, dict[str, float]]]:
    """``{level: {query id: scores}}`` recomputed from the stored hits and the current relevant set.

    Why recompute: the stored hits are the facts; the relevant set may be scored differently
    (another ``--base-url`` or relevant field) without searching again.
    """
    out: dict[str, dict[str, dict[str, float]]] = {level: {} for level in M.LEVELS}
    for q in queries:
        row = rows.get(q.id)
        if row is None:
            continue
        scored = M.score_ranking([h["link"] for h in row.get("hits", [])], M.resolve_relevant(q.relevant, base_url))
        for level in M.LEVELS:
            out[level][q.id] = scored[level]["scores"]
    return out


def _latency(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    stages: dict[str, list[float]] = {}
    for row in rows:
        if row.get("error"):
            continue
        for stage, seconds in (row.get("timings") or {}).items():
            if isinstance(seconds, (int, float)):
                stages.setdefault(stage, []).append(float(seconds) * 1000)
    return {
        stage: {"p50_ms": M.percentile(v, 50), "p95_ms": M.percentile(v, 95), "n": len(v)}
        for stage, v in sorted(stages.items())
    }


def _mode_summary(rows: dict[str, dict[str, Any]], queries: Sequence[EvalQuery], base_url: str | None) -> dict[str, Any]:
    scores = per_query_scores(rows, queries, base_url)
    scored_ids = [q.id for q in queries if q.id in rows]
    summary: dict[str, Any] = {
        "queries": len(scored_ids),
        "errors": sum(1 for i in scored_ids if rows[i].get("error")),
    }
    for level in M.LEVELS:
        summary[level] = M.mean_scores([scores[level][i] for i in scored_ids])
    by_lang: dict[str, Any] = {}
    for lang in sorted({q.lang for q in queries if q.id in rows}):
        ids = [q.id for q in queries if q.lang == lang and q.id in rows]
        by_lang[lang] = {"queries": len(ids)}
        for level in M.LEVELS:
            by_lang[lang][level] = M.mean_scores([scores[level][i] for i in ids])
    summary["by_lang"] = by_lang
    return summary


def _answers_summary(rows: dict[str, dict[str, Any]], queries: Sequence[EvalQuery]) -> dict[str, Any]:
    answered = [rows[q.id] for q in queries if q.id in rows]
    ok = [r for r in answered if not r.get("error") and r.get("checks")]

    def share(items: list[dict[str, Any]], key: str) -> float | None:
        return sum(1 for r in items if r["checks"][key]) / len(items) if items else None

    total_citations = sum(r["checks"]["citations"] for r in ok)
    verified = sum(r["checks"]["verified"] for r in ok)
    lengths = [r["checks"]["length_chars"] for r in ok]
    by_lang: dict[str, Any] = {}
    for lang in sorted({r["lang"] for r in ok}):
        group = [r for r in ok if r["lang"] == lang]
        by_lang[lang] = {
            "answers": len(group),
            "cites_relevant_page": share(group, "cites_relevant_page"),
            "language_match": share(group, "lang_match"),
            "no_answer_share": share(group, "no_answer"),
        }
    return {
        "queries": len(answered),
        "errors": len(answered) - len(ok),
        "cites_relevant_page": share(ok, "cites_relevant_page"),
        "cites_relevant_section": share(ok, "cites_relevant_section"),
        "citation_validity": (sum(r["checks"]["valid_citations"] for r in ok) / total_citations) if total_citations else None,
        "citations_per_answer": (total_citations / len(ok)) if ok else None,
        "support_rate": (sum(r["checks"]["supported"] for r in ok) / verified) if verified else None,
        "language_match": share(ok, "lang_match"),
        "length_chars": {"mean": (sum(lengths) / len(lengths)) if lengths else None, "p50": M.percentile(lengths, 50)},
        "no_answer_share": share(ok, "no_answer"),
        "by_lang": by_lang,
    }


def mode_significance(scores: dict[str, dict[str, dict[str, dict[str, float]]]], modes: Sequence[str]
                      ) -> dict[str, Any]:
    """Paired randomisation tests between every pair of modes on the queries both scored."""
    out: dict[str, Any] = {}
    for a, b in combinations([m for m in modes if m in scores], 2):
        pair: dict[str, Any] = {}
        for level in M.LEVELS:
            common = sorted(set(scores[a][level]) & set(scores[b][level]))
            if not common:
                continue
            pair[level] = {}
            for metric in TESTED_METRICS:
                xa = [scores[a][level][i][metric] for i in common]
                xb = [scores[b][level][i][metric] for i in common]
                pair[level][metric] = {
                    "diff": sum(xb) / len(xb) - sum(xa) / len(xa),
                    "p": M.paired_randomization_test(xa, xb),
                }
        out[f"{b} vs {a}"] = pair
    return out


def summarise(rows: list[dict[str, Any]], queries: Sequence[EvalQuery], modes: Sequence[str],
              with_answers: bool = False, base_url: str | None = None, bad_rows: Sequence[BadRow] = (),
              mode_errors: dict[str, str] | None = None, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metrics document (what ``--json`` prints last and ``metrics.json`` holds)."""
    ids = {q.id for q in queries}
    grouped = _rows_by_mode(rows, ids)
    doc: dict[str, Any] = {"modes": {}, "answers": {}, "latency": {}}
    per_mode_scores: dict[str, Any] = {}
    for mode in modes:
        if mode_errors and mode in mode_errors and mode not in grouped:
            doc["modes"][mode] = {"queries": 0, "error": mode_errors[mode]}
            continue
        mode_rows = grouped.get(mode, {})
        doc["modes"][mode] = _mode_summary(mode_rows, queries, base_url)
        per_mode_scores[mode] = per_query_scores(mode_rows, queries, base_url)
        doc["latency"][mode] = _latency(mode_rows.values())
    if with_answers:
        answer_rows = grouped.get(ANSWER_MODE, {})
        doc["answers"] = _answers_summary(answer_rows, queries)
        doc["latency"][ANSWER_MODE] = _latency(answer_rows.values())
    doc["significance"] = mode_significance(per_mode_scores, modes)
    doc["queries"] = len(queries)
    doc["bad_rows"] = [{"line": b.line, "reason": b.reason} for b in bad_rows]
    doc["run"] = dict(info or {})
    return doc


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write atomically (temp file, then rename) so a reader never sees half a document."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


# ---------------------------------------------------------------------------- comparing
def _load_metrics(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EvalError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise EvalError(f"{path} is not a metrics document (invalid JSON at line {exc.lineno})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("modes"), dict):
        raise EvalError(f"{path} is not a metrics document (no 'modes')")
    return doc


def _stored_scores(results: Path) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{mode: {level: {id: scores}}}`` as recorded in a results file."""
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for row in read_results(results):
        if row["mode"] == ANSWER_MODE or row.get("error"):
            continue
        for level in M.LEVELS:
            scores = (row.get(level) or {}).get("scores")
            if scores:
                out.setdefault(row["mode"], {}).setdefault(level, {})[row["id"]] = scores
    return out


def compare(path_a: str | Path, path_b: str | Path) -> dict[str, Any]:
    """Differences B - A of the main metrics, with paired p-values where per-query rows exist.

    The per-query scores come from the ``results.jsonl`` beside each metrics file; only the
    queries both runs scored are paired. Without them the p-value is null.
    """
    path_a, path_b = Path(path_a), Path(path_b)
    doc_a, doc_b = _load_metrics(path_a), _load_metrics(path_b)
    per_a = _stored_scores(path_a.parent / RESULTS_FILE)
    per_b = _stored_scores(path_b.parent / RESULTS_FILE)
    out: dict[str, Any] = {"a": str(path_a), "b": str(path_b), "modes": {}}
    for mode in [m for m in doc_a["modes"] if m in doc_b["modes"]]:
        entry: dict[str, Any] = {}
        for level in M.LEVELS:
            ma, mb = doc_a["modes"][mode].get(level) or {}, doc_b["modes"][mode].get(level) or {}
            sa = per_a.get(mode, {}).get(level, {})
            sb = per_b.get(mode, {}).get(level, {})
            common = sorted(set(sa) & set(sb))
            level_out: dict[str, Any] = {}
            for metric in MAIN_METRICS:
                if metric not in ma or metric not in mb:
                    continue
                item: dict[str, Any] = {"a": ma[metric], "b": mb[metric], "diff": mb[metric] - ma[metric], "p": None}
                if common:
                    xa = [sa[i][metric] for i in common]
                    xb = [sb[i][metric] for i in common]
                    item["paired_queries"] = len(common)
                    item["p"] = M.paired_randomization_test(xa, xb)
                level_out[metric] = item
            entry[level] = level_out
        out["modes"][mode] = entry
    answers_a, answers_b = doc_a.get("answers") or {}, doc_b.get("answers") or {}
    out["answers"] = {
        key: {"a": answers_a[key], "b": answers_b[key], "diff": answers_b[key] - answers_a[key]}
        for key in answers_a
        if isinstance(answers_a.get(key), (int, float)) and isinstance(answers_b.get(key), (int, float))
        and not isinstance(answers_a.get(key), bool)
    }
    return out


def format_comparison(result: dict[str, Any]) -> str:
    """A plain-text table of a comparison; ``*`` marks p < 0.05."""
    lines = [f"A = {result['a']}", f"B = {result['b']}", ""]
    header = f"{'mode':<8} {'level':<8} {'metric':<10} {'A':>7} {'B':>7} {'B-A':>8} {'p':>8}"
    lines += [header, "-" * len(header)]
    for mode, levels in result["modes"].items():
        for level, metrics_ in levels.items():
            for metric, v in metrics_.items():
                p = "n/a" if v["p"] is None else f"{v['p']:.4f}"
                mark = " *" if v["p"] is not None and v["p"] < 0.05 else ""
                lines.append(
                    f"{mode:<8} {level:<8} {metric:<10} {v['a']:>7.4f} {v['b']:>7.4f} {v['diff']:>+8.4f} {p:>8}{mark}"
                )
    if result.get("answers"):
        lines += ["", "answers:"]
        for key, v in result["answers"].items():
            lines.append(f"  {key:<24} {v['a']:>9.4f} {v['b']:>9.4f} {v['diff']:>+9.4f}")
    lines += ["", "* p < 0.05 (paired randomisation test over the queries both runs scored)"]
    return "\n".join(lines)


def format_table(doc: dict[str, Any], level: str = "page") -> str:
    """A plain-text table of the main metrics per mode (and per language) at one level."""
    cols = ("recall@1", "recall@10", "recall@50", "ndcg@10", "mrr@10")
    lines = [f"{level} level", f"{'mode':<8} {'lang':<6} {'n':>5} " + " ".join(f"{c:>9}" for c in cols)]
    for mode, s in doc["modes"].items():
        if "error" in s:
            lines.append(f"{mode:<8} error: {s['error']}")
            continue
        rows = [("all", s["queries"], s.get(level, {}))]
        rows += [(lang, v["queries"], v.get(level, {})) for lang, v in s.get("by_lang", {}).items()]
        for lang, n, vals in rows:
            lines.append(f"{mode:<8} {lang:<6} {n:>5} " + " ".join(f"{vals.get(c, 0.0):>9.3f}" for c in cols))
    return "\n".join(lines)
