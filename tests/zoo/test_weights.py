"""Safe weights: pickles that would run code are refused; .pth converts once to safetensors."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
from fileserver import file_dict, sha256

from zoo.errors import UnsafeWeightsError, WeightsError
from zoo.store import converted_path
from zoo.weights import load_entry_weights, read_state_dict, save_state_dict


class _Payload:
    """Unpickling this calls ``pathlib.Path.touch(target)``: what a malicious checkpoint does."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.target),))


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"conv.weight": torch.randn(4, 1, 3, 3), "conv.bias": torch.randn(4), "fc.weight": torch.randn(2, 36),
            "bn.num_batches_tracked": torch.tensor(7)}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_code_running_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "payload": _Payload(str(marker))}, evil)
    assert not marker.exists()
    with pytest.raises(UnsafeWeightsError) as info:
        read_state_dict(evil, format="pth")
    assert str(evil) in str(info.value) and "Nothing in it was run" in str(info.value)
    assert not marker.exists()


def test_code_running_pickle_served_by_an_entry_is_refused(http_server, make_entry, tmp_path):
    marker = tmp_path / "pwned-too"
    evil = tmp_path / "evil.pth"
    torch.save({"w": _Payload(str(marker))}, evil)
    data = evil.read_bytes()
    url = http_server.add("evil.pth", data)
    entry = make_entry("net.evil", [file_dict([url], data, filename="evil.pth", fmt="pth")])
    with pytest.raises(UnsafeWeightsError, match="evil.pth"):
        load_entry_weights(entry, progress=False)
    assert not marker.exists()
    assert not converted_path("net.evil", "evil.pth").exists()


def test_pth_converts_once_and_reads_the_same_tensors(http_server, make_entry, tmp_path, monkeypatch):
    state = _state()
    torch.save(state, tmp_path / "w.pth")
    data = (tmp_path / "w.pth").read_bytes()
    url = http_server.add("w.pth", data)
    entry = make_entry("net.pth", [file_dict([url], data, filename="w.pth", fmt="pth")])
    first = load_entry_weights(entry, progress=False)
    _assert_same(first, state)
    from zoo.registry import env

    converted = env.zoo_home() / "files" / "net.pth" / "w.safetensors"
    assert converted.is_file()
    mtime = converted.stat().st_mtime_ns
    # The second call reads the safetensors file: prove it by making torch.load unusable.
    import zoo.weights

    def no_unpickling(*args, **kwargs):
        raise AssertionError("the .pth was unpickled again")

    monkeypatch.setattr(zoo.weights.torch, "load", no_unpickling)
    second = load_entry_weights(entry, progress=False)
    _assert_same(second, state)
    assert converted.stat().st_mtime_ns == mtime  # not rewritten
    record = json.loads(converted.with_name("w.safetensors.verified").read_text())
    assert record["sha256"] == sha256(converted.read_bytes())


def test_wrapped_and_ddp_checkpoints_unwrap(tmp_path):
    state = _state()
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "c.pth")
    _assert_same(read_state_dict(tmp_path / "c.pth", format="pth"), state)
    torch.save({"model": state, "optimizer_name": "sgd"}, tmp_path / "m.pth")
    _assert_same(read_state_dict(tmp_path / "m.pth", format="pth"), state)


def test_not_a_state_dict_is_a_weights_error(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="not a state dict"):
        read_state_dict(tmp_path / "list.pth", format="pth")
    torch.save({"w": torch.zeros(1), "epoch": 3}, tmp_path / "mixed.pth")
    with pytest.raises(WeightsError, match="not tensors"):
        read_state_dict(tmp_path / "mixed.pth", format="pth")
    (tmp_path / "junk.pth").write_bytes(b"not a zip or a pickle")
    with pytest.raises(WeightsError):
        read_state_dict(tmp_path / "junk.pth", format="pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(WeightsError, match="safetensors"):
        read_state_dict(tmp_path / "junk.safetensors", format="safetensors")
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "absent.safetensors", format="safetensors")
    with pytest.raises(WeightsError, match="caffe"):
        read_state_dict(tmp_path / "list.pth", format="caffemodel")


def test_save_is_atomic_handles_shared_and_strided_tensors(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    state = {"a": base, "tied": base, "t": base.t(), "row": base[1], "meta": torch.tensor([1, 2])}
    path = save_state_dict(state, tmp_path / "out" / "m.safetensors", metadata={"arch": "test"})
    back = read_state_dict(path, format="safetensors")
    _assert_same(back, {k: v.contiguous() for k, v in state.items()})
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata() == {"arch": "test"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.safetensors"]  # no temp file left


def test_failed_save_leaves_the_old_file(tmp_path):
    path = save_state_dict({"a": torch.ones(2)}, tmp_path / "m.safetensors")
    before = path.read_bytes()
    with pytest.raises(WeightsError):
        save_state_dict({"a": torch.ones(2), "b": "oops"}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_safetensors_entry_reads_directly(http_server, make_entry, tmp_path):
    state = _state()
    path = save_state_dict(state, tmp_path / "w.safetensors")
    data = path.read_bytes()
    url = http_server.add("w.safetensors", data)
    entry = make_entry("net.st", [file_dict([url], data)])
    _assert_same(load_entry_weights(entry, progress=False), state)
