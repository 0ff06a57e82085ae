"""Shared fixtures: every test gets its own empty cache, config folder and clean environment."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _isolated_zoo(tmp_path_factory, monkeypatch):
    """A fresh ZOO_HOME and config folder per test; no mirror, no offline flag, no user registry."""
    home = tmp_path_factory.mktemp("zoo_home")
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.setenv("ZOO_CONFIG_DIR", str(tmp_path_factory.mktemp("zoo_config")))
    for var in ("ZOO_MIRROR", "ZOO_OFFLINE", "HF_HUB_OFFLINE", "ZOO_REGISTRY", "ZOO_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    # Never reach the real Hub from a test.
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    yield home
    # zoo.cli.main turns huggingface_hub offline for the whole process when ZOO_OFFLINE is set; a test that
    # runs the CLI in-process must not leave the Hub offline for the tests after it.
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = False
