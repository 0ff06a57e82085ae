"""What an entry may ask of a library and of the file system: the rules that keep every byte verified.

Owns: the allow-list of model options (``architecture.kwargs``) per library, the builder-name rule, the
rule for the paths an entry names (its card, a label file, a packaged source: relative, no ``..``), the
rule for text (no control characters), and ``confine``, which resolves such a path and checks that it
stays inside its folder, symlinks included. Standard library only; imports nothing but ``errors``.

Why an allow-list and not a deny-list: timm's ``create_model`` reads ``checkpoint_path``, the files and
URLs of ``pretrained_cfg``/``pretrained_cfg_overlay`` and ``hf-hub:``/``local-dir:`` model names, and
torchvision's ``weights_backbone`` downloads weights; none of those bytes would pass the entry's checksum.
New ways to reach a file appear with each library release, so an entry may pass only options known to be
plain model settings, with plain values.

The check functions return a one-line problem (``None`` when the value is fine) so that the schema can
name the file, entry and field; ``confine`` raises ``RegistryError`` itself.
"""

from __future__ import annotations

import math
import re
import unicodedata
from pathlib import Path
from typing import Any

from .errors import RegistryError

__all__ = [
    "MODEL_OPTIONS",
    "REFUSED_OPTIONS",
    "builder_problem",
    "confine",
    "option_problem",
    "relative_path_problem",
    "text_problem",
    "brief",
]

# Plain model settings each library's builder takes. A value may be a boolean, a finite number, a short
# word (letters, digits, '_', '-', '.') or a short list of numbers; never a path, URL or mapping.
MODEL_OPTIONS: dict[str, frozenset[str]] = {
    "torchvision": frozenset({
        "aux_logits", "init_weights", "transform_input", "dropout", "attention_dropout",
        "stochastic_depth_prob", "width_mult", "zero_init_residual", "replace_stride_with_dilation", "groups",
        "width_per_group", "image_size", "input_size",
    }),
    "timm": frozenset({
        "drop_rate", "drop_path_rate", "drop_block_rate", "proj_drop_rate", "attn_drop_rate", "pos_drop_rate",
        "patch_drop_rate", "global_pool", "img_size", "class_token", "no_embed_class", "reg_tokens",
        "dynamic_img_size", "dynamic_img_pad", "output_stride", "act_layer", "norm_layer", "init_values",
        "layer_scale_init_value", "qkv_bias", "pre_norm", "fc_norm", "exportable", "scriptable", "no_jit",
    }),
    # zoo/archs.py's reference architectures
    "zoo": frozenset({
        "image_size", "hidden", "dropout", "input_dropout", "channels", "batchnorm", "small_input",
        "zero_init_residual", "act",
    }),
    # the input shape a Caffe graph is converted for
    "caffe": frozenset({"input"}),
    "run": frozenset(),
}

# Options that would make a library read bytes no checksum covers, or that the entry sets elsewhere.
REFUSED_OPTIONS: dict[str, str] = {
    "checkpoint_path": "makes timm load a weights file that no checksum covers",
    "pretrained": "the zoo loads pretrained weights itself, from the entry's verified files",
    "pretrained_cfg": "makes timm fetch weights from the config's own sources, unverified",
    "pretrained_cfg_overlay": "can point timm at a weights file or URL that no checksum covers",
    "weights": "the zoo loads weights itself, from the entry's verified files",
    "weights_backbone": "makes torchvision download backbone weights that no checksum covers",
    "cache_dir": "makes the library read and write files outside the zoo's cache",
    "model_dir": "makes the library read and write files outside the zoo's cache",
    "file": "names a file the library would read unverified",
    "url": "names a URL the library would fetch unverified",
    "num_classes": "comes from head.num_classes",
    "in_chans": "comes from preprocessing.input_size",
}
# Words that mark an unknown option as one that reaches files or weights (said so in its error).
_FILE_WORDS = ("path", "file", "url", "uri", "dir", "checkpoint", "cfg", "weights", "pretrained", "hub", "cache")

_WORD = re.compile(r"^[A-Za-z0-9_.\-]{0,64}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
# timm also builds from a full pretrained name, ``arch.tag``, as create_model does (the tag picks the config)
_TIMM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}\.[A-Za-z0-9][A-Za-z0-9_\-]{0,99}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_MAX_OPTION_INT = 2**31
_MAX_OPTION_FLOAT = 1e9
_MAX_LIST = 16
_MAX_PATH = 1024
# Bidirectional-text controls reorder what a terminal shows (the "Trojan Source" trick); never in a registry.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def brief(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, so that an error stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def text_problem(value: str, *, multiline: bool = True) -> str | None:
    """Why ``value`` cannot stand in a registry (control characters, NUL, bidi controls, lone surrogates that
    no terminal can print), or None."""
    allowed = "\n\t" if multiline else ""
    for ch in value:
        if (unicodedata.category(ch) in ("Cc", "Cs") and ch not in allowed) or ch in _BIDI:
            return f"holds the control character {ch!r}; registry text must be printable"
    return None


def _plain_number(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) <= _MAX_OPTION_INT
    return isinstance(value, float) and math.isfinite(value) and abs(value) <= _MAX_OPTION_FLOAT


def option_problem(library: str, key: str, value: Any) -> str | None:
    """Why ``key=value`` may not be passed to ``library``'s builder, or None when it may.

    Example:
        >>> option_problem("timm", "checkpoint_path", "w.pth")
        'makes timm load a weights file that no checksum covers'
        >>> option_problem("timm", "drop_rate", 0.1) is None
        True
    """
    if key in REFUSED_OPTIONS:
        return REFUSED_OPTIONS[key]
    allowed = MODEL_OPTIONS.get(library, frozenset())
    if key not in allowed:
        if any(word in key.lower() for word in _FILE_WORDS):
            return "names a file, URL or weights the library would read unverified; it is not allowed"
        listed = ", ".join(sorted(allowed)) or "none"
        return f"is not an allowed {library} model option (allowed: {listed})"
    if isinstance(value, str):
        if not _WORD.match(value) or ".." in value:
            return (f"must be a short plain word (letters, digits, '_', '-', '.'; no path separator, scheme "
                    f"or '..'), got {brief(value)}")
        return None
    if isinstance(value, list):
        if len(value) <= _MAX_LIST and all(_plain_number(v) for v in value):
            return None
        return f"must be a list of at most {_MAX_LIST} plain numbers, got {brief(value)}"
    if _plain_number(value):
        return None
    return f"must be a boolean, a number, a short word or a list of numbers, got {brief(value)}"


def builder_problem(library: str, builder: str) -> str | None:
    """Why ``builder`` cannot name a network of ``library``, or None.

    Library builders are plain model names (timm's may carry a pretrained tag, ``arch.tag``): ``hf-hub:org/repo``, ``local-dir:/x`` and paths are refused,
    because timm would fetch or read their weights and config itself. A ``run`` builder is the run's folder.
    """
    if library == "run":
        if _SCHEME.match(builder) or not builder.strip():
            return f"must be the run's folder, not a URL or scheme, got {brief(builder)}"
        return text_problem(builder, multiline=False)
    if not (_IDENTIFIER.match(builder) or (library == "timm" and _TIMM_NAME.match(builder))):
        return (f"must be {library}'s plain model name (letters, digits, '_'; no scheme such as 'hf-hub:' or "
                f"'local-dir:', no path), got {brief(builder)}")
    return None


def relative_path_problem(value: str) -> str | None:
    """Why ``value`` is not a plain relative path inside its folder (``a/b.md``), or None."""
    if not value or len(value) > _MAX_PATH:
        return f"must be a relative path of 1 to {_MAX_PATH} characters"
    problem = text_problem(value, multiline=False)
    if problem:
        return problem
    if value.startswith(("/", "~")) or "\\" in value or ":" in value:
        return f"must be a path relative to its folder (no leading '/' or '~', no '\\', no scheme), got {brief(value)}"
    if any(part in ("", ".", "..") for part in value.split("/")):
        return f"must not hold '..', '.' or empty parts, got {brief(value)}"
    return None


def confine(root: Path, relative: str, *, path: str | None = None, entry: str | None = None,
            field: str | None = None) -> Path:
    """The file ``relative`` names inside ``root``, resolved, after checking that it stays inside.

    Args:
        root: the folder the path is relative to (the package folder, or a user registry file's folder).
        relative: the path the entry gives.
        path, entry, field: named in the error.

    Returns:
        The resolved path (symlinks followed), inside ``root``'s resolved path.

    Raises:
        RegistryError: the path is absolute, holds ``..``, or leads outside ``root`` (through a symlink).
    """
    problem = relative_path_problem(relative)
    if problem:
        raise RegistryError(problem, path=path, entry=entry, field=field)
    base = root.resolve()
    try:
        target = (base / relative).resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop
        raise RegistryError(f"{brief(relative)} cannot be resolved ({err})", path=path, entry=entry,
                            field=field) from err
    if not target.is_relative_to(base):
        raise RegistryError(f"{brief(relative)} leads outside {base} (through a symlink); keep the file inside "
                            "that folder", path=path, entry=entry, field=field)
    return target
