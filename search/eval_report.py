"""The evaluation report: plots (PNG, matplotlib's Agg backend) and one self-contained HTML page.

Why self-contained: a report is mailed, attached to a pull request or opened from CI
artifacts; with the plots embedded as data URIs it needs nothing beside it. The same PNGs
are also written to ``DIR/plots/`` so they can be committed under ``docs/``.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Sequence

from search import metrics as M

PLOTS_DIR = "plots"
MODE_COLORS = {"bm25": "#4C72B0", "dense": "#DD8452", "hybrid": "#55A868", "rerank": "#C44E52", "answer": "#8172B3"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: plots are rendered to files only
    import matplotlib.pyplot as plt

    return plt


def _scored_modes(doc: dict[str, Any]) -> list[str]:
    return [m for m, s in doc["modes"].items() if "error" not in s and s.get("queries")]


def plot_by_lang(doc: dict[str, Any], metric: str = "recall@10", level: str = "page") -> bytes | None:
    """Grouped bars: one group per language, one bar per mode."""
    modes = _scored_modes(doc)
    langs = sorted({lang for m in modes for lang in doc["modes"][m].get("by_lang", {})})
    if not modes or not langs:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(langs) * max(1, len(modes)) / 2 + 2), 3.6), dpi=100)
    width = 0.8 / len(modes)
    for j, mode in enumerate(modes):
        values = [doc["modes"][mode]["by_lang"].get(lang, {}).get(level, {}).get(metric, 0.0) for lang in langs]
        xs = [i + (j - (len(modes) - 1) / 2) * width for i in range(len(langs))]
        ax.bar(xs, values, width=width, label=mode, color=MODE_COLORS.get(mode))
    ax.set_xticks(range(len(langs)), langs)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"{level} {metric}")
    ax.set_title(f"{level.capitalize()} {metric} per query language")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))  # outside: never over the bars
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def plot_recall_curves(doc: dict[str, Any]) -> bytes | None:
    """Recall@k against k for each mode, page and section level side by side."""
    modes = _scored_modes(doc)
    if not modes:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), dpi=100, sharey=True)
    for ax, level in zip(axes, M.LEVELS):
        for mode in modes:
            vals = doc["modes"][mode].get(level, {})
            ks = [k for k in M.RECALL_KS if f"recall@{k}" in vals]
            ax.plot(ks, [vals[f"recall@{k}"] for k in ks], marker="o", label=mode, color=MODE_COLORS.get(mode))
        ax.set_xscale("log")
        ax.set_xticks(list(M.RECALL_KS), [str(k) for k in M.RECALL_KS])
        ax.set_xlabel("k")
        ax.set_title(f"{level} recall@k")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("recall@k")
    axes[0].legend(fontsize=8)
    return _png(fig)


def plot_latency(rows: Sequence[dict[str, Any]]) -> bytes | None:
    """Histograms of per-query latency: total per retrieval mode and per answer stage."""
    series: dict[str, list[float]] = {}
    for row in rows:
        if row.get("error"):
            continue
        timings = row.get("timings") or {}
        if row["mode"] == "answer":
            for stage, seconds in timings.items():
                if isinstance(seconds, (int, float)):
                    series.setdefault(f"answer: {stage}", []).append(seconds * 1000)
        else:
            # The retriever's per-query total when it reports one: "wall" is the batch's
            # time shared equally among its queries, which hides the spread.
            seconds = timings.get("total", timings.get("wall"))
            if isinstance(seconds, (int, float)):
                series.setdefault(row["mode"], []).append(seconds * 1000)
    if not series:
        return None
    plt = _pyplot()
    names = list(series)
    cols = min(3, len(names))
    rows_n = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.4 * cols, 2.6 * rows_n), dpi=100, squeeze=False)
    for ax, name in zip(axes.flat, names):
        values = series[name]
        ax.hist(values, bins=30, color=MODE_COLORS.get(name.split(":")[0], "#777777"))
        p50, p95 = M.percentile(values, 50), M.percentile(values, 95)
        ax.axvline(p50, color="black", linestyle="--", linewidth=1)
        ax.axvline(p95, color="black", linestyle=":", linewidth=1)
        ax.set_title(f"{name}\np50 {p50:.1f} ms, p95 {p95:.1f} ms", fontsize=9)
        ax.set_xlabel("ms", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def make_plots(doc: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, bytes]:
    """File name -> PNG bytes for every plot the data allows."""
    plots = {
        "by-lang-recall10.png": plot_by_lang(doc, "recall@10", "page"),
        "by-lang-mrr10.png": plot_by_lang(doc, "mrr@10", "page"),
        "recall-at-k.png": plot_recall_curves(doc),
        "latency.png": plot_latency(rows),
    }
    return {name: png for name, png in plots.items() if png}


# ------------------------------------------------------------------------------ HTML
def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metric_rows(doc: dict[str, Any], level: str) -> list[list[Any]]:
    cols = ("recall@1", "recall@5", "recall@10", "recall@50", "ndcg@10", "mrr@10")
    out: list[list[Any]] = []
    for mode, s in doc["modes"].items():
        if "error" in s:
            out.append([mode, "all", 0, f"error: {s['error']}"] + [None] * (len(cols) - 1))
            continue
        out.append([mode, "all", s["queries"]] + [s.get(level, {}).get(c) for c in cols])
        for lang, v in s.get("by_lang", {}).items():
            out.append([mode, lang, v["queries"]] + [v.get(level, {}).get(c) for c in cols])
    return out


def render_html(doc: dict[str, Any], plots: dict[str, bytes]) -> str:
    cols = ["mode", "lang", "queries", "R@1", "R@5", "R@10", "R@50", "nDCG@10", "MRR@10"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Cited evaluation report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem;color:#222}",
        "table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}",
        "td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}",
        "td:first-child,td:nth-child(2),th{text-align:left}img{max-width:100%}",
        "</style></head><body><h1>Cited evaluation report</h1>",
    ]
    run = doc.get("run") or {}
    if run:
        parts.append(_table(["setting", "value"], [[k, v] for k, v in run.items()]))
    parts.append(f"<p>{doc.get('queries', 0)} queries; {len(doc.get('bad_rows', []))} bad rows skipped.</p>")
    for level in M.LEVELS:
        parts.append(f"<h2>Retrieval, {level} level</h2>")
        parts.append(_table(cols, _metric_rows(doc, level)))
    for name, title in (
        ("recall-at-k.png", "Recall@k"),
        ("by-lang-recall10.png", "Page recall@10 per language"),
        ("by-lang-mrr10.png", "Page MRR@10 per language"),
        ("latency.png", "Latency"),
    ):
        if name in plots:
            data = base64.b64encode(plots[name]).decode("ascii")
            parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>")
    if doc.get("significance"):
        parts.append("<h2>Significance between modes (paired randomisation test)</h2>")
        rows = []
        for pair, levels in doc["significance"].items():
            for level, metrics_ in levels.items():
                for metric, v in metrics_.items():
                    rows.append([pair, level, metric, v["diff"], v["p"]])
        parts.append(_table(["pair", "level", "metric", "difference", "p"], rows))
    answers = doc.get("answers") or {}
    if answers:
        parts.append("<h2>Answers</h2>")
        flat = [[k, v] for k, v in answers.items() if not isinstance(v, dict)]
        flat += [[f"length_chars {k}", v] for k, v in (answers.get("length_chars") or {}).items()]
        parts.append(_table(["measure", "value"], flat))
        by_lang = answers.get("by_lang") or {}
        if by_lang:
            keys = ["answers", "cites_relevant_page", "language_match", "no_answer_share"]
            parts.append(_table(["lang"] + keys, [[lang] + [v.get(k) for k in keys] for lang, v in by_lang.items()]))
    if doc.get("latency"):
        parts.append("<h2>Latency per stage (ms)</h2>")
        rows = [
            [mode, stage, v.get("p50_ms"), v.get("p95_ms"), v.get("n")]
            for mode, stages in doc["latency"].items()
            for stage, v in stages.items()
        ]
        parts.append(_table(["mode", "stage", "p50", "p95", "n"], rows))
    if doc.get("bad_rows"):
        parts.append("<h2>Bad rows (skipped)</h2>")
        parts.append(_table(["line", "reason"], [[b["line"], b["reason"]] for b in doc["bad_rows"]]))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: Path, doc: dict[str, Any], rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``plots/*.png`` and ``report.html`` into ``out_dir``; returns the report's path."""
    plots = make_plots(doc, rows)
    plot_dir = out_dir / PLOTS_DIR
    plot_dir.mkdir(parents=True, exist_ok=True)
    for name, png in plots.items():
        (plot_dir / name).write_bytes(png)
    path = out_dir / "report.html"
    path.write_text(render_html(doc, plots), encoding="utf-8")
    return path


def markdown_table(doc: dict[str, Any], level: str = "page",
                   metrics: Sequence[str] = ("recall@1", "recall@10", "recall@50", "ndcg@10", "mrr@10")) -> str:
    """The main metrics per mode, overall and per language, as a Markdown table (for notes and docs)."""
    lines = ["| mode | lang | n | " + " | ".join(metrics) + " |", "|" + "---|" * (3 + len(metrics))]
    for mode, s in doc["modes"].items():
        if "error" in s:
            lines.append(f"| {mode} | – | 0 | error: {s['error']} |" + " |" * (len(metrics) - 1))
            continue
        rows = [("**all**", s["queries"], s.get(level, {}))]
        rows += [(lang, v["queries"], v.get(level, {})) for lang, v in s.get("by_lang", {}).items()]
        for lang, n, vals in rows:
            cells = " | ".join(f"{vals[m]:.3f}" if m in vals else "–" for m in metrics)
            lines.append(f"| {mode} | {lang} | {n} | {cells} |")
    return "\n".join(lines)
