"""`cited serve`: the search page and the JSON API from one process.

Why load before listening: the embedder (and generator) take seconds to load and are
shared by every request; loading them first means the first visitor does not wait and a
broken model setting fails at start, not on a request. Waitress is the WSGI server: pure
Python, production-grade, and it streams Server-Sent Events without buffering.
"""

from __future__ import annotations

import logging
import time

import click

from search.config import Settings


@click.command()
@click.option("--host", default=None, help="Address to listen on (CITED_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (CITED_PORT, default 8000).")
@click.option("--threads", type=int, default=None, help="Worker threads (CITED_WEB_THREADS, default 16).")
@click.option("--lazy", is_flag=True, help="Load the models on the first request instead of at start.")
def serve(host: str | None, port: int | None, threads: int | None, lazy: bool) -> None:
    """Serve the search page and the JSON API (see /openapi.json)."""
    import waitress

    from web.app import create_app
    from web.errors import ApiError

    settings = Settings.load()
    changes = {k: v for k, v in {"host": host, "port": port, "web_threads": threads}.items() if v is not None}
    if changes:
        settings = settings.replace(**changes)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(settings)
    if not lazy:
        started = time.perf_counter()
        click.echo("cited serve: loading the retriever and the answer pipeline…", err=True)
        try:
            app.extensions["cited.engine"].load()
        except ApiError as exc:
            raise click.ClickException(f"cannot load the engine: {exc.message}") from None
        click.echo(f"cited serve: ready in {time.perf_counter() - started:.1f} s", err=True)
    click.echo(f"cited serve: http://{settings.host}:{settings.port}/  (API: /openapi.json)", err=True)
    waitress.serve(
        app,
        host=settings.host,
        port=settings.port,
        threads=settings.web_threads,
        ident="cited",
        clear_untrusted_proxy_headers=True,
        channel_timeout=120,
    )
