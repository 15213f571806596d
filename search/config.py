"""One Settings object for the whole engine.

Why one object: every stage (crawler, store, embedder, generator, web) reads the same
settings, and `cited config` must be able to print exactly what is in effect. Values come
from, in rising precedence: the defaults below, an optional TOML file, and environment
variables named ``CITED_<FIELD>`` (for example ``CITED_STORE``, ``CITED_DATA_DIR``).

The TOML file is ``$CITED_CONFIG`` if set, else ``cited.toml`` in the data directory. Its
keys are the field names, at top level or under a ``[cited]`` table.

>>> s = Settings.load(env={"CITED_STORE": "elastic", "CITED_ALLOW_PRIVATE": "1"})
>>> s.store, s.allow_private
('elastic', True)
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "CITED_"
SECRET_FIELDS = frozenset({"es_api_key", "es_password", "openai_api_key"})
STORES = ("local", "elastic")
FUSION_METHODS = ("adaptive", "rrf", "minmax", "bm25", "dense")
GENERATORS = ("auto", "llama-cpp", "openai", "transformers", "extractive")


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "cited"


@dataclass(frozen=True)
class Settings:
    """Effective configuration. Field ``x`` is set by env var ``CITED_X`` or TOML key ``x``."""

    # Where things live
    store: str = "local"
    data_dir: Path = field(default_factory=_default_data_dir)
    # Elasticsearch
    es_url: str = "http://127.0.0.1:9200"
    es_api_key: str = ""
    es_username: str = ""
    es_password: str = ""
    es_ca_certs: str = ""
    es_verify_certs: bool = True
    es_index: str = "cited-passages"
    es_shards: int = 1
    es_replicas: int = 0
    es_timeout: float = 30.0
    # Crawling
    allow_private: bool = False
    extract_processes: int = -1  # worker processes extracting pages (crawler/extract_pool.py); 0 = in threads, -1 = cores - 1
    extract_fast: bool = True  # skip trafilatura's fallback extractors: ~40% less CPU, same text on 96% of pages
    user_agent: str = "CitedBot/0.1 (+https://github.com/cited/cited; answer engine crawler)"
    # Models
    embed_model: str = "use-multilingual"
    embed_batch_size: int = 64
    heading_weight: float = 0.5  # passage vector = blend with its heading's vector (embed.passage_vectors)
    embed_passage_chars: int = 160  # characters of a passage's text that go into its vector (0 = all; see embed.passage_input)
    device: str = "auto"
    rerank_model: str = "none"
    generator: str = "auto"
    generator_model: str = ""
    openai_base_url: str = ""
    openai_api_key: str = ""
    # Answers (search/answer.py, generate.py, cite.py)
    model_dir: str = ""  # assembled GGUF models; empty = <data_dir>/models
    generator_threads: int = 0  # llama.cpp threads; 0 = all cores
    generator_context: int = 4096  # llama.cpp context window (tokens)
    generator_timeout: float = 120.0  # seconds an OpenAI-compatible server may take per read
    answer_lang: str = ""  # force the answer language (ISO 639-1); empty = the question's
    answer_max_tokens: int = 256
    answer_k: int = 8  # hits retrieved for evidence
    evidence_tokens: int = 450  # prompt budget for the numbered sources
    evidence_per_page: int = 2
    min_relevance: float = 0.25  # dense similarity below which a hit is not evidence
    support_threshold: float = 0.45  # embedding similarity at which a citation counts as supported
    citation_judge: str = "none"  # "none" or "generator": an LLM judge double-checks support
    related_questions: bool = True
    # Retrieval
    rrf_k: int = 60
    bm25_weight: float = 1.0
    dense_weight: float = 1.0
    per_page_max: int = 2
    fusion: str = "adaptive"  # rrf | adaptive | minmax (search/fusion.py; adaptive measured best)
    retrieve_depth: int = 20  # candidates each retriever hands to fusion (20 ties 50 in quality, benchmarks/RESULTS-retrieval.md)
    rerank_depth: int = 20  # fused candidates the reranker scores in mode "rerank"
    # Web
    host: str = "127.0.0.1"
    port: int = 8000
    rate_limit: int = 60  # requests per minute per client on the search/answer routes; 0 = off
    cors_origins: str = ""  # "" = CORS off; "*" or a comma-separated list of allowed origins
    max_request_bytes: int = 65536  # largest accepted request body (413 above it)
    web_threads: int = 16  # WSGI worker threads (each open answer stream holds one)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, toml_path: str | Path | None = None) -> "Settings":
        """Build settings from defaults, the TOML file and the environment (in that order)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = toml_path or env.get(ENV_PREFIX + "CONFIG")
        data_dir = Path(env.get(ENV_PREFIX + "DATA_DIR") or _default_data_dir())
        candidate = Path(path) if path else data_dir / "cited.toml"
        if path and not candidate.exists():
            raise SettingsError(f"config file {candidate} (CITED_CONFIG) does not exist")
        if candidate.exists():
            values.update(_read_toml(candidate))
        known = {f.name: f for f in fields(cls)}
        for key in values:
            if key not in known:
                raise SettingsError(f"unknown setting {key!r} in {candidate}")
        for name in known:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        converted = {name: _convert(known[name], value) for name, value in values.items()}
        settings = cls(**converted)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.store not in STORES:
            raise SettingsError(f"CITED_STORE must be one of {', '.join(STORES)}, not {self.store!r}")
        for name in (
            "es_shards", "embed_batch_size", "rrf_k", "per_page_max", "retrieve_depth", "rerank_depth",
            "generator_context", "answer_max_tokens", "answer_k", "evidence_tokens", "evidence_per_page",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"CITED_{name.upper()} must be at least 1")
        if self.es_replicas < 0:
            raise SettingsError("CITED_ES_REPLICAS must not be negative")
        if self.extract_processes < -1:
            raise SettingsError(
                "CITED_EXTRACT_PROCESSES must be -1 (one per core but one), 0 (in the crawl's threads) or more"
            )
        if self.fusion not in FUSION_METHODS:
            raise SettingsError(f"CITED_FUSION must be one of {', '.join(FUSION_METHODS)}, not {self.fusion!r}")
        if self.generator not in GENERATORS:
            raise SettingsError(f"CITED_GENERATOR must be one of {', '.join(GENERATORS)}, not {self.generator!r}")
        if self.citation_judge not in ("none", "generator"):
            raise SettingsError(f"CITED_CITATION_JUDGE must be none or generator, not {self.citation_judge!r}")
        if self.rate_limit < 0:
            raise SettingsError("CITED_RATE_LIMIT must not be negative (0 turns the limit off)")
        for name in ("max_request_bytes", "web_threads"):
            if getattr(self, name) < 1:
                raise SettingsError(f"CITED_{name.upper()} must be at least 1")

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some fields changed (validated)."""
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def masked(self) -> dict[str, Any]:
        """The settings as plain values with secrets masked, for printing."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "****" + str(value)[-2:] if len(str(value)) > 8 else "****"
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from exc
    table = data.get("cited", data)
    if not isinstance(table, dict):
        raise SettingsError(f"config file {path}: [cited] must be a table")
    return dict(table)


def _convert(f: dataclasses.Field, value: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    name = f"CITED_{f.name.upper()}"
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "Path":
            return Path(os.path.expanduser(str(value)))
        return str(value)
    except ValueError:
        raise SettingsError(f"{name}: cannot use {value!r} as {kind}") from None
