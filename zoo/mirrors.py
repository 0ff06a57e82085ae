"""Mirror folders: what an air-gapped site copies across and points ``ZOO_MIRROR`` at.

Owns: ``mirror`` (fill a folder with the verified files of named entries, as
``<folder>/<entry>/<filename>``) and its ``MANIFEST.json`` (entries, files, sizes, digests, and the
entries that could not be mirrored and why). Files are fetched and verified through ``zoo.fetch``
first; a mirror is verified again by whoever fetches from it.

No torch; never imports ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from zoo._io import atomic_path, file_digest, write_json
from zoo.errors import DownloadError, MirrorError, StorageError, ZooError
from zoo.fetch import entry_for, fetch_verified
from zoo.registry.schema import Entry, FileSpec
from zoo.store import LOCK_SUFFIX

__all__ = ["mirror", "MANIFEST"]

MANIFEST = "MANIFEST.json"


def mirror(directory: str | Path, names: Iterable[str | Entry] | str, *, progress: bool = True) -> list[Path]:
    """Fill a mirror folder that an air-gapped site copies and points ``ZOO_MIRROR`` at.

    Each file is fetched (and verified) into the cache, then copied to ``<directory>/<entry.name>/
    <filename>``; ``MANIFEST.json`` records the entries, files, sizes and digests (merged with what
    the folder already lists). Files already in the mirror with the right sha256 are not copied
    again. An entry that fails does not stop the others: the manifest lists it under ``failed``
    with the reason, and ``MirrorError`` is raised at the end.

    Args:
        directory: the mirror folder (created if needed).
        names: registry names (or entries) to mirror; every name is resolved before any download.
        progress: show progress bars.

    Returns:
        The mirror paths of every file of the named entries.

    Raises:
        UnknownModelError: a name is not in the registry (nothing was downloaded).
        MirrorError: some entries could not be mirrored (``failed`` says why; ``written`` lists the
            files that were).

    Example:
        >>> mirror("/media/usb/zoo-mirror", ["bvlc_alexnet", "resnet50"])   # doctest: +SKIP
        # then, on the air-gapped machine: ZOO_MIRROR=/media/usb/zoo-mirror ZOO_OFFLINE=1 zoo download resnet50
    """
    root = Path(directory).expanduser()
    if isinstance(names, (str, Entry)):
        names = [names]
    entries = [entry_for(n) for n in names]  # resolve all first: a typo fails before any download
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError.from_os_error(err, root, doing="creating the mirror folder",
                                         remedy="choose a mirror folder on a writable disk") from err
    manifest_path = root / MANIFEST
    written: list[Path] = []
    failed: dict[str, str] = {}
    with FileLock(str(manifest_path) + LOCK_SUFFIX):
        manifest = _read_manifest(manifest_path)
        try:
            for entry in entries:
                try:
                    files = {spec.filename: _mirror_file(root, entry, spec, progress) for spec in entry.files}
                except StorageError:
                    raise  # this machine cannot write: every entry after it would fail alike
                except ZooError as err:  # this entry only: the others are still mirrored
                    failed[entry.name] = str(err)
                    manifest["failed"][entry.name] = {"reason": str(err), "at": _now()}
                    continue
                written += [root / entry.name / name for name in files]
                manifest["entries"][entry.name] = {"files": files}
                manifest["failed"].pop(entry.name, None)
        finally:  # what was mirrored before a fatal error is listed too
            manifest["updated"] = _now()
            write_json(manifest_path, manifest)
    if failed:
        listed = "; ".join(f"{name}: {reason}" for name, reason in failed.items())
        raise MirrorError(f"{len(failed)} of {len(entries)} entries could not be mirrored into {root} ({listed}). "
                          f"The other {len(entries) - len(failed)} were, and {manifest_path} lists both; fix the "
                          f"cause and run `zoo mirror` again for the failed ones.", failed=failed, written=written)
    return written


def _mirror_file(root: Path, entry: Entry, spec: FileSpec, progress: bool) -> dict[str, Any]:
    """Fetch one file into the cache, copy it into the mirror unless an identical copy is there."""
    got = fetch_verified(entry, spec.role, progress=progress)
    target = root / entry.name / spec.filename
    size = got.path.stat().st_size
    if not (target.is_file() and target.stat().st_size == size and file_digest(target) == got.sha256):
        try:
            with atomic_path(target) as tmp:
                shutil.copyfile(got.path, tmp)
        except OSError as err:
            raise StorageError.from_os_error(err, target, doing="copying into the mirror",
                                             remedy="choose a mirror folder on a writable disk with room") from err
    checksum = spec.checksum
    return {
        "role": spec.role, "size": size, "sha256": got.sha256,
        "checksum": ({("sha256-prefix" if checksum.prefix else checksum.algorithm): checksum.value}
                     if checksum else None),
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"schema": 1, "entries": {}, "failed": {}}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise DownloadError(f"The mirror manifest {path} cannot be read ({err}); fix or delete it, "
                            f"then run `zoo mirror` again.") from err
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        raise DownloadError(f"The mirror manifest {path} is not a zoo MANIFEST.json (no 'entries' object); "
                            f"point `zoo mirror` at an empty folder or a zoo mirror.")
    if not isinstance(data.get("failed"), dict):
        data["failed"] = {}
    return data
