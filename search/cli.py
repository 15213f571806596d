"""The `cited` command line: one group, one module per command in search/commands/.

Why a module per command: each command belongs to one stage (crawl, search, ask, serve,
eval) and loads that stage's heavy dependencies (models, torch) only when it runs, so
`cited --help` and `cited config` stay instant.
"""

from __future__ import annotations

import importlib
import sys

import click

from search.config import Settings, SettingsError
from search.store.base import StoreError

# command name -> (module, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "crawl": ("search.commands.crawl", "crawl", "Crawl URLs and index their passages."),
    "search": ("search.commands.search", "search", "Search the index (BM25, dense, hybrid, rerank)."),
    "ask": ("search.commands.ask", "ask", "Answer a question with cited sources."),
    "serve": ("search.commands.serve", "serve", "Serve the search page and the JSON API."),
    "eval": ("search.commands.evaluate", "evaluate", "Evaluate retrieval and answers on a query set."),
    "config": ("search.commands.config", "config", "Print the effective settings (secrets masked)."),
    "status": ("search.commands.status", "status", "Show the store: backend, passages, dimension, model."),
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            raise click.UsageError(f"`cited {name}` is not part of this build yet") from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # List the commands from the table, without importing every module for --help.
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, _, help_) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cited", prog_name="cited")
def cli() -> None:
    """Cited: an answer engine that cites its sources.

    Settings come from CITED_* environment variables and an optional TOML file
    (CITED_CONFIG); `cited config` shows what is in effect.
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: turn expected failures into one clear line and a non-zero exit."""
    try:
        cli.main(args=argv, prog_name="cited", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except (SettingsError, StoreError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
