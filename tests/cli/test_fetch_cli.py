"""``zoo download``, ``zoo cache ...`` and ``zoo mirror`` run as a user runs them (a subprocess), against a
real HTTP server on 127.0.0.1, with their exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "zoo"))  # the shared file server
from fileserver import entry_dict, file_dict, sha256, start_server  # noqa: E402

DATA = os.urandom(50_000)
MEAN = os.urandom(5_000)


def zoo(*args: str, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, input=input, timeout=120)


@pytest.fixture
def server(tmp_path, monkeypatch):
    state, stop = start_server()
    good = state.add("net.safetensors", DATA)
    mean = state.add("mean.binaryproto", MEAN)
    bad = state.add("bad.safetensors", b"not the bytes the registry names")
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"schema": 1, "entries": [
        entry_dict("clinet.v1", [file_dict([good], DATA, filename="net.safetensors"),
                                 file_dict([mean], MEAN, role="mean", filename="mean.binaryproto",
                                           fmt="binaryproto")]),
        entry_dict("clibad.v1", [file_dict([bad], DATA, filename="bad.safetensors")]),
        entry_dict("cligone.v1", [file_dict([state.base + "/gone.bin"], DATA, filename="gone.bin")]),
    ]}))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    yield state
    stop()


def _home() -> Path:
    return Path(os.environ["ZOO_HOME"])


def test_download_prints_paths_and_caches(server):
    result = zoo("download", "clinet.v1", "--quiet")
    assert result.returncode == 0, result.stderr
    paths = result.stdout.split()
    assert [Path(p).name for p in paths] == ["net.safetensors", "mean.binaryproto"]
    assert Path(paths[0]).read_bytes() == DATA
    assert Path(paths[0]).is_relative_to(_home())


def test_download_bad_checksum_exits_1_with_one_line(server):
    result = zoo("download", "clibad.v1", "-q")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Checksum mismatch")
    assert "zoo download clibad.v1 --force" in lines[0]
    assert not (_home() / "files" / "clibad.v1" / "bad.safetensors").exists()


def test_download_404_and_unknown_name(server):
    result = zoo("download", "cligone.v1", "-q")
    assert result.returncode == 1 and "gone.bin" in result.stderr and "404" in result.stderr
    result = zoo("download", "clinet.v2", "-q")
    assert result.returncode == 1 and "Did you mean clinet.v1" in result.stderr


def test_download_several_continues_past_a_failure(server):
    result = zoo("download", "clibad.v1", "clinet.v1", "-q")
    assert result.returncode == 1
    assert len(result.stdout.split()) == 2  # clinet.v1's files were still fetched
    assert "1 of 2 entries failed" in result.stderr


def test_download_offline_names_what_is_missing(server):
    result = zoo("download", "clinet.v1", "-q", env={"ZOO_OFFLINE": "1"})
    assert result.returncode == 1
    assert "Offline mode" in result.stderr and "zoo mirror DIR clinet.v1" in result.stderr
    assert server.requests == []


def test_cache_ls_verify_rm_dir(server):
    assert zoo("download", "clinet.v1", "-q").returncode == 0
    listing = zoo("cache", "ls")
    assert listing.returncode == 0 and "clinet.v1/net.safetensors" in listing.stdout
    assert "verified" in listing.stdout
    rows = [json.loads(line) for line in zoo("cache", "ls", "--json").stdout.splitlines()]
    assert {r["file"]: r["sha256"] for r in rows} == {"mean.binaryproto": sha256(MEAN),
                                                     "net.safetensors": sha256(DATA)}
    assert zoo("cache", "verify").returncode == 0
    # Corrupt one file: verify exits 1 and says how to fix it.
    (_home() / "files" / "clinet.v1" / "net.safetensors").write_bytes(b"rot")
    verify = zoo("cache", "verify")
    assert verify.returncode == 1 and "corrupt" in verify.stdout
    assert "zoo download clinet.v1 --force" in verify.stderr
    assert zoo("cache", "dir").stdout.strip() == str(_home())
    # rm asks first; "n" keeps the files, --yes removes them.
    keep = zoo("cache", "rm", "clinet*", input="n\n")
    assert keep.returncode != 0 and (_home() / "files" / "clinet.v1").exists()
    gone = zoo("cache", "rm", "clinet*", "--yes")
    assert gone.returncode == 0 and "Removed 2 files" in gone.stdout
    assert not (_home() / "files" / "clinet.v1").exists()
    assert zoo("cache", "rm", "clinet*", "--yes").returncode == 1  # nothing matches any more


def test_mirror_then_offline_download(server, tmp_path):
    out = tmp_path / "mirror"
    result = zoo("mirror", str(out), "clinet.v1", "-q")
    assert result.returncode == 0, result.stderr
    assert (out / "clinet.v1" / "net.safetensors").read_bytes() == DATA
    assert "ZOO_MIRROR=" in result.stderr
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert set(manifest["entries"]["clinet.v1"]["files"]) == {"net.safetensors", "mean.binaryproto"}
    before = len(server.requests)
    offline = zoo("download", "clinet.v1", "-q", env={"ZOO_HOME": str(tmp_path / "airgapped"),
                                                      "ZOO_OFFLINE": "1", "ZOO_MIRROR": str(out)})
    assert offline.returncode == 0, offline.stderr
    assert Path(offline.stdout.split()[0]).read_bytes() == DATA
    assert len(server.requests) == before


def test_help_has_examples_and_imports_no_torch():
    code = ("import sys; from zoo.cli.main import main\n"
            "try:\n    main(['download', '--help'])\nexcept SystemExit:\n    pass\n"
            "try:\n    main(['cache', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "Examples:" in result.stdout and "zoo download resnet50" in result.stdout
    assert result.stdout.strip().endswith("NO-TORCH")
