"""A seeded fuzzer for user registry files, driven through ``zoo list``, ``zoo info`` and ``zoo download``.

Each case writes one entry file into a ``ZOO_REGISTRY`` folder: a valid template (a URL, Hub, packaged,
run, Caffe or reference-architecture entry, served by a loopback origin) with one to four mutations,
structural (a field deleted, retyped, added) or aimed (a hostile card, label file, packaged source, model
option, builder, name, alias, checksum), and sometimes a mutation of the bytes themselves (truncated,
non-UTF-8, NUL bytes, nested 100,000 deep, numbers past every limit). Then the three commands run
in-process through click's ``CliRunner``.

What must hold, for every case: only the project's own errors come out (``ZooError``; never another
exception, never a traceback in the output); no file is opened outside the allowed folders (checked with
an audit hook on ``open`` against a canary folder the hostile paths point at); and while ``ZOO_OFFLINE=1``
the origin receives no request. ``file://`` sources are fetched like URLs (the bytes are checksummed
before they enter the cache), so the fuzzer points them only inside its own folder.

Run by ``test_registry_fuzz.py`` in a subprocess (the audit hook cannot be removed once added, and
huggingface_hub reads its environment at import):
``python tests/cli/registry_fuzz.py WORKDIR --cases 10000 --offline 1000 --seed 0`` prints a JSON report.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import random
import re
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GOOD = bytes(range(256)) * 64  # the served weights
MEAN = b"mean-image" * 100

# ------------------------------------------------------------------------------------------------
# Templates: valid entries the mutations start from.


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file(source, data: bytes = GOOD, *, role: str = "weights", filename: str = "w.safetensors",
          fmt: str = "safetensors") -> dict:
    return {"role": role, "filename": filename, "format": fmt, "size": len(data), "checksum": {"sha256": _sha(data)},
            "sources": [source]}


def templates(base: str, work: Path, name: str) -> list[dict]:
    common = {"name": name, "license": "MIT", "description": "fuzz case",
              "preprocessing": {"input_size": [3, 32, 32], "resize": 36},
              "head": {"num_classes": 2, "labels": ["a", "b"]}}
    timm = {"library": "timm", "builder": "resnet18", "kwargs": {"drop_rate": 0.1}}
    return [
        {**common, "architecture": timm, "files": [_file(base + "/w/good.safetensors")]},
        {**common, "architecture": timm, "files": [_file({"hf": {"repo": "org/net", "filename": "model.safetensors"}},
                                                         filename="model.safetensors")]},
        {**common, "architecture": {"library": "zoo", "builder": "lenet", "kwargs": {"hidden": 64}},
         "files": [_file({"package": "w/good.safetensors"})]},
        {**common, "architecture": {"library": "run", "builder": str(work / "run")},
         "files": [_file((work / "served" / "w" / "good.safetensors").as_uri())]},
        {**common, "architecture": {"library": "caffe", "builder": "caffemodel", "kwargs": {"input": [3, 32, 32]}},
         "preprocessing": {"input_size": [3, 32, 32], "resize": 36, "channel_order": "BGR", "scale": 255.0,
                           "mean_file": "mean"},
         "files": [_file(base + "/w/good.caffemodel", filename="w.caffemodel", fmt="caffemodel"),
                   _file(base + "/w/mean.binaryproto", MEAN, role="mean", filename="mean.binaryproto",
                         fmt="binaryproto")]},
        {**common, "architecture": timm, "card": "card.md", "head": {"num_classes": 2, "labels": "labels.txt"},
         "files": [_file(base + "/w/good.safetensors")]},
    ]


# ------------------------------------------------------------------------------------------------
# Mutations.


def hostile_paths(outside: Path) -> list[str]:
    return ["/etc/passwd", str(outside / "secret.md"), "../outside/secret.md", "../../../../../../etc/passwd",
            "link_out.md", "sub_out/secret.md", "sub_out/secret.txt", "w_out.safetensors", "card.md", "labels.txt",
            "cards/../../outside/secret.md", "~/.netrc", "C:\\secret.md", "file:///etc/passwd", "fifo.md", ".",
            "..", "/", "", "a\x00b.md", "\x1b]0;x\x07.md", "x" * 3000, "imagenet-1k", "no-such-set", "nested/card.md"]


STRINGS = ["", " ", "x" * 5000, "\x00", "\x1b[2J", "\u202e", "\ud800", "😀", "NaN", "hf-hub:timm/resnet18.a1_in1k",
           "local-dir:/tmp", "resnet50", "resnet50.tv2_in1k", "caffe_alexnet", "zoo_lenet", "vgg16", "lenet",
           "sha256", "publisher", "suspect", "bilinear", "BGR", "center", "imagenet-1k", "MIT", "WTFPL"]
VALUES = [None, True, False, 0, -1, 1, 3, 2**53 + 1, 10**30, -(10**30), 1e308, -0.0, 0.5, [], {}, [1] * 20,
          [[[[]]]], {"a": {"b": {"c": {}}}}, [3, 32, 32], [0.5, 0.5, 0.5], {"sha256": "0" * 64}]
KWARGS = ["checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained", "weights_backbone",
          "cache_dir", "file", "url", "num_classes", "in_chans", "drop_rate", "global_pool", "act_layer", "img_size",
          "hidden", "input", "state_dict_path", "new_option"]
BUILDERS = ["hf-hub:timm/resnet18.a1_in1k", "local-dir:/tmp/x", "resnet18", "../x", "test_resnet", "lenet",
            "caffemodel", "/abs/run", "https://127.0.0.1/x", "resnet18.a1_in1k", "x" * 200]


def url_pool(base: str, work: Path, outside: Path) -> list:
    return [base + "/w/good.safetensors", base + "/w/missing.bin", base + "/w/bad.safetensors",
            base + "/w/%2e%2e/%2e%2e/etc/passwd", base + "/w/a b", "http://127.0.0.1:99999/x", "http:///x",
            "ftp://127.0.0.1/x", "file://host/etc/passwd", (work / "served" / "w" / "good.safetensors").as_uri(),
            (work / "served" / "w" / "missing.bin").as_uri(), "javascript:alert(1)", "http://[::1", 3, None,
            {"package": "w/good.safetensors"}, {"package": "../outside/secret.txt"}, {"package": "/etc/passwd"},
            {"hf": {"repo": "org/net", "filename": "model.safetensors"}},
            {"hf": {"repo": "org/liar", "filename": "model.safetensors"}},
            {"hf": {"repo": "org/gone", "filename": "model.safetensors", "revision": "v1"}},
            {"hf": {"repo": "org/../x", "filename": "../../x"}}, {"hf": {"repo": "org/net", "filename": "a\x00b"}},
            {"url": base + "/w/good.safetensors", "package": "x"}]


def _containers(obj, out=None):
    """Every (container, key) pair in a JSON value."""
    out = [] if out is None else out
    if isinstance(obj, dict):
        for key in list(obj):
            out.append((obj, key))
            _containers(obj[key], out)
    elif isinstance(obj, list):
        for i in range(len(obj)):
            out.append((obj, i))
            _containers(obj[i], out)
    return out


class Mutator:
    """Seeded mutations of an entry (a dict) and of an entry file's bytes."""

    def __init__(self, seed: int, base: str, work: Path, outside: Path):
        self.rng = random.Random(seed)
        self.paths = hostile_paths(outside)
        self.urls = url_pool(base, work, outside)

    def value(self):
        pick = self.rng.random()
        if pick < 0.35:
            return self.rng.choice(STRINGS)
        if pick < 0.6:
            return self.rng.choice(self.paths)
        return copy.deepcopy(self.rng.choice(VALUES))

    def structural(self, entry: dict) -> None:
        places = _containers(entry)
        if not places:
            return
        container, key = self.rng.choice(places)
        op = self.rng.randrange(4)
        if op == 0 and isinstance(container, dict):
            del container[key]
        elif op == 1 and isinstance(container, dict):
            container[self.rng.choice(["extra", "url", "file", "kwargs", "__proto__", "\x00", "é"])] = self.value()
        elif op == 2 and isinstance(container, list):
            container.append(copy.deepcopy(container[key]))
        else:
            container[key] = self.value()

    def aimed(self, entry: dict, i: int) -> None:
        rng = self.rng
        target = rng.randrange(10)
        files = entry.get("files") if isinstance(entry.get("files"), list) else None
        spec = files[0] if files and isinstance(files[0], dict) else None
        if target == 0:
            entry["card"] = rng.choice(self.paths)
        elif target == 1:
            entry["head"] = {"num_classes": rng.choice([0, 2, 3, 10**9]), "labels": rng.choice(self.paths)}
        elif target == 2 and spec is not None:
            spec["sources"] = [copy.deepcopy(rng.choice(self.urls)) for _ in range(rng.randint(1, 3))]
        elif target == 3 and isinstance(entry.get("architecture"), dict):
            kwargs = entry["architecture"].setdefault("kwargs", {})
            if isinstance(kwargs, dict):
                kwargs[rng.choice(KWARGS)] = rng.choice([self.value(), rng.choice(self.paths), 1, True])
        elif target == 4 and isinstance(entry.get("architecture"), dict):
            entry["architecture"]["builder"] = rng.choice(BUILDERS)
        elif target == 5:
            entry["name"] = rng.choice(["resnet50.tv_in1k", "lenet.fmnist5", f"fz{i}.v1", "FZ.v1", "fz", f"fz{i}.a.b",
                                        f"resnet50.fz{i}", f"caffe_alexnet.fz{i}"])
            entry["default"] = rng.random() < 0.5
        elif target == 6:
            entry["aliases"] = [rng.choice(["resnet50", "vgg16", "caffe_alexnet", "zoo_lenet", "resnet50.tv_in1k",
                                            f"fz{i}", f"fz{i}.v1", f"fz{i}_alias", "UPPER", "a/b"])]
        elif target == 7 and spec is not None:
            spec["checksum"] = rng.choice([{"sha256": "0" * 64}, {"sha256-prefix": _sha(GOOD)[:8]},
                                           {"sha1": "0" * 40, "trust": "suspect", "note": "n"}, {"md5": "0" * 32},
                                           {"sha256": _sha(GOOD).upper()}, None, {"git-blob-sha1": "0" * 40}])
        elif target == 8 and spec is not None:
            spec["size"] = rng.choice([0, 1, len(GOOD) - 1, len(GOOD) + 1, 2**53, -5, True, 10**40])
        elif target == 9 and spec is not None:
            spec["filename"] = rng.choice(["../w.bin", "a/b.bin", "\x00.bin", ".", "w.bin", "x" * 300, "é.bin"])

    def entry(self, template: dict, i: int) -> dict:
        entry = copy.deepcopy(template)
        for _ in range(self.rng.choice([0, 1, 1, 2, 2, 3, 4])):
            if self.rng.random() < 0.6:
                self.aimed(entry, i)
            else:
                self.structural(entry)
        return entry

    def document(self, entry: dict) -> bytes:
        rng = self.rng
        doc = [entry] if rng.random() < 0.1 else {"schema": 1, "entries": [entry]}
        if rng.random() < 0.05 and isinstance(doc, dict):
            doc["entries"].append(copy.deepcopy(entry))  # a name twice in one file
        text = json.dumps(doc, ensure_ascii=rng.random() < 0.5)
        if rng.random() < 0.75:
            return text.encode("utf-8", "surrogatepass")
        return self.bytes_mutation(text)

    def bytes_mutation(self, text: str) -> bytes:
        rng = self.rng
        data = text.encode("utf-8", "surrogatepass")
        op = rng.randrange(9)
        if op == 0:
            return data[: rng.randrange(len(data))]
        if op == 1:
            at = rng.randrange(len(data))
            return data[:at] + bytes([rng.choice([0, 0xFF, 0x80, 0xC3, 0x1B, ord("{"), ord('"')])]) + data[at + 1:]
        if op == 2:
            return text.replace("fuzz case", "caf\u00e9 \u00e0 la fuzz").encode("latin-1", "replace")
        if op == 3:
            depth = rng.choice([33, 900, 100_000])
            return b'{"entries": ' + b"[" * depth + b"]" * depth + b"}"
        if op == 4:
            return re.sub(r"\b36\b", rng.choice(["1e999", "NaN", "-Infinity", "1" + "0" * 5000, "36.0e400"]),
                          text, count=1).encode("utf-8", "surrogatepass")
        if op == 5:
            return b"\xef\xbb\xbf" + data  # a UTF-8 BOM
        if op == 6:
            return data.replace(b'"name"', b'"name": "dup.v1", "name"', 1)  # duplicate keys
        if op == 7:
            return data + b"\x00"
        return b" " * rng.randrange(10) + data + b"\n" * rng.randrange(3)


# ------------------------------------------------------------------------------------------------
# The world: a loopback origin, a fake Hub, a registry folder with symlinks out, a canary folder.


def build_world(work: Path, outside: Path):
    sys.path.insert(0, str(ROOT / "tests" / "zoo"))
    from fileserver import start_server

    state, stop = start_server()
    for name, data in (("good.safetensors", GOOD), ("good.caffemodel", GOOD), ("mean.binaryproto", MEAN),
                       ("bad.safetensors", b"tampered" + GOOD[8:])):
        state.add(f"/w/{name}", data)
    from huggingface_hub import constants

    constants.ENDPOINT = state.base
    constants.HUGGINGFACE_CO_URL_TEMPLATE = state.base + "/{repo_id}/resolve/{revision}/{filename}"
    for repo, data, etag in (("org/net", GOOD, _sha(GOOD)), ("org/liar", b"x" + GOOD[1:], _sha(GOOD))):
        path = f"/{repo}/resolve/main/model.safetensors"
        state.add(path, data)
        state.headers[path] = {"X-Repo-Commit": "a" * 40, "X-Linked-Etag": f'"{etag}"',
                               "X-Linked-Size": str(len(data)), "ETag": f'"{etag}"'}
    outside.mkdir(parents=True, exist_ok=True)
    for name in ("secret.md", "secret.txt"):
        (outside / name).write_text("canary\n")
    (outside / "secret.safetensors").write_bytes(GOOD)
    served = work / "served" / "w"
    served.mkdir(parents=True, exist_ok=True)
    (served / "good.safetensors").write_bytes(GOOD)
    (work / "run").mkdir(exist_ok=True)
    reg = work / "registry"
    (reg / "w").mkdir(parents=True, exist_ok=True)
    (reg / "w" / "good.safetensors").write_bytes(GOOD)
    (reg / "card.md").write_text("# card\n")
    (reg / "labels.txt").write_text("a\nb\n")
    (reg / "link_out.md").symlink_to(outside / "secret.md")
    (reg / "w_out.safetensors").symlink_to(outside / "secret.safetensors")
    (reg / "sub_out").symlink_to(outside, target_is_directory=True)
    os.mkfifo(reg / "fifo.md")
    return state, stop, reg


class Audit:
    """Records every ``open`` outside the allowed folders while active (an audit hook cannot be removed)."""

    def __init__(self, allowed: list[Path]):
        self.allowed = [str(p.resolve()) for p in allowed]
        self.active = False
        self.violations: list[str] = []

    def __call__(self, event: str, args: tuple) -> None:
        if not self.active or event != "open":
            return
        target = args[0]
        if isinstance(target, int):
            return
        path = os.path.realpath(os.fsdecode(target))
        if not any(path == root or path.startswith(root + os.sep) for root in self.allowed):
            self.violations.append(path)


# ------------------------------------------------------------------------------------------------
# The run.


def _normalise(message: str, work: Path) -> str:
    """An error message with the case-specific parts (paths, names, values) taken out, to count kinds."""
    message = message.replace(str(work), "WORK")
    message = re.split(r", got |: got |\. This user registry file| \(|\. Did you mean", message)[0]
    message = re.sub(r"entry '[^']*'|entry \"[^\"]*\"", "entry E", message)
    message = re.sub(r"'[^']{30,}'|\"[^\"]{30,}\"", "'...'", message)
    return re.sub(r"\d+", "N", re.sub(r"fz\d+", "fzN", message))[:200]


def run(work: Path, outside: Path, cases: int, offline: int, seed: int) -> dict:
    import warnings

    from click.testing import CliRunner

    from zoo.cli.main import cli
    from zoo.registry.errors import ZooError

    state, stop, reg = build_world(work, outside)
    # Besides the work folder (temporary files included: TMPDIR points into it), the project and the
    # interpreter: this process's own /proc files (the libraries read its memory map and status) and the
    # kernel file the file lock reads to tell boots apart. No entry can name any of them.
    audit = Audit([work, ROOT, Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
                   *(Path(p) for p in sys.path if p), Path("/dev/null"), Path(f"/proc/{os.getpid()}"),
                   Path("/proc/sys/kernel/random/boot_id")])
    sys.addaudithook(audit)
    audit.active = True  # the audit itself must see a read of the canary
    (outside / "secret.md").read_text()
    audit.active = False
    audit_sees_reads = audit.violations == [str((outside / "secret.md").resolve())]
    audit.violations.clear()
    mutator = Mutator(seed, state.base, work, outside)
    runner = CliRunner()
    outcomes: Counter = Counter()
    distinct: set[str] = set()  # kinds of error the commands ended with
    skipped: set[str] = set()  # kinds of reason a registry file was skipped for
    failures: list[dict] = []
    warned = 0
    offline_requests = None
    started = time.perf_counter()
    for i in range(cases):
        if i == cases - offline:
            os.environ["ZOO_OFFLINE"] = "1"
            offline_requests = len(state.requests)
        arch = f"fz{i}"
        entry = mutator.entry(mutator.rng.choice(templates(state.base, work, f"{arch}.v1")), i)
        case = reg / f"case{i}.json"
        case.write_bytes(mutator.document(entry))
        # The whole listing every fifth case, else the listing filtered to this case (the catalogue is loaded
        # and checked the same way; only less is printed).
        listing = ["list", *(["--json"] if i % 2 else []), *([] if i % 5 == 0 else [arch])]
        for argv in (listing, ["info", arch], ["download", arch, "-q"]):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                audit.active = True
                result = runner.invoke(cli, argv, catch_exceptions=True)
                audit.active = False
            for w in caught:
                if w.category.__name__ == "RegistryWarning":
                    skipped.add(_normalise(str(w.message), work))
            warned += any(w.category.__name__ == "RegistryWarning" for w in caught)
            exc = result.exception
            if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, 1)):
                outcomes["ok" if not exc or exc.code == 0 else "exit 1"] += 1
            elif isinstance(exc, ZooError) and "\n" not in str(exc):
                outcomes[type(exc).__name__] += 1
                distinct.add(f"{type(exc).__name__}: {_normalise(str(exc), work)}")
            else:
                failures.append({"case": i, "argv": argv, "error": repr(exc)[:300],
                                 "traceback": "".join(traceback.format_exception(exc))[-1500:],
                                 "file": case.read_bytes()[:600].decode("utf-8", "replace")})
            if "Traceback" in result.output:
                failures.append({"case": i, "argv": argv, "output": result.output[-800:]})
        case.unlink()
    elapsed = time.perf_counter() - started
    requests_offline = len(state.requests) - offline_requests if offline_requests is not None else None
    stop()
    return {"audit_sees_reads": audit_sees_reads, "cases": cases, "offline_cases": offline, "commands": sum(outcomes.values()) + len(failures),
            "seconds": round(elapsed, 1), "outcomes": dict(outcomes), "distinct_errors": len(distinct),
            "distinct_skip_reasons": len(skipped),
            "files_with_registry_warning": warned, "requests": len(state.requests),
            "requests_while_offline": requests_offline, "violations": sorted(set(audit.violations))[:20],
            "failures": failures[:10], "failure_count": len(failures), "examples": sorted(distinct)[:400],
            "skip_reasons": sorted(skipped)[:1000]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--offline", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = args.work.resolve()
    (work / "work" / "tmp").mkdir(parents=True, exist_ok=True)
    # Everything the zoo and huggingface_hub write or read lives under WORK (set before they are imported).
    os.environ.update({"ZOO_HOME": str(work / "work" / "home"), "ZOO_CONFIG_DIR": str(work / "work" / "config"),
                       "HF_HOME": str(work / "work" / "hf"), "ZOO_REGISTRY": str(work / "work" / "registry"),
                       "HF_HUB_DISABLE_TELEMETRY": "1", "TMPDIR": str(work / "work" / "tmp")})
    tempfile.tempdir = None  # read TMPDIR again
    for name in ("ZOO_OFFLINE", "HF_HUB_OFFLINE", "ZOO_MIRROR", "ZOO_DEBUG"):
        os.environ.pop(name, None)
    report = run(work / "work", work / "outside", args.cases, args.offline, args.seed)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
