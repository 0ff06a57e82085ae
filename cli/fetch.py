"""``zoo download``, ``zoo cache ls|verify|rm|dir`` and ``zoo mirror``: thin wrappers over ``zoo.fetch``,
``zoo.cache`` and ``zoo.mirrors``.

Imports only click and the registry at module level (``zoo --help`` lists these commands without
loading anything heavy); the fetching modules are imported inside the commands. Never imports torch.
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager

import click

from zoo.registry.errors import ZooError

__all__ = ["download_cmd", "cache_group", "mirror_cmd"]


def _shown(text: object) -> str:
    """A name or path as one printable line: control characters, backslashes and undecodable bytes
    escaped (``\\n``, ``\\\\``, ``\\xff``), as ``ls --quoting-style=escape`` does, so that a file name
    holding a newline cannot forge a line of output."""
    out = []
    for ch in str(text):
        if ch == "\\":
            out.append("\\\\")
        elif "\udc80" <= ch <= "\udcff":  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif not ch.isprintable():
            out.append(repr(ch)[1:-1])
        else:
            out.append(ch)
    return "".join(out)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@contextmanager
def _warnings_to_stderr():
    """Show the fetcher's checksum warnings as plain ``Warning:`` lines, not Python's source-line format."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                click.echo(f"Warning: {w.message}", err=True)


def _resolve(names):
    from zoo.external import resolve_entry

    return [resolve_entry(n) for n in names]  # UnknownModelError (with close matches) before any download


@click.command("download")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--force", is_flag=True, help="Fetch again even if cached (any partial is discarded; the cached copy is replaced only once the "
                   "new download verifies).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def download_cmd(names: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Fetch, verify and cache the files of each NAME; print each file's path.

    Sources are tried in order: ZOO_MIRROR (a folder or URL), then the entry's own URLs, Hub files
    or packaged files. Every file's checksum is checked before it enters the cache; an interrupted
    download is resumed next time. With ZOO_OFFLINE=1 only the cache and a folder mirror are used.
    Exits 1 if any file could not be fetched (the others are still cached).

    \b
    Examples:
      zoo download resnet50                   fetch and verify the default resnet50 weights
      zoo download bvlc_alexnet bvlc_googlenet
      zoo download resnet18 --force           fetch and verify again, replacing the cached copy
      ZOO_MIRROR=/mnt/zoo-mirror ZOO_OFFLINE=1 zoo download resnet50
    """
    from zoo.fetch import download

    entries = _resolve(names)
    failed = 0
    for entry in entries:
        if not entry.files:
            click.echo(f"{entry.name}: no files to fetch (its library builds it without weights)", err=True)
            continue
        try:
            with _warnings_to_stderr():
                paths = download(entry, force=force, progress=not quiet)
        except ZooError as err:
            if len(entries) == 1:
                raise  # the command's error handler prints it and exits 1
            click.echo(f"Error: {err}", err=True)
            failed += 1
            continue
        for path in paths.values():
            click.echo(_shown(path))
    if failed:
        click.echo(f"{failed} of {len(entries)} entries failed.", err=True)
        # SystemExit, not click's Exit: main() runs click with standalone_mode=False, which
        # returns an Exit's code instead of exiting with it.
        raise SystemExit(1)


@click.group("cache")
def cache_group() -> None:
    """Inspect and manage the local cache ($ZOO_HOME, and the Hub files the zoo keeps in the
    Hugging Face cache, HF_HUB_CACHE, which other Hub tools share).

    \b
    Examples:
      zoo cache ls                  every cached file, its size and whether it is verified
      zoo cache verify              re-hash everything; exit 1 if any file is corrupt
      zoo cache rm 'bvlc_*'         delete cached files of matching entries
      zoo cache dir                 print the cache folder
    """


@cache_group.command("ls")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def cache_ls_cmd(pattern: str | None, as_json: bool) -> None:
    """List cached files, optionally of entries matching PATTERN (fnmatch).

    \b
    Examples:
      zoo cache ls
      zoo cache ls 'resnet*' --json
    """
    from zoo.cache import list_cached

    files = list_cached(pattern)
    if as_json:
        for f in files:
            click.echo(json.dumps(f.to_dict()))
        return
    if not files:
        click.echo("The cache is empty." if not pattern else f"No cached files match {pattern!r}.", err=True)
        return
    names = [_shown(f"{f.entry}/{f.filename}") for f in files]
    width = max(map(len, names))
    for name, f in zip(names, files):
        state = "partial" if f.partial else "verified" if f.verified else "unverified"
        digest = f.sha256[:12] if f.sha256 else "-"
        where = "hub" if f.hub else "zoo"
        click.echo(f"{name:<{width}}  {_size(f.size):>10}  {state:<10}  {digest:<12}  {where}")
    click.echo(f"{len(files)} files, {_size(sum(f.size for f in files))}", err=True)


@cache_group.command("verify")
@click.argument("pattern", required=False)
@click.option("--delete", "delete_bad", is_flag=True, help="Delete corrupt files so the next download refetches them.")
def cache_verify_cmd(pattern: str | None, delete_bad: bool) -> None:
    """Re-hash every cached file and compare it with its record and the registry's checksum.

    Exits 1 when a file is corrupt; re-fetch it with `zoo download NAME --force`.

    \b
    Examples:
      zoo cache verify
      zoo cache verify 'bvlc_*' --delete
    """
    from zoo.cache import verify_cache

    results = verify_cache(pattern, delete_bad=delete_bad)
    bad = [r for r in results if not r.ok]
    for r in results:
        click.echo(f"{r.status:<10}  {_shown(f'{r.file.entry}/{r.file.filename}')}  {r.reason}")
    click.echo(f"{len(results)} files checked, {len(bad)} corrupt.", err=True)
    if bad:
        names = " ".join(sorted({r.file.entry for r in bad}))
        action = "deleted; fetch again with" if delete_bad else "re-fetch with"
        click.echo(f"Corrupt files {action}: zoo download {names} --force", err=True)
        raise SystemExit(1)


@cache_group.command("rm")
@click.argument("pattern")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def cache_rm_cmd(pattern: str, yes: bool) -> None:
    """Delete the cached files of entries matching PATTERN (fnmatch; '*' for all).

    Hub files are removed from the Hugging Face cache with huggingface_hub's own delete strategy (a
    blob another snapshot still uses is kept). Answering no keeps everything and exits 1.

    \b
    Examples:
      zoo cache rm resnet50.tv_in1k
      zoo cache rm 'vgg*' --yes
    """
    from zoo.cache import remove_cached

    files = remove_cached(pattern, dry_run=True)
    if not files:
        click.echo(f"No cached files match {pattern!r}; see `zoo cache ls`.", err=True)
        raise SystemExit(1)
    total = sum(f.size for f in files)
    entries = sorted({f.entry for f in files})
    if not yes:
        for f in files:
            click.echo(f"  {_shown(f'{f.entry}/{f.filename}')}  {_size(f.size)}"
                       + ("  (Hugging Face cache)" if f.hub else ""), err=True)
        if not click.confirm(f"Delete {len(files)} files ({_size(total)}) of {len(entries)} entries?", err=True):
            click.echo("Nothing was removed.", err=True)
            raise SystemExit(1)  # a refusal, not an interruption (130 is for Ctrl-C)
    removed = remove_cached(pattern)
    click.echo(f"Removed {len(removed)} files ({_size(total)}) of {_shown(', '.join(entries))}.")


@cache_group.command("dir")
def cache_dir_cmd() -> None:
    """Print the cache folder ($ZOO_HOME).

    \b
    Example:
      du -sh "$(zoo cache dir)"
    """
    from zoo.cache import cache_dir

    click.echo(_shown(cache_dir()))


@click.command("mirror")
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def mirror_cmd(directory: str, names: tuple[str, ...], quiet: bool) -> None:
    """Fill DIRECTORY with the verified files of each NAME, for an air-gapped site.

    Writes DIRECTORY/<entry>/<file> and a MANIFEST.json of entries, files and digests. Copy the
    folder across and point ZOO_MIRROR at it; files are verified again when fetched from it. An
    entry that fails does not stop the others: the manifest and the last lines list what failed,
    and the command exits 1.

    \b
    Examples:
      zoo mirror /media/usb/zoo bvlc_googlenet resnet50
      # on the air-gapped machine:
      ZOO_MIRROR=/media/usb/zoo ZOO_OFFLINE=1 zoo download resnet50
    """
    from zoo.errors import MirrorError
    from zoo.mirrors import mirror

    entries = _resolve(names)
    failed: dict[str, str] = {}
    with _warnings_to_stderr():
        try:
            written = mirror(directory, entries, progress=not quiet)
        except MirrorError as err:
            written, failed = err.written, err.failed
    for path in written:
        click.echo(_shown(path))
    done = len(entries) - len(failed)
    click.echo(f"Mirrored {len(written)} files of {done} entries into {_shown(directory)}.", err=True)
    if done:
        first = next(e.name for e in entries if e.name not in failed)
        click.echo(f"On the offline machine: ZOO_MIRROR={_shown(directory)} ZOO_OFFLINE=1 zoo download {first}",
                   err=True)
    if failed:
        for name, reason in failed.items():
            click.echo(f"Failed: {name}: {reason}", err=True)
        click.echo(f"{len(failed)} of {len(entries)} entries failed (listed under 'failed' in "
                   f"{_shown(directory)}/MANIFEST.json); run `zoo mirror {_shown(directory)} "
                   f"{' '.join(failed)}` again once fixed.", err=True)
        raise SystemExit(1)
