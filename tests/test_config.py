"""Settings: precedence (env > TOML > defaults), conversion, validation, masking."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from search.config import Settings, SettingsError


def test_defaults_are_local_store_and_no_private_crawling() -> None:
    s = Settings.load(env={})
    assert s.store == "local"
    assert s.allow_private is False
    assert s.data_dir.name == "cited"


def test_environment_overrides_toml(tmp_path: Path) -> None:
    toml = tmp_path / "cited.toml"
    toml.write_text('store = "elastic"\nes_url = "http://toml:9200"\nes_shards = 3\n')
    s = Settings.load(env={"CITED_CONFIG": str(toml), "CITED_ES_URL": "http://env:9200"})
    assert s.store == "elastic"  # from TOML
    assert s.es_url == "http://env:9200"  # env wins
    assert s.es_shards == 3  # converted to int


def test_toml_in_data_dir_is_read_and_cited_table_accepted(tmp_path: Path) -> None:
    (tmp_path / "cited.toml").write_text("[cited]\nallow_private = true\n")
    s = Settings.load(env={"CITED_DATA_DIR": str(tmp_path)})
    assert s.allow_private is True
    assert s.data_dir == tmp_path


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"CITED_STORE": "mongo"}, "CITED_STORE"),
        ({"CITED_ES_SHARDS": "many"}, "CITED_ES_SHARDS"),
        ({"CITED_ALLOW_PRIVATE": "maybe"}, "CITED_ALLOW_PRIVATE"),
        ({"CITED_ES_REPLICAS": "-1"}, "CITED_ES_REPLICAS"),
        ({"CITED_CONFIG": "/nonexistent/cited.toml"}, "does not exist"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        Settings.load(env=env)


def test_unknown_or_broken_toml_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("stor = 'local'\n")
    with pytest.raises(SettingsError, match="unknown setting 'stor'"):
        Settings.load(env={"CITED_CONFIG": str(bad)})
    bad.write_text("store = \n")
    with pytest.raises(SettingsError, match="cannot read"):
        Settings.load(env={"CITED_CONFIG": str(bad)})


def test_secrets_are_masked() -> None:
    s = Settings.load(env={"CITED_ES_API_KEY": "supersecretkey42", "CITED_ES_PASSWORD": "pw"})
    masked = s.masked()
    assert "supersecret" not in json.dumps(masked)
    assert masked["es_api_key"].startswith("****")
    assert masked["es_password"] == "****"


def test_cli_config_prints_effective_settings_masked(tmp_path: Path) -> None:
    env = {"CITED_DATA_DIR": str(tmp_path), "CITED_ES_API_KEY": "abcdefghijklmnop", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "search.cli", "config", "--json"], env=env, capture_output=True, text=True, check=True
    ).stdout
    values = json.loads(out)
    assert values["data_dir"] == str(tmp_path)
    assert "abcdefghijklmnop" not in out


def test_cli_bad_setting_is_one_line_without_traceback(tmp_path: Path) -> None:
    env = {"CITED_DATA_DIR": str(tmp_path), "CITED_STORE": "mongo", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "search.cli", "status"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "CITED_STORE" in result.stderr
    assert "Traceback" not in result.stderr
