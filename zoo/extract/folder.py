"""Folders to a features file: ``extract_folder``, behind ``zoo extract``; resumable and shardable.

Owns: ``extract_folder``, ``ExtractSummary`` and the ``<out>.parts`` folder (a manifest and one
``.npz`` per chunk of images). A chunk is reused, from the parts of an interrupted run or from a
finished ``out``, only when the same network (``identity.producer``: weights and preprocessing
digests) made it from the same files (paths, sizes and modification times); anything else is
extracted again, and the summary says why. Rows of two networks never share a file. Imports torch,
numpy and the Extractor; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import write_json
from ..errors import DataError
from ..model import ZooModel
from .extractor import Extractor, progress_bar
from .fileformat import FORMAT, VERSION, index_paths, save_npz, str_array, write_features
from .identity import chunk_digests, has_random_weights, producer
from .inputs import collect_inputs
from zoo.registry import env

__all__ = ["extract_folder", "ExtractSummary"]

PARTS_FORMAT = FORMAT + "-parts"
# What the user asked for: parts that differ in one of these belong to another job (an error on resume).
OPTION_KEYS = ("model", "layer", "pool", "draft", "amp", "count", "chunk_size", "inputs_sha256")


@dataclass
class ExtractSummary:
    """What ``extract_folder`` did. ``failures`` lists ``(path, reason)`` for every skipped file;
    ``notes`` says what could not be reused from an earlier run, and why."""

    out: Path
    index: Path
    failed_index: Path | None
    images: int  # files considered, skipped ones included
    extracted: int  # rows written
    failed: int
    resumed: int  # images whose results an earlier run had already made (same network, same files)
    seconds: float
    dim: int = 0
    merged: bool = True  # False on torchrun ranks other than 0, which only write their shards
    failures: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        done = self.images - self.resumed
        return done / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(out=str(self.out), index=str(self.index),
                    failed_index=str(self.failed_index) if self.failed_index else None,
                    images_per_s=round(self.images_per_s, 2))
        data["failures"] = [{"path": p, "reason": r} for p, r in self.failures]
        return data


@dataclass(frozen=True)
class Job:
    """One extraction: what was asked (``options``), what made its rows (``producer``), and each
    chunk's files' identity (``chunks``)."""

    options: dict[str, Any]
    producer: dict[str, str]
    chunks: list[str]
    random: bool  # a random-weight network loaded without a seed: each load is another network

    @property
    def manifest(self) -> dict[str, Any]:
        return {"format": PARTS_FORMAT, "version": VERSION, **self.options, "producer": self.producer}

    def bounds(self, k: int) -> tuple[int, int]:
        size, count = self.options["chunk_size"], self.options["count"]
        return k * size, min((k + 1) * size, count)

    def stale_note(self, what: str) -> str:
        """Why rows made by another network are not reused, and, for random weights, what to do."""
        note = (f"{what} made by other weights or preprocessing than {self.options['model']}'s now "
                "(the model behind the name changed): extracting again")
        if self.random:
            note += (f"; {self.options['model']} has random weights, so each load is a new network: pass "
                     "seed=N (`zoo extract --seed N`) to make such an extraction resumable")
        return note + "."


def extract_folder(model: str | os.PathLike | ZooModel | Extractor,
                   inputs: str | os.PathLike | Iterable[str | os.PathLike], out: str | os.PathLike, *,
                   chunk_size: int = 1024, resume: bool = True, progress: bool = True, recursive: bool = True,
                   seed: int | None = None, **options: Any) -> ExtractSummary:
    """Extract features for every image in ``inputs`` into ``out`` (``.npz``), resumably.

    Work is cut into chunks of ``chunk_size`` images; each finished chunk is written atomically to
    ``<out>.parts/`` beside a manifest. Started again, a job reuses the chunks (of an interrupted run,
    or of a finished ``out``) that the same network made from the same files, and extracts the rest:
    a changed file redoes its chunk; other weights behind the same name redo everything. The chunks
    are then merged into ``out`` (see ``zoo.extract.fileformat``), ``<out stem>.csv`` (``row,path``)
    and, if files were skipped, ``<out stem>.failed.csv`` (``path,reason``). Unreadable files are
    skipped and listed, never fatal. Memory stays flat in the number of images until the merge.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) rank r extracts chunks r, r + W, r + 2W, ...; rank 0
    waits for every chunk and merges them in input order.

    Args:
        model: a registry name, a saved-model folder, a ``ZooModel`` or an ``Extractor``.
        inputs: folders, image files, or list files (``.txt``: one path a line).
        out: the features file to write; must end in ``.npz``.
        chunk_size: images per resumable chunk.
        resume: reuse what an earlier run made; False starts over.
        progress: show a progress bar (on a terminal).
        recursive: walk sub-folders of folder inputs.
        seed: seed the random initialisation of a model built here (a ``*.scratch`` name), so that a
            run with random weights can be resumed.
        **options: for the ``Extractor`` built here: ``layer``, ``pool``, ``device``, ``batch_size``,
            ``num_workers``, ``draft``, ``amp``, ...

    Returns:
        An ``ExtractSummary`` (counts, paths written, failures, notes).

    Raises:
        DataError: an input that does not exist, no images at all, ``<out>.parts`` belongs to a
            different job, or the ranks of a torchrun job loaded different weights.
        UnknownLayerError: a layer the model does not have.

    Example:
        >>> s = extract_folder("resnet50", ["photos/"], "feats.npz")   # doctest: +SKIP
        >>> s.extracted, s.failed                                       # doctest: +SKIP
        (410, 2)
    """
    start = time.perf_counter()
    out = Path(out)
    if out.suffix != ".npz":
        raise DataError(f"{out}: the features file must end in .npz (it is a numpy archive), e.g. "
                        f"{out.with_suffix('.npz').name}.")
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    paths, rejected = collect_inputs(inputs, recursive=recursive)
    if not paths and not rejected:
        raise DataError(f"no images in {', '.join(map(str, inputs))}: "
                        "give folders of JPEG/PNG/WebP/BMP/GIF/TIFF files, image paths, or a .txt list.")
    ex = _extractor(model, seed, options)
    if ex.multi:
        raise DataError("extract_folder writes one layer per file; run it once per layer.")
    job = _plan(ex, paths, chunk_size, random=seed is None and has_random_weights(ex.model))
    summary = _run_job(ex, job, paths, rejected, out, resume=resume, progress=progress)
    summary.seconds = time.perf_counter() - start
    return summary


def _extractor(model: Any, seed: int | None, options: dict[str, Any]) -> Extractor:
    if isinstance(model, Extractor) and options:
        raise DataError(f"{', '.join(sorted(options))}: set these on the Extractor given to extract_folder.")
    if seed is not None and isinstance(model, (Extractor, ZooModel)):
        raise DataError("seed seeds a model that extract_folder builds from a name or folder; a model given "
                        "in memory already has its weights.")
    if isinstance(model, Extractor):
        return model
    if seed is None:
        return Extractor(model, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Extractor(model, **options)


def _plan(ex: Extractor, paths: list[str], chunk_size: int, *, random: bool) -> Job:
    options = {"model": ex.name, "layer": ex.layer_names[0], "pool": ex.pool or "none", "draft": ex.draft,
               "amp": ex.amp, "count": len(paths), "chunk_size": chunk_size,
               "inputs_sha256": hashlib.sha256(b"\n".join(map(os.fsencode, paths))).hexdigest()}
    return Job(options=options, producer=producer(ex.model), chunks=chunk_digests(paths, chunk_size),
               random=random)


def _run_job(ex: Extractor, job: Job, paths: list[str], rejected: list[tuple[str, str]], out: Path, *,
             resume: bool, progress: bool) -> ExtractSummary:
    rank, world = _world()
    parts = out.with_name(out.name + ".parts")
    notes: list[str] = []
    mine = [k for k in range(len(job.chunks)) if k % world == rank]
    finished = _read_finished(out, job, notes) if resume and out.is_file() else None
    if finished is not None and _complete(finished, job, rejected):
        return _finished_summary(out, finished, len(paths) + len(rejected))
    _prepare_parts(parts, job, resume, rank, notes)
    if finished is not None:
        _seed_parts(parts, job, finished, mine, notes)
    pending = _pending(parts, job, mine, notes)
    resumed = sum(job.bounds(k)[1] - job.bounds(k)[0] for k in mine if k not in pending)
    sampler = [list(range(s, min(s + ex.batch_size, job.bounds(k)[1])))
               for k in pending for s in range(*job.bounds(k), ex.batch_size)]
    total = sum(job.bounds(k)[1] - job.bounds(k)[0] for k in mine)
    bar = progress_bar(total, progress, initial=resumed,
                       desc="extract" if world == 1 else f"extract rank {rank}/{world}")
    try:
        _run_chunks(ex, paths, sampler, job, parts, bar)
    finally:
        bar.close()
    if world > 1:
        _wait_for_chunks(parts, len(job.chunks), rank)
        if rank != 0:
            return ExtractSummary(out=out, index=index_paths(out)[0], failed_index=None, images=len(paths),
                                  extracted=0, failed=0, resumed=resumed, seconds=0.0, merged=False, notes=notes)
    summary = _merge(parts, job, paths, rejected, out, ex)
    summary.resumed, summary.notes = resumed, notes
    return summary


def _prepare_parts(parts: Path, job: Job, resume: bool, rank: int, notes: list[str]) -> None:
    """Check ``<out>.parts`` against this job (another job's parts are an error) and write the manifest."""
    manifest_path = parts / "manifest.json"
    old = None
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            old = None
        if isinstance(old, dict) and resume and old.get("version", VERSION) != VERSION:
            notes.append(f"{parts} was written by another version of the zoo: starting over.")
        if not isinstance(old, dict) or not resume or old.get("version", VERSION) != VERSION:
            if rank == 0:
                shutil.rmtree(parts, ignore_errors=True)
            old = None
    if old is not None:
        diff = sorted(k for k in OPTION_KEYS if old.get(k) != job.options[k])
        if diff:
            raise DataError(f"{parts} holds the chunks of a different extraction (differs in {', '.join(diff)}). "
                            f"Delete that folder, pass another --out, or --restart to start over.")
    parts.mkdir(parents=True, exist_ok=True)
    if rank == 0 or not manifest_path.is_file():
        write_json(manifest_path, job.manifest)


def _pending(parts: Path, job: Job, mine: list[int], notes: list[str]) -> list[int]:
    """This rank's chunks still to extract; stale ones (other network, changed files) are removed."""
    states = {k: _chunk_state(_chunk_path(parts, k), job, k) for k in mine}
    stale = {reason: [k for k, s in states.items() if s == reason] for reason in ("producer", "files", "damaged")}
    if stale["producer"]:
        notes.append(job.stale_note(f"{len(stale['producer'])} chunk(s) of the interrupted run in {parts} were"))
    if stale["files"]:
        notes.append(f"{len(stale['files'])} chunk(s) of the interrupted run hold files changed since: "
                     "extracting them again.")
    if stale["damaged"]:
        notes.append(f"{len(stale['damaged'])} chunk file(s) in {parts} could not be read: extracting them again.")
    for k in (k for ks in stale.values() for k in ks):
        _chunk_path(parts, k).unlink(missing_ok=True)
    return [k for k in mine if states[k] != "done"]


def _chunk_state(path: Path, job: Job, k: int) -> str:
    """``done``, ``missing``, ``producer`` (made by another network), ``files`` (its files changed)
    or ``damaged``."""
    if not path.is_file():
        return "missing"
    try:
        with np.load(path, allow_pickle=False) as chunk:
            made_by = json.loads(str(chunk["producer"])) if "producer" in chunk else None
            ids = str(chunk["ids"]) if "ids" in chunk else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return "damaged"
    if made_by != job.producer:
        return "producer"
    return "done" if ids == job.chunks[k] else "files"


def _run_chunks(ex: Extractor, paths: list[str], sampler: list[list[int]], job: Job, parts: Path, bar: Any) -> None:
    """Extract the batches in ``sampler`` and write each chunk as soon as its last image is done."""
    feats: list[torch.Tensor] = []
    rows: list[torch.Tensor] = []
    failed: list[Any] = []
    seen = 0
    for batch in ex.batches(paths, batch_sampler=sampler):
        x, idx = batch
        first = int(idx[0]) if idx is not None and len(idx) else batch.failures[0].index
        k = first // job.options["chunk_size"]  # batches never straddle chunks (see the sampler)
        if x is not None:
            feats.append(ex.forward(x)[ex.layer_names[0]].flatten(1).cpu())
            rows.append(idx)
        failed.extend(batch.failures)
        n = (0 if idx is None else len(idx)) + len(batch.failures)
        seen += n
        bar.update(n)
        if seen == job.bounds(k)[1] - job.bounds(k)[0]:
            values = torch.cat(feats).numpy() if feats else np.zeros((0, 0), dtype=np.float32)
            index = torch.cat(rows).numpy() if rows else np.zeros(0, dtype=np.int64)
            _write_chunk(parts, k, job, values, index, np.array([f.index for f in failed], dtype=np.int64),
                         [f.reason for f in failed])
            feats, rows, failed, seen = [], [], [], 0


def _write_chunk(parts: Path, k: int, job: Job, features: np.ndarray, index: np.ndarray, failed_index: np.ndarray,
                 failed_reasons: list[str]) -> None:
    save_npz(_chunk_path(parts, k), features=features.astype(np.float32, copy=False),
             index=index.astype(np.int64), failed_index=failed_index.astype(np.int64),
             failed_reason=str_array(failed_reasons), producer=np.array(json.dumps(job.producer, sort_keys=True)),
             ids=np.array(job.chunks[k]))


def _read_finished(out: Path, job: Job, notes: list[str]) -> dict[str, Any] | None:
    """The arrays of a finished ``out`` that this job may reuse rows from, else None (with a note
    when it was another network's)."""
    try:
        with np.load(out, allow_pickle=False) as data:
            if "job" not in data or "index" not in data:
                return None
            old = json.loads(str(data["job"]))
            if old.get("version") != VERSION or any(old.get(k) != job.options[k] for k in OPTION_KEYS):
                return None
            if old.get("producer") != job.producer:
                notes.append(job.stale_note(f"the features in {out} were"))
                return None
            keys = ("features", "index", "failed_index", "failed_paths", "failed_reasons")
            return {"chunks": old.get("chunks", []), **{key: data[key] for key in keys}}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError):
        return None


def _complete(finished: dict[str, Any], job: Job, rejected: list[tuple[str, str]]) -> bool:
    refused = [(str(p), str(r)) for i, p, r in zip(finished["failed_index"], finished["failed_paths"],
                                                   finished["failed_reasons"]) if i < 0]
    return finished["chunks"] == job.chunks and refused == list(rejected)


def _finished_summary(out: Path, finished: dict[str, Any], images: int) -> ExtractSummary:
    failed = list(zip(map(str, finished["failed_paths"]), map(str, finished["failed_reasons"])))
    feats = finished["features"]
    index_path, failed_path = index_paths(out)
    return ExtractSummary(out=out, index=index_path, failed_index=failed_path if failed else None, images=images,
                          extracted=len(feats), failed=len(failed), resumed=images, seconds=0.0,
                          dim=int(feats.shape[1]) if feats.ndim == 2 else 0, failures=failed)


def _seed_parts(parts: Path, job: Job, finished: dict[str, Any], mine: list[int], notes: list[str]) -> None:
    """Write this rank's chunks whose files are unchanged from the finished file's rows."""
    same = [k for k in mine if k < len(finished["chunks"]) and finished["chunks"][k] == job.chunks[k]]
    for k in (k for k in same if _chunk_state(_chunk_path(parts, k), job, k) != "done"):
        lo, hi = job.bounds(k)
        rows = (finished["index"] >= lo) & (finished["index"] < hi)
        fails = (finished["failed_index"] >= lo) & (finished["failed_index"] < hi)
        _write_chunk(parts, k, job, finished["features"][rows], finished["index"][rows],
                     finished["failed_index"][fails], [str(r) for r in finished["failed_reasons"][fails]])
    changed = len(mine) - len(same)
    if changed:
        notes.append(f"{changed} of {len(mine)} chunk(s) hold files added, changed or touched since the "
                     "features file was written: extracting those again.")


def _wait_for_chunks(parts: Path, n_chunks: int, rank: int) -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        return
    # Without a process group the ranks meet through the file system: rank 0 polls for the chunks,
    # the others are done once theirs are written.
    while rank == 0 and not all(_chunk_path(parts, k).is_file() for k in range(n_chunks)):
        time.sleep(0.5)


def _merge(parts: Path, job: Job, paths: list[str], rejected: list[tuple[str, str]], out: Path,
           ex: Extractor) -> ExtractSummary:
    feats: list[np.ndarray] = []
    index: list[np.ndarray] = []
    failures: list[tuple[int, str, str]] = []
    for k in range(len(job.chunks)):
        path = _chunk_path(parts, k)
        state = _chunk_state(path, job, k)
        if state != "done":  # another rank's chunk, made by another network or from other files
            raise DataError(f"{path} {_MERGE_PROBLEMS[state]}: every rank of a job must load the same weights "
                            "and see the same files (a random-weight model needs --seed). Run the job again.")
        with np.load(path, allow_pickle=False) as chunk:
            if len(chunk["index"]):
                feats.append(chunk["features"])
                index.append(chunk["index"])
            failures += [(int(i), paths[int(i)], str(r)) for i, r in zip(chunk["failed_index"], chunk["failed_reason"])]
    features = np.concatenate(feats) if feats else np.zeros((0, 0), dtype=np.float32)
    rows = np.concatenate(index) if index else np.zeros(0, dtype=np.int64)
    order = np.argsort(rows, kind="stable")  # chunks are in input order; this keeps it true whatever wrote them
    features, rows = features[order], rows[order]
    row_paths = [paths[int(i)] for i in rows]
    failed = sorted(failures) + [(-1, p, r) for p, r in rejected]
    meta = {"model": ex.name, "model_ref": ex.ref, "layer": ex.layer_names[0], "pool": ex.pool or "none",
            **job.producer}
    write_features(out, features=features, paths=row_paths, index=rows, failed=failed, meta=meta,
                   job={**job.manifest, "chunks": job.chunks})
    shutil.rmtree(parts, ignore_errors=True)
    index_path, failed_path = index_paths(out)
    return ExtractSummary(out=out, index=index_path, failed_index=failed_path if failed else None,
                          images=len(paths) + len(rejected), extracted=len(row_paths), failed=len(failed),
                          resumed=0, seconds=0.0, dim=int(features.shape[1]) if features.ndim == 2 else 0,
                          failures=[(p, r) for _, p, r in failed])


_MERGE_PROBLEMS = {"producer": "was made by other weights than this process's",
                   "files": "was made from files that have changed since", "missing": "is missing",
                   "damaged": "cannot be read"}


def _world() -> tuple[int, int]:
    place = env.distributed()
    return place.rank, place.world


def _chunk_path(parts: Path, k: int) -> Path:
    return parts / f"chunk-{k:06d}.npz"
