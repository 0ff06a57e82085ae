"""The protobuf text format (``.prototxt``) for Caffe nets, parsed by hand against the same schema.

Owns: a tokenizer (identifiers, numbers, quoted strings with C escapes, ``#`` comments) and a parser
for nested messages (``name { ... }`` or ``name: { ... }`` or ``< ... >``), repeated fields (a field
given several times, or ``[a, b]`` lists), strings, numbers, booleans and enum names. Fields that the
schema does not list (fillers, ``param { lr_mult }``...) are parsed and skipped, as training-only
details. The result is a ``proto.Message`` and, for a net, a ``proto.NetSpec`` identical to what the
binary reader gives. Imports numpy and ``zoo.errors``; must not import torch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import CaffeError
from .proto import ENUMS, SCHEMA, TEXT_ONLY, Message, NetSpec, net_from_message

__all__ = ["parse_prototxt", "read_prototxt", "parse_text_message"]

_TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<num>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)[fF]?
            |[-+]?(?:inf|infinity|nan)\b)
  | (?P<id>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}<>:\[\],;])
""", re.VERBOSE | re.IGNORECASE)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b",
            "f": "\f", "v": "\v", "?": "?"}


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(chr(int(m.group(0), 8)))
            i += 1 + len(m.group(0))
        elif nxt in "xX":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            if not m:
                raise ValueError("\\x needs hex digits")
            out.append(chr(int(m.group(0), 16)))
            i += 2 + len(m.group(0))
        else:
            raise ValueError(f"unknown escape \\{nxt}")
    return "".join(out)


class _Parser:
    def __init__(self, text: str, path: str):
        self.path = path
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, line)
        line, pos = 1, 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise self.error(f"unexpected character {text[pos]!r}", line)
            kind = m.lastgroup
            if kind != "ws":
                self.tokens.append((kind, m.group(0), line))
            line += m.group(0).count("\n")
            pos = m.end()
        self.i = 0

    def error(self, what: str, line: int | None = None) -> CaffeError:
        if line is None:
            line = self.tokens[self.i][2] if self.i < len(self.tokens) else (
                self.tokens[-1][2] if self.tokens else 1)
        return CaffeError(f"{self.path}, line {line}: {what}. Fix the prototxt (it must be protobuf text "
                          "format, as Caffe writes it).")

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end of file")
        self.i += 1
        return tok

    def message(self, type_: str | None, close: str | None, depth: int = 0) -> Message:
        if depth > 32:
            raise self.error("messages nested too deeply")
        schema = {spec[0]: spec for spec in SCHEMA.get(type_, {}).values()} if type_ else {}
        schema.update(TEXT_ONLY.get(type_, {}) if type_ else {})
        msg = Message(type_ or "")
        while True:
            tok = self.peek()
            if tok is None:
                if close is not None:
                    raise self.error(f"missing '{close}' at the end of the file")
                return msg
            if tok[0] == "punct" and tok[1] == close:
                self.i += 1
                return msg
            if tok[0] == "punct" and tok[1] in ",;":
                self.i += 1
                continue
            kind, name, line = self.take()
            if kind != "id":
                raise self.error(f"expected a field name, got {name!r}", line)
            spec = schema.get(name)
            sub = spec[3] if spec and spec[1] == "message" else None
            nxt = self.peek()
            colon = bool(nxt and nxt[1] == ":")
            if colon:
                self.i += 1
                nxt = self.peek()
            if nxt and nxt[1] in ("{", "<"):
                self.i += 1
                if spec is not None and spec[1] != "message":
                    raise self.error(f"{name} is a value, not a message", line)
                value = self.message(sub, "}" if nxt[1] == "{" else ">", depth + 1)
                if spec is not None:
                    msg.add(name, value)
                continue
            if not colon:
                raise self.error(f"expected ':' or '{{' after {name}", line)
            if nxt and nxt[1] == "[":
                self.i += 1
                while True:
                    tok = self.take()
                    if tok[1] == "]":
                        break
                    if tok[1] == ",":
                        continue
                    self.i -= 1
                    self._value(msg, name, spec)
                continue
            self._value(msg, name, spec)

    def _value(self, msg: Message, name: str, spec) -> None:
        kind, text, line = self.take()
        if kind == "str":
            parts = [text]
            while self.peek() and self.peek()[0] == "str":  # adjacent strings concatenate
                parts.append(self.take()[1])
            try:
                value: Any = "".join(_unescape(p[1:-1]) for p in parts)
            except (ValueError, IndexError) as err:
                raise self.error(f"bad string escape in {name} ({err})", line) from None
        elif kind in ("num", "id"):
            value = text
        else:
            raise self.error(f"expected a value for {name}, got {text!r}", line)
        if spec is None:
            return
        fkind, enum = spec[1], spec[3]
        try:
            msg.add(name, _convert(fkind, enum, kind, value))
        except ValueError as err:
            raise self.error(f"{name}: {err}", line) from None


def _convert(fkind: str, enum: str | None, tkind: str, value: str) -> Any:
    if fkind == "string":
        if tkind != "str":
            raise ValueError(f"expected a quoted string, got {value}")
        return value
    if tkind == "str":
        raise ValueError(f"expected a {fkind}, got a string")
    if fkind == "message":
        raise ValueError("expected a { ... } block")
    if fkind == "bool":
        low = value.lower()
        if low in ("true", "t", "1"):
            return True
        if low in ("false", "f", "0"):
            return False
        raise ValueError(f"expected true or false, got {value}")
    if fkind == "enum":
        if tkind == "id":
            table = ENUMS.get(enum or "Engine", {})
            if value not in table:
                raise ValueError(f"unknown value {value} (known: {', '.join(table)})")
            return table[value]
        return int(value)
    if fkind in ("float", "double"):
        return float(value.rstrip("fF") if not value.lower().endswith("inf") else value)
    if tkind != "num":
        raise ValueError(f"expected a number, got {value}")
    try:
        number = int(value, 0)
    except ValueError:
        raise ValueError(f"expected an integer, got {value}") from None
    if fkind == "uint32" and not 0 <= number < 2**32:
        raise ValueError(f"{number} is out of range for an unsigned 32-bit field")
    return number


def parse_text_message(text: str, type_: str, path: str = "<text>") -> Message:
    """Parse protobuf text format as message ``type_`` of the Caffe schema.

    Raises:
        CaffeError: naming the file, the line and what is wrong.
    """
    return _Parser(text, path).message(type_, None)


def parse_prototxt(text: str, path: str = "<text>") -> NetSpec:
    """Parse a net definition (``deploy.prototxt``) into a ``NetSpec``.

    Raises:
        CaffeError: naming the file, the line and what is wrong.
    """
    return net_from_message(parse_text_message(text, "NetParameter", path), path)


def read_prototxt(path: str | Path) -> NetSpec:
    """Read a ``.prototxt`` net definition.

    Example:
        >>> net = read_prototxt("deploy.prototxt")      # doctest: +SKIP

    Raises:
        CaffeError: unreadable file or a syntax error (with its line).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CaffeError(f"{path}: cannot be read as UTF-8 text ({err}).") from err
    return parse_prototxt(text, str(path))
