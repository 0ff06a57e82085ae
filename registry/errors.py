"""The zoo's error hierarchy, rooted here so the catalogue can raise it without importing torch.

Owns: ``ZooError`` and the errors the catalogue raises. Every error names the thing, says what is
wrong and says what to do. Must not import anything outside the standard library.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ZooError",
    "UnknownModelError",
    "RegistryError",
    "RegistryWarning",
    "close_matches",
    "shown",
]


def shown(text: str, limit: int = 200) -> str:
    """``text`` as it may appear in a one-line message: as is when printable, else its repr; cut to ``limit``."""
    out = text if text.isprintable() else repr(text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


class ZooError(Exception):
    """Base of every error the zoo raises on purpose."""

    exit_code: int = 1

    def __str__(self) -> str:  # KeyError subclasses would otherwise repr() the message
        return str(self.args[0]) if self.args else self.__class__.__name__


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` names from ``candidates`` that look like ``name`` (difflib)."""
    pool = list(candidates)
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.6)
    if not found:
        # "resnet5" should still suggest "resnet50.*": fall back to prefix matches.
        found = [c for c in pool if c.startswith(name)][:n]
    return found


class UnknownModelError(ZooError, KeyError):
    """No registry entry has this name or alias.

    Attributes:
        name: the name that was asked for.
        suggestions: close matches among known names.
    """

    def __init__(self, name: str, suggestions: list[str] | None = None, skipped: list[str] | None = None):
        self.name = name
        self.suggestions = suggestions or []
        self.skipped = skipped or []  # user registry files that could not be loaded
        hint = f" Did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        broken = (f" {len(self.skipped)} user registry file(s) could not be loaded and may define it "
                  f"({', '.join(shown(p) for p in self.skipped[:3])}): `zoo list` says why." if self.skipped else "")
        super().__init__(
            f"Unknown model {shown(name, 100)!r}.{hint}{broken} Run `zoo list` to see every entry "
            f"(`zoo list --source all` includes the full torchvision and timm catalogues)."
        )


class RegistryError(ZooError, ValueError):
    """A registry file or entry is malformed.

    Attributes:
        path: the file that holds the bad entry.
        entry: the entry's name (or index when it has none).
        field: the field that is wrong.
    """

    def __init__(self, message: str, *, path: str | None = None, entry: str | None = None,
                 field: str | None = None):
        self.path, self.entry, self.field = path, entry, field
        where = ", ".join(
            part for part in (
                f"file {shown(path)}" if path else "",
                f"entry {shown(entry, 100)!r}" if entry else "",
                f"field {shown(field, 100)!r}" if field else "",
            ) if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class RegistryWarning(UserWarning):
    """A user registry file was skipped (it is malformed or takes a built-in name); the rest still loads.

    Attributes:
        path: the file that was skipped.
        error: the ``RegistryError`` that says why.
    """

    def __init__(self, error: RegistryError):
        self.path, self.error = error.path, error
        super().__init__(f"{str(error).rstrip('.')}. This user registry file was skipped: fix it or take it out of "
                         "ZOO_REGISTRY / the config folder (the rest of the catalogue is loaded).")
