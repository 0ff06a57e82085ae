"""Downloads bounded by what the entry declares, this machine's failures said as such (full disk,
read-only cache), damaged local partials, file modes, and offline that opens no socket: against
real loopback servers that misbehave on purpose."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import warnings
from collections import namedtuple

import pytest
from fileserver import ConnectionCounter, entry_dict, file_dict, sha256

import zoo
from zoo import store, transports
from zoo.errors import ChecksumMismatchError, OfflineError, StorageError
from zoo.fetch import ChecksumWarning, fetch_file
from zoo.registry import env

DATA = os.urandom(300_000)


def _sized(url: str, data: bytes, size: int) -> dict:
    spec = file_dict([url], data)
    spec["size"] = size
    return spec


def _leftovers(entry_name: str) -> list[str]:
    folder = store.entry_folder(entry_name)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def max_written(monkeypatch):
    """The most bytes any partial file ever held while being written."""
    seen = [0]
    write = transports.PartialWriter.write

    def tracking(self, chunk):
        write(self, chunk)
        seen[0] = max(seen[0], self.written)

    monkeypatch.setattr(transports.PartialWriter, "write", tracking)
    return seen


def test_an_endless_body_is_cut_at_the_declared_size(http_server, make_entry, max_written):
    http_server.endless.add("/endless.bin")
    entry = make_entry("net.endless", [_sized(http_server.base + "/endless.bin", b"\0" * 1000, 1000)])
    with pytest.raises(ChecksumMismatchError, match="more than the declared 1,000 bytes"):
        fetch_file(entry, progress=False)
    assert max_written[0] <= 1000  # never a byte past what the entry declares
    assert _leftovers("net.endless") == []


@pytest.mark.parametrize("announced", [10 ** 9, 1000])
def test_a_content_length_that_disagrees_is_refused_before_writing(http_server, make_entry, max_written,
                                                                   announced):
    url = http_server.add("w.bin", DATA)
    http_server.lie_length["/w.bin"] = announced
    entry = make_entry("net.liar", [_sized(url, DATA, len(DATA))])
    with pytest.raises(ChecksumMismatchError, match=f"Content-Length says {announced:,} bytes"):
        fetch_file(entry, progress=False)
    assert max_written[0] == 0 and _leftovers("net.liar") == []


def test_free_space_is_checked_before_any_request(http_server, make_entry, monkeypatch):
    url = http_server.add("w.bin", DATA)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 ** 6, 10 ** 6 - 1000, 1000))
    entry = make_entry("net.room", [_sized(url, DATA, len(DATA))])
    with pytest.raises(StorageError) as info:
        fetch_file(entry, progress=False)
    assert f"needs {len(DATA):,} more bytes" in str(info.value) and "ZOO_HOME" in str(info.value)
    assert http_server.gets("w.bin") == [] and _leftovers("net.room") == []


def test_a_full_disk_is_one_clear_error_and_blocks_nothing_after(http_server, make_entry, monkeypatch):
    url = http_server.add("w.bin", DATA)
    other = http_server.add("other.bin", DATA[::-1])
    write = transports.PartialWriter.write

    def full_after_64k(self, chunk):
        write(self, chunk[:65536])
        raise OSError(errno.ENOSPC, "No space left on device", str(self.job.partial))

    monkeypatch.setattr(transports.PartialWriter, "write", full_after_64k)
    entry = make_entry("net.full", [file_dict([url], DATA)])
    with pytest.raises(StorageError) as info:
        fetch_file(entry, progress=False)
    message = str(info.value)
    partial = store.partial_path(store.file_path("net.full", "weights.safetensors"))
    assert str(partial) in message and "No space left" in message and "ZOO_HOME" in message
    assert "partial download was removed" in message and "\n" not in message
    assert not partial.exists()  # its space is given back
    monkeypatch.setattr(transports.PartialWriter, "write", write)  # room was made
    assert fetch_file(entry, progress=False).read_bytes() == DATA
    assert fetch_file(make_entry("net.next", [file_dict([other], DATA[::-1])]), progress=False).exists()


def test_a_read_only_cache_is_one_clear_error_and_still_serves_what_it_holds(http_server, make_entry,
                                                                             monkeypatch):
    url = http_server.add("w.bin", DATA)
    held = make_entry("net.held", [file_dict([url], DATA)])
    path = fetch_file(held, progress=False)
    home = str(env.zoo_home())
    mkdir = os.mkdir

    def read_only(target, *args, **kwargs):
        if str(target).startswith(home):
            raise OSError(errno.EROFS, "Read-only file system", str(target))
        return mkdir(target, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only)
    assert fetch_file(held, progress=False) == path  # verified files need no write
    with pytest.raises(StorageError) as info:
        fetch_file(make_entry("net.new", [file_dict([url], DATA)]), progress=False)
    message = str(info.value)
    assert "read-only file system" in message and home in message and "set ZOO_HOME" in message


def test_a_damaged_partial_is_blamed_on_this_machine(http_server, make_entry):
    url = http_server.add("w.bin", DATA)
    entry = make_entry("net.rot", [file_dict([url], DATA)])
    partial = store.partial_path(store.file_path("net.rot", "weights.safetensors"))
    partial.parent.mkdir(parents=True)
    damaged = bytearray(DATA[:100_000])
    damaged[500] ^= 0xFF  # a bit flipped on this disk after an interrupted download
    partial.write_bytes(bytes(damaged))
    with pytest.warns(ChecksumWarning, match="damaged on this machine.*the damage was local, not the source's"):
        path = fetch_file(entry, progress=False)
    assert path.read_bytes() == DATA
    assert [g["range"] for g in http_server.gets("w.bin")] == ["bytes=100000-", None]


def test_a_partial_longer_than_the_declared_size_is_started_over(http_server, make_entry):
    url = http_server.add("w.bin", DATA)
    entry = make_entry("net.long", [_sized(url, DATA, len(DATA))])
    partial = store.partial_path(store.file_path("net.long", "weights.safetensors"))
    partial.parent.mkdir(parents=True)
    partial.write_bytes(DATA + b"junk")
    with pytest.warns(ChecksumWarning, match="cannot be resumed.*damage was on this machine, not at the source"):
        assert fetch_file(entry, progress=False).read_bytes() == DATA
    assert [g["range"] for g in http_server.gets("w.bin")] == [None]


def test_a_partial_the_server_cannot_continue_is_started_over(http_server, make_entry):
    url = http_server.add("w.bin", DATA)
    entry = make_entry("net.416", [file_dict([url], DATA)])  # no declared size: only the server can tell
    partial = store.partial_path(store.file_path("net.416", "weights.safetensors"))
    partial.parent.mkdir(parents=True)
    partial.write_bytes(DATA + b"junk")
    with pytest.warns(ChecksumWarning, match="HTTP 416.*not at the source"):
        assert fetch_file(entry, progress=False).read_bytes() == DATA
    assert [g["range"] for g in http_server.gets("w.bin")] == [f"bytes={len(DATA) + 4}-", None]


def test_files_the_zoo_writes_follow_the_umask(http_server, make_entry, tmp_path):
    url = http_server.add("w.bin", DATA)
    old = os.umask(0o022)
    try:
        path = fetch_file(make_entry("net.mode", [file_dict([url], DATA)]), progress=False)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (path, store.record_path(path))}
        assert modes == {"weights.safetensors": 0o644, "weights.safetensors.verified": 0o644}
        os.umask(0o027)
        from zoo._io import write_json

        write_json(tmp_path / "x.json", {"a": 1})
        assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o640
    finally:
        os.umask(old)


@pytest.fixture
def counter(monkeypatch):
    """A listening socket that counts connections; the Hub's endpoint points at it too."""
    from huggingface_hub import constants

    sock = ConnectionCounter()
    monkeypatch.setattr(constants, "ENDPOINT", sock.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", sock.url + "/{repo_id}/resolve/{revision}/{filename}")
    yield sock
    sock.close()


def test_offline_opens_no_socket(counter, user_registry, monkeypatch):
    hub_file = {"role": "weights", "filename": "model.safetensors", "format": "safetensors",
                "sources": [{"hf": {"repo": "org/net", "filename": "model.safetensors"}}]}
    user_registry([entry_dict("off.hub", [hub_file]),
                   entry_dict("off.url", [file_dict([counter.url + "/w.safetensors"], DATA)])])
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    for name in ("off.hub", "off.url"):
        with pytest.raises(OfflineError):
            zoo.load(name)
    monkeypatch.setenv("ZOO_MIRROR", counter.url + "/mirror")
    with pytest.raises(OfflineError) as info:
        zoo.download("off.url", progress=False)
    assert "is a URL, which offline mode does not contact" in str(info.value)
    assert "does not have" not in str(info.value)
    assert counter.close() == 0


def test_the_counter_does_count(counter):
    """The check above could not pass by accident: a request online is counted."""
    import urllib.request

    with pytest.raises(OSError):
        urllib.request.urlopen(counter.url + "/x", timeout=5)
    assert counter.close() == 1


def test_records_and_pins_survive_odd_contents(http_server, make_entry):
    url = http_server.add("w.bin", DATA)
    entry = make_entry("net.odd", [file_dict([url], DATA)])
    path = fetch_file(entry, progress=False)
    store.record_path(path).write_text("[" * 100_000 + "]" * 100_000)  # nested past Python's recursion limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fetch_file(entry, progress=False) == path  # re-hashed, record rewritten
    assert json.loads(store.record_path(path).read_text())["sha256"] == sha256(DATA)
