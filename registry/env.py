"""Every environment variable the zoo reads, read here and nowhere else.

Owns: ``ZOO_HOME``, ``ZOO_OFFLINE`` (and ``HF_HUB_OFFLINE``), ``ZOO_MIRROR``, ``ZOO_REGISTRY``,
``ZOO_DEBUG``, ``ZOO_CONFIG_DIR``, the Hugging Face cache location (``HF_HUB_CACHE``, ``HF_HOME``), and
torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``. Standard library only: the catalogue path imports it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

__all__ = ["zoo_home", "offline", "mirror", "hf_hub_cache", "registry_paths", "config_dir", "debug", "Distributed",
           "distributed"]

_TRUE = {"1", "true", "yes", "on"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def zoo_home() -> Path:
    """The cache root: ``$ZOO_HOME``, else ``$XDG_CACHE_HOME/zoo``, else ``~/.cache/zoo``."""
    if os.environ.get("ZOO_HOME"):
        return Path(os.environ["ZOO_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "zoo"


def offline() -> bool:
    """True when ``ZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` is set: never touch the network."""
    return _flag("ZOO_OFFLINE") or _flag("HF_HUB_OFFLINE")


def mirror() -> str | None:
    """``ZOO_MIRROR``: a folder or a URL tried before every origin, or None."""
    value = os.environ.get("ZOO_MIRROR", "").strip()
    return value or None


def hf_hub_cache() -> Path:
    """The Hugging Face Hub cache the zoo shares with every other Hub user on this machine.

    The same rule as ``huggingface_hub.constants.HF_HUB_CACHE`` (``$HF_HUB_CACHE``, the legacy
    ``$HUGGINGFACE_HUB_CACHE``, ``$HF_HOME/hub``, ``$XDG_CACHE_HOME/huggingface/hub``,
    ``~/.cache/huggingface/hub``), but read when called: huggingface_hub reads it once at import,
    and the zoo reads every variable at the moment it acts, like ``ZOO_HOME``.
    """
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.path.expandvars(os.environ[name])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def config_dir() -> Path:
    """The user's config folder: ``$ZOO_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/zoo``, else ``~/.config/zoo``."""
    if os.environ.get("ZOO_CONFIG_DIR"):
        return Path(os.environ["ZOO_CONFIG_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "zoo"


def registry_paths() -> list[Path]:
    """User registry files and folders: ``$ZOO_REGISTRY`` (os.pathsep-separated), then
    ``<config_dir>/registry``."""
    paths = [Path(p).expanduser() for p in os.environ.get("ZOO_REGISTRY", "").split(os.pathsep) if p]
    paths.append(config_dir() / "registry")
    return paths


def debug() -> bool:
    """``ZOO_DEBUG=1`` makes the CLI show full tracebacks."""
    return _flag("ZOO_DEBUG")


class Distributed(NamedTuple):
    """This process's place under torchrun: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int
    world: int
    local_rank: int


def distributed() -> Distributed:
    """``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` as torchrun sets them (0, 1, 0 outside torchrun)."""
    return Distributed(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                       int(os.environ.get("LOCAL_RANK", "0")))
