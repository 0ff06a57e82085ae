"""The cache as data: listing, re-verifying and removing, on files fetched from a real local server."""

from __future__ import annotations

import os

import pytest
from fileserver import entry_dict, file_dict, sha256

import zoo.fetch
from zoo.cache import cache_dir, list_cached, remove_cached, verify_cache
from zoo.registry import env

A = os.urandom(20_000)
B = os.urandom(30_000)


@pytest.fixture
def two_entries(http_server, user_registry):
    ua = http_server.add("a.safetensors", A)
    ub = http_server.add("b.caffemodel", B)
    user_registry([entry_dict("alpha.v1", [file_dict([ua], A, filename="a.safetensors")]),
                   entry_dict("beta.v1", [file_dict([ub], B, filename="b.caffemodel", fmt="caffemodel")])])
    zoo.fetch.download("alpha.v1", progress=False)
    zoo.fetch.download("beta.v1", progress=False)
    return http_server


def test_cache_dir_is_zoo_home():
    assert cache_dir() == env.zoo_home()


def test_list_cached(two_entries):
    files = list_cached()
    assert [(f.entry, f.filename, f.size, f.sha256, f.verified) for f in files] == [
        ("alpha.v1", "a.safetensors", len(A), sha256(A), True),
        ("beta.v1", "b.caffemodel", len(B), sha256(B), True),
    ]
    assert [f.entry for f in list_cached("beta*")] == ["beta.v1"]
    assert [f.entry for f in list_cached("alpha")] == ["alpha.v1"]  # a bare arch
    assert list_cached("gamma*") == []


def test_empty_cache_lists_nothing():
    assert list_cached() == [] and verify_cache() == []


def test_verify_finds_corruption_and_can_delete_it(two_entries):
    assert all(r.status == "ok" for r in verify_cache())
    bad = env.zoo_home() / "files" / "beta.v1" / "b.caffemodel"
    data = bytearray(bad.read_bytes())
    data[100] ^= 0xFF
    stat = bad.stat()
    bad.write_bytes(bytes(data))
    os.utime(bad, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime: only a re-hash sees it
    assert list_cached("beta*")[0].verified  # the fast path is fooled...
    results = {r.file.entry: r for r in verify_cache()}
    assert results["alpha.v1"].ok
    assert results["beta.v1"].status == "corrupt" and not results["beta.v1"].ok  # ...verify is not
    assert "differs from the recorded" in results["beta.v1"].reason
    verify_cache("beta*", delete_bad=True)
    assert not bad.exists()
    # The next fetch downloads it again, intact.
    assert zoo.fetch.download("beta.v1", progress=False)["weights"].read_bytes() == B


def test_verify_refreshes_stale_records(two_entries):
    path = env.zoo_home() / "files" / "alpha.v1" / "a.safetensors"
    os.utime(path, ns=(1, 1))
    assert not list_cached("alpha*")[0].verified
    assert verify_cache("alpha*")[0].status == "ok"
    assert list_cached("alpha*")[0].verified


def test_partials_and_unrecorded_files_are_reported(two_entries):
    folder = env.zoo_home() / "files" / "alpha.v1"
    (folder / "x.bin.partial").write_bytes(b"half")
    (folder / "notes.txt").write_bytes(b"put here by hand")
    by_name = {r.file.filename: r for r in verify_cache("alpha*")}
    assert by_name["x.bin.partial"].status == "partial"
    assert by_name["notes.txt"].status == "unrecorded"
    assert all(r.ok for r in by_name.values())


def test_remove_by_pattern(two_entries):
    would = remove_cached("beta*", dry_run=True)
    assert [f.entry for f in would] == ["beta.v1"]
    assert (env.zoo_home() / "files" / "beta.v1").exists()
    removed = remove_cached("beta*")
    assert [f.filename for f in removed] == ["b.caffemodel"]
    assert not (env.zoo_home() / "files" / "beta.v1").exists()
    assert [f.entry for f in list_cached()] == ["alpha.v1"]
    assert remove_cached("nothing-matches") == []
