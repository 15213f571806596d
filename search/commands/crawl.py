"""`cited crawl URL...`: crawl sites and index their passages into the configured store.

The crawl itself lives in crawler/crawl.py; this module only turns flags into options
and prints the summary (with --json, the last line printed is the JSON summary).
"""

from __future__ import annotations

import json

import click

from crawler.frontier import SCOPES
from search.config import Settings


@click.command()
@click.argument("urls", nargs=-1, required=True)
@click.option("--max-pages", type=click.IntRange(min=1), default=None, help="Stop after fetching N pages.")
@click.option("--max-depth", type=click.IntRange(min=0), default=20, show_default=True,
              help="Follow links at most D steps from the start URLs.")
@click.option("--scope", type=click.Choice(SCOPES), default="host", show_default=True,
              help="Follow links on the same host, under the start URL's directory, or in its domain.")
@click.option("--allow", multiple=True, metavar="RE", help="Only follow URLs matching this regex (repeatable).")
@click.option("--deny", multiple=True, metavar="RE", help="Never follow URLs matching this regex (repeatable).")
@click.option("--rate", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Requests per second per host (0: no delay); robots.txt crawl-delay can lower it.")
@click.option("--concurrency", type=click.IntRange(min=1, max=64), default=4, show_default=True,
              help="Fetch threads (at most 2 per host).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line, last.")
def crawl(urls: tuple[str, ...], max_pages: int | None, max_depth: int, scope: str, allow: tuple[str, ...],
          deny: tuple[str, ...], rate: float, concurrency: int, as_json: bool) -> None:
    """Crawl URLs and index their passages. Interrupted crawls resume where they stopped;
    crawling again fetches only what changed (conditional GET, content hashes)."""
    from crawler.crawl import crawl as run_crawl

    settings = Settings.load()
    try:
        summary = run_crawl(list(urls), settings, max_pages=max_pages, max_depth=max_depth, scope=scope,
                            allow=list(allow), deny=list(deny), rate=rate, concurrency=concurrency)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    data = summary.to_json()
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, sort_keys=True))
    else:
        click.echo(f"fetched {data['fetched']} pages, indexed {data['indexed']} ({data['passages']} passages), "
                   f"unchanged {data['unchanged']}, in {data['elapsed_s']:.1f}s ({data['pages_per_s']} pages/s)")
        for name in ("skipped", "errors", "by_lang"):
            if data[name]:
                parts = ", ".join(f"{k}: {v}" for k, v in sorted(data[name].items(), key=lambda kv: -kv[1]))
                click.echo(f"{name}: {parts}")
        if data["interrupted"]:
            click.echo("interrupted: run the same command again to resume")
    if summary.interrupted:
        raise SystemExit(130)
