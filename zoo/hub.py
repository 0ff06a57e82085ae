"""The zoo's side of the Hugging Face Hub: Hub files live once, in huggingface_hub's own cache.

Owns: ``download`` (one Hub file into the shared cache, or found there without a request),
``lfs_checksum`` (the LFS sha256 or git sha1 a cached blob is named by), ``offline_mode`` (every
huggingface_hub call the zoo makes is offline when ``ZOO_OFFLINE`` / ``HF_HUB_OFFLINE`` is set),
``remove`` (delete Hub files through huggingface_hub's own delete strategy) and ``remove_if_corrupt``.

The cache is the one huggingface_hub uses (``HF_HUB_CACHE`` / ``HF_HOME``), so a model a user already
has is reused and ``huggingface-cli`` / ``hf cache`` see what the zoo fetched. The zoo's records of
what it verified there are ``zoo.store``'s (``records/hub``). huggingface_hub is imported inside the
functions: ``import zoo`` stays light.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from zoo import store
from zoo.registry import env
from zoo.registry.schema import Checksum, Source

__all__ = ["offline_mode", "sync_offline", "download", "lfs_checksum", "remove", "remove_if_corrupt"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")


def sync_offline() -> None:
    """Make huggingface_hub offline for the whole process when ``ZOO_OFFLINE`` is set.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, when it is imported: the variable is set for an
    import still to come, and the constant for one that already happened (timm imports it early).
    """
    if not env.offline():
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


@contextlib.contextmanager
def offline_mode(offline: bool | None = None) -> Iterator[None]:
    """Within the block, huggingface_hub refuses every request when the zoo is offline.

    Wrap every call into huggingface_hub (or a library that calls it, such as timm's ``hf-hub:``
    names) in this: its own check of ``HF_HUB_OFFLINE`` happened at import time.

    Args:
        offline: force the mode; default ``zoo.registry.env.offline()``.
    """
    offline = env.offline() if offline is None else offline
    if not offline:
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def download(source: Source, *, offline: bool, progress: bool, force: bool = False) -> Path | None:
    """The path of a Hub file in huggingface_hub's cache, downloading it there if needed.

    A file already in the cache (a user's, or an earlier download) is returned without any request;
    offline, nothing else is tried and None means it is not there.

    Args:
        source: a registry source with ``hf_repo``, ``hf_filename`` and maybe ``hf_revision``.
        offline: never touch the network.
        progress: show huggingface_hub's progress bar.
        force: download again even when cached (not offline, where the cache is all there is).

    Returns:
        The snapshot path (a link to the blob named by its LFS sha256), or None offline when absent.

    Raises:
        Whatever huggingface_hub raises for a failed download (the caller reports it per source).
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cache = store.hub_cache()
    with offline_mode(offline):
        found = try_to_load_from_cache(source.hf_repo, source.hf_filename, cache_dir=cache,
                                       revision=source.hf_revision)
        if isinstance(found, str) and (offline or not force):
            return Path(found)
        if offline:
            return None
        local = hf_hub_download(source.hf_repo, source.hf_filename, revision=source.hf_revision, cache_dir=cache,
                                force_download=force, **({} if progress else {"tqdm_class": _silent_tqdm()}))
    return Path(local)


def lfs_checksum(blob: Path) -> Checksum | None:
    """The checksum a Hub blob is named by: its LFS sha256, or the git sha1 of a small file."""
    if _SHA256.fullmatch(blob.name):
        return Checksum(algorithm="sha256", value=blob.name, trust="publisher")
    if _SHA1.fullmatch(blob.name):
        return Checksum(algorithm="git-blob-sha1", value=blob.name, trust="publisher")
    return None


def remove_if_corrupt(path: Path, sha256: str) -> bool:
    """Delete a Hub file whose bytes do not match the LFS sha256 its blob is named by.

    A blob that matches its name is a good Hub file even when a registry entry expects another one,
    so it is left for whoever else uses it.

    Returns:
        True when the file was deleted.
    """
    blob = Path(os.path.realpath(path))
    named = lfs_checksum(blob)
    if named is None or named.algorithm != "sha256" or named.value == sha256:
        return False
    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)
    return True


def remove(paths: Iterable[Path], *, dry_run: bool = False) -> int:
    """Delete Hub files (snapshot paths) with huggingface_hub's delete strategy.

    A blob another snapshot still uses is kept; other files of the same revision are kept.

    Args:
        paths: snapshot paths in the Hub's cache.
        dry_run: compute what would be freed, delete nothing.

    Returns:
        The bytes freed (or that would be).
    """
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    wanted = {Path(p) for p in paths}
    if not wanted:
        return 0
    try:
        info = scan_cache_dir(store.hub_cache())
    except CacheNotFound:
        return 0
    files = [f for repo in info.repos for rev in repo.revisions for f in rev.files if f.file_path in wanted]
    strategy = info.delete_files(*files)
    if not dry_run:
        strategy.execute()
    return strategy.expected_freed_size


def _silent_tqdm():
    from tqdm.auto import tqdm

    class SilentTqdm(tqdm):  # huggingface_hub's bars, switched off for progress=False
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return SilentTqdm
