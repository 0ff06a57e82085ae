"""The layers' arrows point one way, and the catalogue path never imports torch.

registry <- zoo <- finetune <- cli: a module may import its own layer and the ones below, never above.
Checked on the source (AST), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> (its import name, its rank); a module may import only names of rank <= its own
LAYERS = {"registry": ("zoo.registry", 0), "zoo": ("zoo", 1), "finetune": ("zoo.finetune", 2), "cli": ("zoo.cli", 3)}
HEAVY = ("torch", "torchvision", "timm", "PIL", "numpy")


def _rank(module: str) -> int | None:
    for name, rank in sorted(LAYERS.values(), key=lambda v: -len(v[0])):
        if module == name or module.startswith(name + "."):
            return rank
    return None


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text("utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                found.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
            else:
                found.append((node.lineno, node.module or ""))
    return found


def _sources():
    for folder, (package, rank) in LAYERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            sub = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = [p for p in sub if p != "__init__"]
            pkg = ".".join([package, *parts[:-1]]) if path.name != "__init__.py" else ".".join([package, *parts])
            yield folder, rank, path, pkg


@pytest.mark.parametrize("folder", list(LAYERS))
def test_no_upward_imports(folder):
    bad = []
    for src_folder, rank, path, pkg in _sources():
        if src_folder != folder:
            continue
        for line, module in _imports(path, pkg):
            target = _rank(module)
            if target is not None and target > rank:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_registry_is_stdlib_only():
    bad = []
    for folder, _rank_, path, pkg in _sources():
        if folder != "registry":
            continue
        for line, module in _imports(path, pkg):
            if module.split(".")[0] in HEAVY:
                # list_external imports torchvision/timm inside the function, on request only
                if path.name == "catalog.py" and module.split(".")[0] in ("torchvision", "timm"):
                    continue
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("argv", [
    ["--help"], ["list"], ["info", "bvlc_googlenet"], ["card", "bvlc_googlenet"], ["list", "--json"],
    ["list", "--source", "caffe"],
])
def test_catalogue_commands_import_no_torch(argv):
    code = (
        "import sys\n"
        "from zoo.cli.main import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


def test_list_models_imports_no_torch():
    code = ("import sys, zoo\nassert zoo.list_models()\n"
            f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\nassert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
