"""Passage stores behind one protocol (see base.py). `connect_store` picks the backend."""

from __future__ import annotations

from search.config import Settings
from search.store.base import Store, StoreError, StoreMismatch, StoreUnavailable, WriteReport

__all__ = ["Store", "StoreError", "StoreMismatch", "StoreUnavailable", "WriteReport", "connect_store"]


def connect_store(settings: Settings) -> Store:
    """The configured store, connected but not yet opened for a model (call ``open``)."""
    if settings.store == "elastic":
        from search.store.elastic import ElasticStore

        return ElasticStore(settings)
    from search.store.local import LocalStore

    return LocalStore(settings.data_dir / "store.sqlite3")
