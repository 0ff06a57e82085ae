"""Hub files live once, in huggingface_hub's own cache, against a fake Hub on 127.0.0.1: verified
against the LFS sha256, recorded, reused from a cache the user already filled, listed, verified and
removed by ``zoo.cache``."""

from __future__ import annotations

import os

import pytest
from fileserver import sha256

from zoo import store
from zoo.cache import list_cached, remove_cached, verify_cache
from zoo.errors import ChecksumMismatchError, OfflineError
from zoo.fetch import fetch_file, fetch_verified
from zoo.registry import env

DATA = os.urandom(200_000)


def _hub_entry(make_entry, name: str, repo: str, *, checksum: dict | None = None):
    spec = {"role": "weights", "filename": "model.safetensors", "format": "safetensors",
            "sources": [{"hf": {"repo": repo, "filename": "model.safetensors"}}]}
    if checksum:
        spec["checksum"] = checksum
    return make_entry(name, [spec])


def _blobs() -> list:
    return sorted(p for p in env.hf_hub_cache().rglob("*") if p.is_file() and p.parent.name == "blobs")


def test_stored_once_and_not_hashed_again(fake_hub, make_entry, http_server, monkeypatch):
    fake_hub("org/once", "model.safetensors", DATA)
    entry = _hub_entry(make_entry, "net.once", "org/once")
    got = fetch_verified(entry, progress=False)
    assert got.sha256 == sha256(DATA) and got.path.read_bytes() == DATA
    assert [b.name for b in _blobs()] == [sha256(DATA)]  # one copy, named by its LFS sha256
    assert not store.entry_folder("net.once").exists()  # and none in ZOO_HOME/files
    requests = len(http_server.requests)

    # The record is trusted: no request and no hashing on the next load.
    def no_hashing(*args, **kwargs):
        raise AssertionError("hashed again")

    monkeypatch.setattr(store, "hash_file", no_hashing)
    assert fetch_file(entry, progress=False) == got.path
    assert len(http_server.requests) == requests


def test_a_prefilled_hugging_face_cache_is_used_without_a_request(fake_hub, make_entry, http_server):
    from huggingface_hub import hf_hub_download

    fake_hub("org/mine", "model.safetensors", DATA)
    # The user fetched it with huggingface_hub before ever running the zoo.
    theirs = hf_hub_download("org/mine", "model.safetensors", cache_dir=env.hf_hub_cache())
    before = len(http_server.requests)
    entry = _hub_entry(make_entry, "net.mine", "org/mine", checksum={"sha256": sha256(DATA)})
    path = fetch_file(entry, progress=False)
    assert str(path) == theirs and len(http_server.requests) == before
    assert len(_blobs()) == 1
    assert store.read_record(path, record_file=store.hub_record_path("net.mine", "model.safetensors"))["sha256"] \
        == sha256(DATA)


def test_hf_hub_cache_is_respected(fake_hub, make_entry, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    fake_hub("org/where", "model.safetensors", DATA)
    path = fetch_file(_hub_entry(make_entry, "net.where", "org/where"), progress=False)
    assert path.is_relative_to(tmp_path / "elsewhere")


def test_offline_uses_the_hub_cache_and_names_what_is_missing(fake_hub, make_entry, http_server, monkeypatch):
    fake_hub("org/off", "model.safetensors", DATA)
    cached = _hub_entry(make_entry, "net.off", "org/off")
    fetch_file(cached, progress=False)
    store.hub_record_path("net.off", "model.safetensors").unlink()  # found again in the Hub's cache, offline
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    before = len(http_server.requests)
    assert fetch_file(cached, progress=False).read_bytes() == DATA
    with pytest.raises(OfflineError) as info:
        fetch_file(_hub_entry(make_entry, "net.absent", "org/absent"), progress=False)
    assert "hf://org/absent/model.safetensors" in str(info.value)
    assert len(http_server.requests) == before


def test_a_good_hub_file_the_entry_does_not_name_is_refused_but_kept(fake_hub, make_entry):
    fake_hub("org/other", "model.safetensors", DATA)
    entry = _hub_entry(make_entry, "net.other", "org/other", checksum={"sha256": "0" * 64})
    with pytest.raises(ChecksumMismatchError):
        fetch_file(entry, progress=False)
    assert [b.name for b in _blobs()] == [sha256(DATA)]  # a valid Hub file: left for its other users
    assert not store.hub_record_path("net.other", "model.safetensors").exists()


def test_cache_lists_verifies_and_removes_hub_files(fake_hub, make_entry, user_registry):
    from fileserver import entry_dict

    fake_hub("org/ls", "model.safetensors", DATA)
    fake_hub("org/ls", "README.md", b"# a file of the same revision the zoo does not own")
    user_registry([entry_dict("net.ls", [{"role": "weights", "filename": "model.safetensors",
                                          "format": "safetensors",
                                          "sources": [{"hf": {"repo": "org/ls", "filename": "model.safetensors"}}]}])])
    from huggingface_hub import hf_hub_download

    readme = hf_hub_download("org/ls", "README.md", cache_dir=env.hf_hub_cache())
    path = fetch_file(_hub_entry(make_entry, "net.ls", "org/ls"), progress=False)
    [item] = list_cached("net.ls")
    assert (item.hub, item.path, item.sha256, item.verified) == (True, path, sha256(DATA), True)
    assert [r.status for r in verify_cache("net.ls")] == ["ok"]
    # Bytes rotted on disk: verify re-hashes and says so.
    blob = path.resolve()
    blob.write_bytes(bytes([DATA[0] ^ 0xFF]) + DATA[1:])  # a changed first byte (b"x" was DATA[0] 1 time in 256)
    [result] = verify_cache("net.ls", delete_bad=True)
    assert result.status == "corrupt" and sha256(DATA) in result.reason
    assert not blob.exists() and list_cached() == []  # deleted, so the next load fetches it again
    assert fetch_file(_hub_entry(make_entry, "net.ls", "org/ls"), progress=False).read_bytes() == DATA
    removed = remove_cached("net.ls")
    assert [f.filename for f in removed] == ["model.safetensors"]
    assert not path.exists() and not blob.exists() and list_cached() == []
    assert open(readme).read().startswith("# a file")  # huggingface_hub's strategy kept the rest


def test_force_downloads_a_hub_file_again(fake_hub, make_entry, http_server):
    fake_hub("org/again", "model.safetensors", DATA)
    entry = _hub_entry(make_entry, "net.again", "org/again")
    fetch_file(entry, progress=False)
    gets = len(http_server.gets("org/again/resolve/main/model.safetensors"))
    assert fetch_file(entry, force=True, progress=False).read_bytes() == DATA
    assert len(http_server.gets("org/again/resolve/main/model.safetensors")) == gets + 1
