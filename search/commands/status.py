"""`cited status`: what the configured store holds and which model built it."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from search.config import Settings
from search.store import connect_store


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(as_json: bool) -> None:
    """Show the store: backend, location, passages, pages, vector dimension, embedding model."""
    settings = Settings.load()
    store = connect_store(settings)
    try:
        info = store.info()
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(asdict(info), ensure_ascii=False))
        return
    click.echo(f"backend    {info.backend}")
    click.echo(f"location   {info.location}")
    click.echo(f"passages   {info.passages}")
    click.echo(f"pages      {info.pages}")
    click.echo(f"dimension  {info.dim or '-'}")
    click.echo(f"model      {info.model or '-'}")
