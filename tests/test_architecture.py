"""The layers' arrows point one way, and the catalogue path never imports torch.

registry <- zoo <- finetune <- cli: a module may import its own layer and the ones below, never above.
Checked on the source (AST), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
import re
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


# -- what a reader can rely on ------------------------------------------------------------------

# Modules that are tables of data (protobuf field numbers), not logic: exempt from the length rule.
DATA_TABLES = {"zoo/caffe/fields.py"}
MAX_FUNCTION_LINES, MAX_MODULE_LINES, MAX_PARAMETERS = 80, 500, 12


def _module_of(pkg: str, path: Path) -> str:
    return pkg if path.name == "__init__.py" else f"{pkg}.{path.stem}"


def test_no_module_imports_another_modules_private_names():
    """Shared machinery lives in underscore *modules* (zoo._io); an underscore *name* is its own module's."""
    bad = []
    for _folder, _rank_, path, pkg in _sources():
        own = _module_of(pkg, path)
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = dict(_imports_of(node, pkg))
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and module.get(node.lineno) != own:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name} from "
                               f"{module.get(node.lineno)}")
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def _imports_of(node: ast.ImportFrom, package: str) -> list[tuple[int, str]]:
    if node.level:
        base = package.split(".")
        base = base[: len(base) - node.level + 1]
        return [(node.lineno, ".".join(base + ([node.module] if node.module else [])))]
    return [(node.lineno, node.module or "")]


SHIPPED = ("registry", "zoo", "finetune", "cli", "model_cards")
# An absolute path that only exists on one machine: a home, a workspace, a temporary folder.
MACHINE_PATH = re.compile(r"(?<![\w.])(/(home|root|work|Users|tmp)/[\w.-]+|[A-Z]:\\\\Users)")


def test_no_machine_specific_paths_in_shipped_files():
    bad = []
    for folder in SHIPPED:
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or path.suffix not in (".py", ".md", ".json", ".txt", ".toml"):
                continue
            for number, line in enumerate(path.read_text("utf-8", errors="replace").splitlines(), 1):
                if MACHINE_PATH.search(line):
                    bad.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not bad, "machine-specific paths in shipped files:\n" + "\n".join(bad)


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


@pytest.mark.parametrize("folder", list(LAYERS))
def test_functions_and_modules_stay_small(folder):
    """No function over 80 lines, no module over 500 (data tables excepted), no signature over 12
    parameters: what one reader can hold in the head."""
    bad = []
    for src_folder, _rank_, path, _pkg in _sources():
        if src_folder != folder:
            continue
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text("utf-8")
        if rel not in DATA_TABLES and len(text.splitlines()) > MAX_MODULE_LINES:
            bad.append(f"{rel}: {len(text.splitlines())} lines (module limit {MAX_MODULE_LINES})")
        for fn in _functions(ast.parse(text)):
            length = fn.end_lineno - fn.lineno + 1
            if length > MAX_FUNCTION_LINES:
                bad.append(f"{rel}:{fn.lineno} {fn.name}: {length} lines (function limit {MAX_FUNCTION_LINES})")
            args = fn.args
            count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
            count -= 1 if args.args and args.args[0].arg in ("self", "cls") else 0
            if count > MAX_PARAMETERS:
                bad.append(f"{rel}:{fn.lineno} {fn.name}: {count} parameters (limit {MAX_PARAMETERS})")
    assert not bad, "\n".join(bad)
