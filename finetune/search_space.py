"""What a hyper-parameter search varies: the built-in spaces, the ``--space`` file, and a trial's config.

Owns: ``Param`` (one searched option: a float or int range, linear or log, or a list of choices, and
its grid points), ``SearchSpace`` (the params, the options a file fixes, and ``suggest(trial)``),
``builtin_space`` (the spaces that need no writing: per fine-tuning strategy, and from scratch with
the recipe's knobs and, for the ladder's MLPs, width and depth), ``read_space`` (a TOML or JSON file,
checked whole before any trial runs: an unknown parameter, an empty range or a wrong type is one
line naming the file, the key and the valid names) and ``trial_config`` (a trial's parameters applied
to the study's base ``FinetuneConfig``).

A parameter is named as the option it sets: a ``FinetuneConfig`` field (``lr``, ``epochs``, ``head``,
``dropout``, ``unfreeze_from``...) or a loop field (``batch_size``, ``weight_decay``...); from scratch,
``arch.NAME`` sets an option of the architecture's builder (``arch.dropout``), and ``arch.width`` /
``arch.depth`` the hidden layers of the MLPs. ``suggest`` needs only an object with optuna's
``suggest_*`` methods, so this module imports no optuna. May import ``zoo``; never ``zoo.cli``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, close_matches

from .config import FinetuneConfig

__all__ = ["Param", "SearchSpace", "builtin_space", "read_space", "trial_config", "valid_names", "KINDS", "FIELDS"]

KINDS = ("float", "int", "categorical")
FIELDS = ("type", "low", "high", "log", "step", "choices", "grid")  # what a parameter's table may hold
GRID_POINTS = 3  # grid values of a range that gives none: low, middle, high (geometric middle on a log scale)
MLP_BUILDERS = ("mlp_sigmoid", "mlp_relu")

# The value type of each option a search may set, for both kinds of run ("bool|str": either).
_LOOP = {"lr": "float", "weight_decay": "float", "epochs": "int", "warmup_epochs": "float", "batch_size": "int",
         "momentum": "float", "nesterov": "bool", "label_smoothing": "float", "min_lr_ratio": "float",
         "grad_clip": "float", "optimizer": "str", "schedule": "str"}
_FINETUNE = {"head": "str", "hidden": "int", "dropout": "float", "unfreeze_from": "str", "body_lr_scale": "float",
             "augment": "bool"}
# Options that do not apply to a strategy (cached features see no augmentation; nothing is unfrozen).
_NOT_FOR = {"linear": ("augment", "unfreeze_from", "body_lr_scale"), "partial": (), "full": ("unfreeze_from",)}
# Probabilities and the like: [low, high) bounds checked before any trial.
_BOUNDS = {"dropout": (0.0, 1.0), "label_smoothing": (0.0, 1.0), "momentum": (0.0, 1.0),
           "arch.dropout": (0.0, 1.0), "arch.input_dropout": (0.0, 1.0)}


@dataclass(frozen=True)
class Param:
    """One searched option.

    Attributes:
        name: the option (``lr``, ``batch_size``, ``arch.width``...).
        kind: ``float`` or ``int`` (a range from ``low`` to ``high``, on a log scale when ``log``, in
            steps of ``step`` when given) or ``categorical`` (one of ``choices``).
        grid: the values grid search tries (empty: every choice, or ``GRID_POINTS`` across the range).
    """

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    grid: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The value for this trial (``trial`` is an ``optuna.Trial``)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self) -> list[Any]:
        """The values grid search tries, in order."""
        if self.grid:
            return list(self.grid)
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            every = list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
            if len(every) <= 5:
                return every
        points = [self._at(i / (GRID_POINTS - 1)) for i in range(GRID_POINTS)]
        return sorted(set(points))

    def _at(self, t: float) -> float | int:
        """The point a fraction ``t`` along the range (rounded to its step, or to 3 significant digits)."""
        if self.log:
            value = math.exp(math.log(self.low) + t * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + t * (self.high - self.low)
        if t in (0.0, 1.0):
            value = self.low if t == 0.0 else self.high
        elif self.step:
            value = self.low + round((value - self.low) / self.step) * self.step
        elif self.kind == "float":
            value = float(f"{value:.3g}")
        return int(round(value)) if self.kind == "int" else value

    def describe(self) -> str:
        """``lr: log-uniform 1e-05..0.01``, ``head: one of linear, mlp``..."""
        if self.kind == "categorical":
            return f"{self.name}: one of {', '.join(map(str, self.choices))}"
        scale = "log-uniform" if self.log else "uniform"
        step = f" step {self.step:g}" if self.step else ""
        return f"{self.name}: {self.kind} {scale} {self.low:g}..{self.high:g}{step}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind}
        if self.kind == "categorical":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high, log=self.log)
            if self.step:
                out["step"] = self.step
        if self.grid:
            out["grid"] = list(self.grid)
        return out


@dataclass(frozen=True)
class SearchSpace:
    """The searched params, the options fixed for every trial, and where the space came from.

    ``arch_defaults`` are the architecture entry's builder options (from scratch), which ``arch.width``
    and ``arch.depth`` start from.
    """

    params: tuple[Param, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    source: str = "built-in"
    arch_defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Every param's value for ``trial``, in order."""
        return {p.name: p.suggest(trial) for p in self.params}

    def grid(self) -> dict[str, list[Any]]:
        """The grid search's values per param (for ``optuna.samplers.GridSampler``)."""
        return {p.name: p.grid_values() for p in self.params}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def describe(self) -> list[str]:
        lines = [p.describe() for p in self.params]
        return lines + [f"{k} = {v!r} (fixed)" for k, v in self.fixed.items()]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "params": {p.name: p.to_dict() for p in self.params}, "fixed": dict(self.fixed),
                "arch_defaults": dict(self.arch_defaults)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        params = tuple(_param(name, spec, data.get("source", "study.json")) for name, spec in data["params"].items())
        return cls(params, dict(data.get("fixed") or {}), data.get("source", "built-in"),
                   dict(data.get("arch_defaults") or {}))


# -- the names a search may set ------------------------------------------------------------------------


def arch_options(builder: str) -> dict[str, str]:
    """``arch.NAME`` -> value type for the options of a reference architecture's builder that hold one
    number or flag; the MLPs' ``hidden`` becomes ``arch.width`` and ``arch.depth``."""
    from zoo.archs import BUILDERS

    skip = {"in_chans", "num_classes", "image_size", "small_input"} | ({"hidden"} if builder in MLP_BUILDERS else set())
    out = {}
    for name, p in inspect.signature(BUILDERS[builder]).parameters.items():
        if name in skip:
            continue
        kind = {bool: "bool", int: "int", float: "float"}.get(type(p.default))
        if kind:
            out[f"arch.{name}"] = kind
    if builder in MLP_BUILDERS:
        out.update({"arch.width": "int", "arch.depth": "int"})
    return out


def valid_names(kind: str, *, strategy: str = "linear", builder: str | None = None) -> dict[str, str]:
    """The options a search may set, with their value types: for ``kind`` ``finetune`` (per ``strategy``)
    or ``scratch`` (the loop's options, ``augment`` by name, and ``builder``'s ``arch.*`` options)."""
    if kind == "scratch":
        names = {**_LOOP, "augment": "bool|str", **(arch_options(builder) if builder else {})}
    else:
        names = {**_LOOP, **{k: v for k, v in _FINETUNE.items() if k not in _NOT_FOR.get(strategy, ())}}
    return dict(sorted(names.items()))


# -- the built-in spaces -------------------------------------------------------------------------------


def builtin_space(kind: str, *, strategy: str = "linear", builder: str | None = None,
                  recipe: dict[str, Any] | None = None, layers: list[str] | None = None,
                  arch_defaults: dict[str, Any] | None = None, n_train: int | None = None) -> SearchSpace:
    """The space ``zoo tune`` searches when no ``--space`` file is given.

    Args:
        kind: ``finetune`` or ``scratch``.
        strategy: fine-tuning: ``linear`` (learning rate, weight decay, epochs), ``partial`` and
            ``full`` (also the discriminative-LR factor, head, dropout, label smoothing,
            augmentation, batch size; ``partial`` the unfreeze point among ``layers``).
        builder: from scratch: the architecture (its recipe's knobs, and its own options: MLP width
            and depth, dropout...).
        recipe: from scratch: the recipe's loop options (the learning rate's range is centred on its),
            and the base's ``optimizer``.
        layers: ``partial``: candidate first layers to unfreeze.
        arch_defaults: from scratch: the entry's builder options.
        n_train: from scratch on a folder, the number of training images: each run there chooses its
            schedule from the data, so the rate's range suits the base's optimizer, the batch sizes
            ``n_train``, and the epochs are left to each run (early stopping).
    """
    if kind == "scratch":
        return _scratch_space(builder or "", recipe or {}, arch_defaults or {}, n_train)
    P = Param
    params = [P("lr", "float", 1e-4, 1e-1, log=True), P("weight_decay", "float", 1e-6, 1e-1, log=True),
              P("epochs", "int", 5, 40, step=5)]
    if strategy != "linear":
        params = [P("lr", "float", 1e-5, 1e-2, log=True), P("weight_decay", "float", 1e-6, 1e-1, log=True),
                  P("epochs", "int", 3, 15), P("body_lr_scale", "float", 1e-3 if strategy == "full" else 1e-2, 1.0,
                                               log=True),
                  P("head", "categorical", choices=("linear", "mlp")), P("dropout", "float", 0.0, 0.5),
                  P("label_smoothing", "float", 0.0, 0.2), P("augment", "categorical", choices=(True, False)),
                  P("batch_size", "categorical", choices=(16, 32, 64))]
        if strategy == "partial" and layers:
            params.append(P("unfreeze_from", "categorical", choices=tuple(layers)))
    return SearchSpace(tuple(params), source=f"built-in ({strategy})")


def _scratch_space(builder: str, recipe: dict[str, Any], arch_defaults: dict[str, Any],
                   n_train: int | None = None) -> SearchSpace:
    P = Param
    sgd = recipe.get("optimizer") == "sgd"
    if n_train is not None:  # a folder: around what a run with no flags would choose there
        from .defaults import BATCH_RANGE, choose_batch_size

        batch = choose_batch_size(n_train).value
        sizes = tuple(b for b in (batch // 2, batch, batch * 2) if BATCH_RANGE[0] <= b <= BATCH_RANGE[1])
        # Adaptive optimizers from random weights: the LR sweeps on the folders of BENCHMARKS.md (#13)
        # found 1e-4 (ResNet-18, 96 photos) to 1e-2 (LeNet, 400 digits); SGD needs ten to a hundred times more.
        params = [P("lr", "float", 1e-3, 1.0, log=True) if sgd else P("lr", "float", 3e-5, 3e-2, log=True),
                  P("weight_decay", "float", 1e-6, 1e-1, log=True), P("batch_size", "categorical", choices=sizes),
                  P("label_smoothing", "float", 0.0, 0.2)]
    else:
        lr, epochs = float(recipe.get("lr") or 1e-3), int(recipe.get("epochs") or 10)
        params = [P("lr", "float", lr / 10, min(1.0, lr * 10), log=True),
                  P("weight_decay", "float", 1e-6, 1e-2, log=True), P("epochs", "int", max(1, epochs // 2), 2 * epochs),
                  P("batch_size", "categorical", choices=(64, 128, 256)), P("label_smoothing", "float", 0.0, 0.2)]
    if sgd:
        params.append(P("momentum", "float", 0.8, 0.99))
    flat = builder in ("softmax", *MLP_BUILDERS)
    params.append(P("augment", "categorical", choices=("none", "flip") if flat else ("none", "flip", "crop_flip")))
    if builder in MLP_BUILDERS:
        params += [P("arch.width", "int", 64, 1024, log=True), P("arch.depth", "int", 1, 3)]
    if builder == "mlp_relu":
        params += [P("arch.dropout", "float", 0.0, 0.6), P("arch.input_dropout", "float", 0.0, 0.3)]
    elif builder == "lenet":
        params += [P("arch.hidden", "int", 64, 512, log=True), P("arch.dropout", "float", 0.0, 0.5)]
    elif builder == "googlenet":
        params.append(P("arch.dropout", "float", 0.0, 0.5))
    return SearchSpace(tuple(params), source=f"built-in (scratch, {builder})", arch_defaults=dict(arch_defaults))


# -- the --space file ------------------------------------------------------------------------------------


def read_space(path: str | Path, names: dict[str, str]) -> SearchSpace:
    """A search space from a TOML or JSON file, checked whole.

    Each top-level key names an option (one of ``names``). A table (or JSON object) is a searched
    parameter: ``{low, high}`` (ints: an int range; floats: a float range), optional ``log = true``,
    ``step``, ``type`` (float, int, categorical), ``choices`` (categorical), ``grid`` (the values grid
    search tries). A list is a categorical parameter; a single value fixes the option for every trial::

        lr = { low = 1e-4, high = 0.1, log = true }
        epochs = { low = 5, high = 30, step = 5 }
        head = ["linear", "mlp"]
        batch_size = 64
        arch.width = { low = 64, high = 1024, log = true }    # from scratch: an [arch] table works too

    Raises:
        ConfigError: the file cannot be read or parsed, is empty, names an unknown option, gives an
            empty range, a wrong type or an unknown field: one line naming the file, the key, what is
            wrong and the valid names (``option`` and ``valid`` carry the key and the names).
    """
    path = Path(path).expanduser()
    data = _load_file(path)
    if isinstance(data.get("arch"), dict):  # TOML reads arch.width = ... (or an [arch] table) as a table
        data = {**{k: v for k, v in data.items() if k != "arch"}, **{f"arch.{k}": v for k, v in data["arch"].items()}}
    if not data:
        raise ConfigError(f"space file {path} defines no parameter; give at least one, e.g. "
                          "lr = {{ low = 1e-4, high = 0.1, log = true }}.", valid=list(names))
    params, fixed = [], {}
    for key, spec in data.items():
        if key not in names and key in {**_LOOP, **_FINETUNE}:
            raise ConfigError(f"space file {path}: parameter {key!r} does not apply to this search (a linear probe "
                              f"trains on cached features: no augmentation, nothing unfrozen; from scratch there is "
                              f"no new head); valid names: {', '.join(names)}.", option=key, valid=list(names))
        if key not in names:
            hints = close_matches(key, names)
            hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
            raise ConfigError(f"space file {path}: unknown parameter {key!r}{hint}; valid names: {', '.join(names)}.",
                              option=key, valid=list(names))
        if isinstance(spec, (dict, list)):
            param = _param(key, spec, str(path))
            _check_values(param, names[key], str(path))
            params.append(param)
        else:
            _check_value(key, spec, names[key], str(path), "its value")
            fixed[key] = spec
    return SearchSpace(tuple(params), fixed, source=str(path))


def _load_file(path: Path) -> dict[str, Any]:
    if path.suffix.lower() not in (".toml", ".json"):
        raise ConfigError(f"space file {path}: unknown format {path.suffix or '(no suffix)'!r}; write TOML (.toml) "
                          "or JSON (.json).", option="space")
    try:
        text = path.read_text("utf-8")
    except OSError as err:
        raise ConfigError(f"space file {path} cannot be read ({err.strerror or err}); check the path.",
                          option="space") from err
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as err:
        raise ConfigError(f"space file {path} is not valid {path.suffix[1:].upper()}: {err}.", option="space") from err
    if not isinstance(data, dict):
        raise ConfigError(f"space file {path} must hold a table (a JSON object) of parameters, got "
                          f"{type(data).__name__}.", option="space")
    return data


def _param(key: str, spec: dict[str, Any] | list[Any], where: str) -> Param:
    """One parameter's spec (a table, or a list of choices) as a ``Param``, its shape checked."""
    def fail(what: str, valid: list[str] | tuple[str, ...] = ()) -> ConfigError:
        return ConfigError(f"space file {where}: parameter {key!r}: {what}.", option=key, valid=list(valid))

    if isinstance(spec, list):
        spec = {"choices": spec}
    unknown = sorted(set(spec) - set(FIELDS))
    if unknown:
        raise fail(f"unknown field(s) {', '.join(unknown)}; valid fields: {', '.join(FIELDS)}", FIELDS)
    kind = spec.get("type") or ("categorical" if "choices" in spec else
                                "int" if _is_int(spec.get("low")) and _is_int(spec.get("high")) else "float")
    if kind not in KINDS:
        raise fail(f"type {kind!r} is not one of {', '.join(KINDS)}", KINDS)
    grid = spec.get("grid", [])
    if not isinstance(grid, list):
        raise fail(f"grid must be a list of values, got {type(grid).__name__}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list):
            raise fail(f"choices must be a list of values, got {type(choices).__name__}")
        if not choices:
            raise fail("empty range: choices is an empty list; give at least one value")
        extra = sorted(set(spec) - {"type", "choices", "grid"})
        if extra:
            raise fail(f"field(s) {', '.join(extra)} apply to ranges, not to choices")
        return Param(key, kind, choices=tuple(choices), grid=tuple(grid))
    return _range(key, kind, spec, grid, fail)


def _range(key: str, kind: str, spec: dict[str, Any], grid: list[Any], fail: Any) -> Param:
    if "choices" in spec:
        raise fail(f"choices apply to type categorical, not {kind}")
    for bound in ("low", "high"):
        value = spec.get(bound)
        if value is None:
            raise fail(f"a {kind} range needs {bound}; give low and high")
        if not _is_number(value) or (kind == "int" and not _is_int(value)):
            raise fail(f"wrong type: {bound} must be {'an integer' if kind == 'int' else 'a number'}, got {value!r}")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise fail(f"wrong type: log must be true or false, got {log!r}")
    if step is not None and (not _is_number(step) or step <= 0 or (kind == "int" and not _is_int(step))):
        raise fail(f"wrong type: step must be a positive {'integer' if kind == 'int' else 'number'}, got {step!r}")
    if low > high:
        raise fail(f"empty range: low {low} is above high {high}; give low < high")
    if low == high:
        raise fail(f"empty range: low and high are both {low}; to fix the option, write {key} = {low}")
    if log and low <= 0:
        raise fail(f"a log range needs low > 0, got {low}; raise low or drop log")
    if log and step is not None:
        raise fail("step and log cannot be combined (optuna samples one or the other)")
    return Param(key, kind, low, high, log=log, step=step, grid=tuple(grid))


def _check_values(param: Param, kind: str, where: str) -> None:
    """The param's values fit the option's type (and bounds): every choice, grid value and bound."""
    if param.kind == "categorical":
        values = list(param.choices)
    else:
        values = [param.low, param.high]
        if param.kind == "float" and kind == "int":
            raise ConfigError(f"space file {where}: parameter {param.name!r}: wrong type: {param.name} takes "
                              "integers, so give an int range (integer low and high) or choices.", option=param.name)
    for value in values + list(param.grid):
        _check_value(param.name, value, kind, where, "a value")


def _check_value(key: str, value: Any, kind: str, where: str, what: str) -> None:
    ok = {"float": _is_number(value), "int": _is_int(value), "bool": isinstance(value, bool),
          "str": isinstance(value, str), "bool|str": isinstance(value, (bool, str))}
    if not any(ok[k] for k in kind.split("|")):
        words = {"float": "a number", "int": "an integer", "bool": "true or false", "str": "a string",
                 "bool|str": "true, false or a name"}
        raise ConfigError(f"space file {where}: parameter {key!r}: wrong type: {what} {value!r} is not "
                          f"{words[kind]} ({key} takes {words[kind]}).", option=key)
    bounds = _BOUNDS.get(key)
    if bounds and not bounds[0] <= value < bounds[1]:
        raise ConfigError(f"space file {where}: parameter {key!r}: {what} {value!r} is outside "
                          f"[{bounds[0]}, {bounds[1]}); keep it in that interval.", option=key)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- a trial's config ------------------------------------------------------------------------------------


def trial_config(base: FinetuneConfig, space: SearchSpace, params: dict[str, Any]) -> FinetuneConfig:
    """``base`` with the space's fixed options and a trial's ``params``: options by name, ``arch.*``
    into ``arch_options`` (``arch.width`` x ``arch.depth`` as the MLP's ``hidden`` layers).

    Raises:
        ConfigError: a value the config refuses (the message names the option).
    """
    values = {**space.fixed, **params}
    options = {k: v for k, v in values.items() if not k.startswith("arch.")}
    arch = {k[len("arch."):]: v for k, v in values.items() if k.startswith("arch.")}
    config = base.with_options(**options) if options else base
    if not arch:
        return config
    if "width" in arch or "depth" in arch:
        hidden = space.arch_defaults.get("hidden", 625)
        widths = [hidden] if isinstance(hidden, int) else list(hidden)
        width, depth = int(arch.pop("width", widths[0])), int(arch.pop("depth", len(widths)))
        arch["hidden"] = [width] * depth
    return dataclasses.replace(config, arch_options={**(config.arch_options or {}), **arch})


def check_space(base: FinetuneConfig, space: SearchSpace) -> None:
    """Build the config of every extreme of the space (each bound and choice, one param at a time),
    so a value the run would refuse fails now, before any trial, naming the space and the key.

    Raises:
        ConfigError: ``space file F: parameter K = V: <why>``.
    """
    first = {p.name: (p.choices[0] if p.kind == "categorical" else p.low) for p in space.params}
    probes = [(None, None, first)]
    for p in space.params:
        for value in (p.choices if p.kind == "categorical" else (p.low, p.high)) + p.grid:
            probes.append((p.name, value, {**first, p.name: value}))
    for key, value, params in probes:
        try:
            trial_config(base, space, params)
        except ConfigError as err:
            where = f"parameter {key!r} = {value!r}" if key else "its first point"
            raise ConfigError(f"space {space.source}: {where}: {err}", option=key or err.option,
                              valid=err.valid) from err
