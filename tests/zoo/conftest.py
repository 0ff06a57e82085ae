"""Fixtures for the core's tests: a real HTTP file server on 127.0.0.1 (see fileserver.py), fast
retries, and registry entries pointing at the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fileserver import entry_dict, publish_on_hub, start_server

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
    import zoo.transports

    monkeypatch.setattr(zoo.transports, "BACKOFF_BASE", 0.001)
    monkeypatch.setattr(zoo.transports, "TIMEOUT", 10.0)


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


@pytest.fixture
def fake_hub(http_server, monkeypatch):
    """Point huggingface_hub at the local server (in this process and in subprocesses), which answers
    its HEAD/GET like the Hub does for an LFS file. ``fake_hub(repo, filename, data, etag=None)``
    publishes one file at ``main``."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", http_server.base)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        http_server.base + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv("HF_ENDPOINT", http_server.base)

    def publish(repo: str, filename: str, data: bytes, *, etag: str | None = None) -> None:
        publish_on_hub(http_server, repo, filename, data, etag=etag)

    return publish
