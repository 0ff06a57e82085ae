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
from fileserver import (ConnectionCounter, entry_dict, file_dict, publish_on_hub, sha256,  # noqa: E402
                        start_server)

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
    assert keep.returncode == 1 and (_home() / "files" / "clinet.v1").exists()  # a refusal, not Ctrl-C's 130
    assert "Nothing was removed" in keep.stderr
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


HUB = {"role": "weights", "filename": "model.safetensors", "format": "safetensors",
       "sources": [{"hf": {"repo": "org/clihub", "filename": "model.safetensors"}}]}


def _registry(tmp_path, monkeypatch, entries) -> None:
    path = tmp_path / "more.json"
    path.write_text(json.dumps({"schema": 1, "entries": entries}))
    monkeypatch.setenv("ZOO_REGISTRY", str(path))


def test_hub_files_are_listed_and_removed_from_the_hugging_face_cache(server, tmp_path, monkeypatch):
    publish_on_hub(server, "org/clihub", "model.safetensors", DATA)
    _registry(tmp_path, monkeypatch, [entry_dict("clihub.v1", [HUB])])
    got = zoo("download", "clihub.v1", "-q", env={"HF_ENDPOINT": server.base})
    assert got.returncode == 0, got.stderr
    path = Path(got.stdout.strip())
    assert path.read_bytes() == DATA and path.is_relative_to(Path(os.environ["HF_HOME"]))
    assert not (_home() / "files" / "clihub.v1").exists()  # stored once, in the Hub's cache
    listing = zoo("cache", "ls")
    [row] = listing.stdout.splitlines()
    assert row.startswith("clihub.v1/model.safetensors ") and row.split()[-1] == "hub" and "verified" in row
    gone = zoo("cache", "rm", "clihub*", "--yes")
    assert gone.returncode == 0 and "Removed 1 files" in gone.stdout
    assert not path.exists() and not path.resolve().exists()
    assert zoo("cache", "ls").stdout == ""


def test_offline_download_opens_no_socket(tmp_path, monkeypatch):
    counter = ConnectionCounter()
    try:
        _registry(tmp_path, monkeypatch, [entry_dict("offhub.v1", [dict(HUB)]),
                                          entry_dict("offurl.v1", [file_dict([counter.url + "/w.bin"], DATA)])])
        result = zoo("download", "offhub.v1", "offurl.v1", "-q",
                     env={"ZOO_OFFLINE": "1", "HF_ENDPOINT": counter.url, "ZOO_MIRROR": counter.url + "/m"})
    finally:
        connections = counter.close()
    assert result.returncode == 1 and result.stderr.count("Offline mode is on") == 2
    assert "is a URL, which offline mode does not contact" in result.stderr
    assert connections == 0


def test_mirror_continues_past_failures_and_lists_them(server, tmp_path):
    out = tmp_path / "mirror"
    result = zoo("mirror", str(out), "clibad.v1", "clinet.v1", "cligone.v1", "-q")
    assert result.returncode == 1
    assert (out / "clinet.v1" / "net.safetensors").read_bytes() == DATA  # the good one, after a failure
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert set(manifest["entries"]) == {"clinet.v1"}
    assert set(manifest["failed"]) == {"clibad.v1", "cligone.v1"}
    assert "Checksum mismatch" in manifest["failed"]["clibad.v1"]["reason"]
    assert "Failed: clibad.v1" in result.stderr and "Failed: cligone.v1" in result.stderr
    assert "2 of 3 entries failed" in result.stderr
    # Once fixed, a rerun clears the failure from the manifest.
    server.files["/bad.safetensors"] = DATA
    assert zoo("mirror", str(out), "clibad.v1", "-q").returncode == 0
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert set(manifest["entries"]) == {"clinet.v1", "clibad.v1"} and set(manifest["failed"]) == {"cligone.v1"}


def test_cache_ls_escapes_a_newline_in_a_file_name(server):
    assert zoo("download", "clinet.v1", "-q").returncode == 0
    (_home() / "files" / "clinet.v1" / "evil\nclinet.v1 forged.bin").write_bytes(b"x")
    listing = zoo("cache", "ls")
    lines = listing.stdout.splitlines()
    assert len(lines) == 3  # three files, three lines: the name cannot forge a fourth
    assert any(line.startswith("clinet.v1/evil\\nclinet.v1 forged.bin ") for line in lines)


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's /sys, where nobody may create folders")
def test_an_unwritable_zoo_home_is_one_line_naming_it(server):
    result = zoo("download", "clinet.v1", "-q", env={"ZOO_HOME": "/sys/zoo-home"})
    if result.returncode == 0:
        pytest.skip("/sys is writable here")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "/sys/zoo-home" in line and ("Permission denied" in line or "read-only" in line) and "ZOO_HOME" in line


def test_a_full_disk_through_the_cli_is_one_line(server, monkeypatch, capsys):
    import errno

    from zoo import transports
    from zoo.cli.main import main

    def full(self, chunk):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.job.partial))

    monkeypatch.setattr(transports.PartialWriter, "write", full)
    with pytest.raises(SystemExit) as info:
        main(["download", "clinet.v1", "-q"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and err.count("\n") == 1 and err.startswith("Error: No space left")
    assert not list((_home() / "files" / "clinet.v1").glob("*.partial"))


@pytest.mark.parametrize("raised, said", [
    (OSError(5, "Input/output error", "/dev/broken"), "Input/output error: /dev/broken"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "must be UTF-8"),
    (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
])
def test_errors_escaping_a_command_are_one_line_and_exit_1(monkeypatch, capsys, raised, said):
    import zoo.cache
    from zoo.cli.main import main

    def broken(pattern=None):  # whatever a command calls raises it
        raise raised

    monkeypatch.setattr(zoo.cache, "list_cached", broken)
    with pytest.raises(SystemExit) as info:
        main(["cache", "ls"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and err.count("\n") == 1 and err.startswith("Error: ") and said in err
    assert "Traceback" not in err
    monkeypatch.setenv("ZOO_DEBUG", "1")  # and the traceback is there when asked for
    with pytest.raises(type(raised)):
        main(["cache", "ls"])
