"""Docs checked by tests: runnable docstring examples, and the README telling the truth."""

from __future__ import annotations

import doctest
import importlib
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from search.cli import COMMANDS
from search.config import Settings

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("module", ["search.config", "search.text", "search.documents", "search.fusion", "search.store.es_json"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


def test_every_variable_in_the_readme_is_a_real_setting() -> None:
    names = {f"CITED_{f.name.upper()}" for f in fields(Settings)} | {
        "CITED_CONFIG", "CITED_CACHE", "CITED_REQUIRE_ES", "CITED_DEMO_URLS", "CITED_ES_VERSION",
        "CITED_ES_HEAP", "CITED_ES_PORT", "CITED_ES_KEEP", "CITED_VENV",
    }
    mentioned = set(re.findall(r"CITED_[A-Z_]+[A-Z]", README))
    assert mentioned, "the README documents no settings"
    assert mentioned <= names, f"README mentions unknown settings: {sorted(mentioned - names)}"


def test_the_readme_commands_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_cli_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "search.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("crawl", "search", "ask", "serve", "eval", "config", "status"):
        assert name in out and name in COMMANDS
