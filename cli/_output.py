"""What the training commands (``zoo finetune``, ``zoo train``, ``zoo demo``) print while a run goes,
decided in one place: progress bars only on a terminal (a log file gets no carriage-return frames),
one line per epoch whenever the bars are off, nothing of either with ``--quiet``/``--json`` (the final
summary is always printed), and the command line a run records. Standard library and click only.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import Any

import click

__all__ = ["Output", "command_line", "given_options"]


class Output:
    """How much a training command shows.

    Attributes:
        quiet: ``--quiet`` or ``--json``: no bars, no per-epoch lines, no set-up lines.
        bars: progress bars (never when stderr is not a terminal).
    """

    def __init__(self, *, quiet: bool, as_json: bool = False):
        self.quiet = quiet or as_json
        self.bars = not self.quiet and sys.stderr.isatty()

    def echo(self, text: str = "") -> None:
        """A set-up or progress line (silenced by ``--quiet``)."""
        if not self.quiet:
            click.echo(text)

    def epoch_lines(self) -> dict[str, list[Callable[[dict[str, Any]], None]]]:
        """Loop callbacks that print one line per epoch when no bar does (the bar writes its own)."""

        def on_epoch(info: dict[str, Any]) -> None:
            if self.quiet or self.bars:
                return
            row = info["row"]
            val = f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}" if "val_loss" in row else ""
            click.echo(f"epoch {row['epoch']:>3}  train_loss {row['train_loss']:.4f}{val}  lr {row['lr']:.3g}  "
                       f"{row['images_per_s']:.0f} img/s  {row['seconds']:.1f} s")

        return {"on_epoch_end": [on_epoch]}


def command_line(ctx: click.Context) -> str:
    """The command as typed: ``sys.argv`` from the command name on when this process is the ``zoo``
    command; else (called in process) ``zoo <command>`` and every parameter given, in declaration order."""
    from click.core import ParameterSource

    name = ctx.info_name or "zoo"
    if name in sys.argv[1:]:
        return shlex.join(["zoo", *sys.argv[sys.argv.index(name, 1):]])
    parts = ["zoo", name]
    options = []
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) != ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            parts.extend(str(v) for v in (value if isinstance(value, tuple) else (value,)))
        elif param.is_flag:
            flag = (param.opts[0] if value else (param.secondary_opts or [None])[0]) if param.secondary_opts \
                else (param.opts[0] if value else None)
            if flag:
                options.append(flag)
        else:
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            options += [param.opts[0], shown]
    return shlex.join(parts + options)


def given_options(ctx: click.Context, names: list[str]) -> dict[str, Any]:
    """The options among ``names`` that the user gave (command line or environment), by name: the rest
    keep the library's defaults, so a default is written in one place."""
    from click.core import ParameterSource

    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {n: ctx.params[n] for n in names if ctx.get_parameter_source(n) in given}
