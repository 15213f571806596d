"""`cited config`: the effective settings, so people can see what the engine will use."""

from __future__ import annotations

import json

import click

from search.config import Settings


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def config(as_json: bool) -> None:
    """Print the effective settings (environment > TOML file > defaults), secrets masked."""
    values = Settings.load().masked()
    if as_json:
        click.echo(json.dumps(values, ensure_ascii=False))
        return
    width = max(len(k) for k in values)
    for key, value in values.items():
        click.echo(f"{key.ljust(width)}  {value}    (CITED_{key.upper()})")
