"""compose.yaml cannot be run here (no Docker daemon), so check what can go wrong on paper:
the image matches the client's and the test node's version, the app talks to the service
by name, and nothing listens beyond localhost."""

from __future__ import annotations

import re
from pathlib import Path

import elasticsearch
import yaml

REPO = Path(__file__).resolve().parent.parent


def test_compose_runs_elasticsearch_819_and_the_app_against_it() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    es, app = compose["services"]["elasticsearch"], compose["services"]["app"]
    tag = es["image"].rsplit(":", 1)[1]
    assert es["image"].startswith("docker.elastic.co/elasticsearch/elasticsearch:")
    assert tag.split(".")[:2] == [str(v) for v in elasticsearch.__versionstr__.split(".")[:2]]
    script = (REPO / "scripts" / "elasticsearch.sh").read_text()
    assert re.search(r'ES_VERSION="\$\{CITED_ES_VERSION:-' + re.escape(tag) + '}"', script)
    assert es["environment"]["discovery.type"] == "single-node"
    assert es["environment"]["xpack.security.enabled"] == "false"
    assert "-Xmx" in es["environment"]["ES_JAVA_OPTS"]
    assert any(v.endswith(":/usr/share/elasticsearch/data") for v in es["volumes"])
    assert app["image"].startswith("python:3.11")
    assert app["environment"]["CITED_STORE"] == "elastic"
    assert app["environment"]["CITED_ES_URL"] == "http://elasticsearch:9200"
    assert app["depends_on"]["elasticsearch"]["condition"] == "service_healthy"
    assert "pip install" in app["command"] and "cited serve --host 0.0.0.0" in app["command"]
    for service in (es, app):
        assert all(str(p).startswith("127.0.0.1:") for p in service["ports"])
