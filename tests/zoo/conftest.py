"""Fixtures for the core's tests: a real HTTP file server on 127.0.0.1 (see fileserver.py), fast
retries, and registry entries pointing at the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fileserver import entry_dict, start_server

from zoo.registry.schema import Entry, parse_entry


@pytest.fixture
def http_server():
    """A FileServer bound to 127.0.0.1 on a free port, stopped after the test."""
    state, stop = start_server()
    yield state
    stop()


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    """Retries back off in milliseconds, not seconds, in tests."""
    import zoo.fetch

    monkeypatch.setattr(zoo.fetch, "BACKOFF_BASE", 0.001)
    monkeypatch.setattr(zoo.fetch, "TIMEOUT", 10.0)


@pytest.fixture
def make_entry():
    """``make_entry(name, files)`` -> a parsed ``Entry`` (files from ``file_dict``)."""

    def make(name: str, files: list[dict]) -> Entry:
        return parse_entry(entry_dict(name, files), path="<test>", index=0, collection="local")

    return make


@pytest.fixture
def user_registry(tmp_path, monkeypatch):
    """``user_registry([entry_dict, ...])`` writes a ZOO_REGISTRY file so names resolve (also in
    subprocesses)."""

    def write(entries: list[dict]) -> Path:
        path = tmp_path / "user-registry.json"
        path.write_text(json.dumps({"schema": 1, "entries": entries}))
        monkeypatch.setenv("ZOO_REGISTRY", str(path))
        return path

    return write
