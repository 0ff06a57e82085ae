"""``zoo_cli``: run the ``zoo`` command in this process, as the tests of the CLI do; ``default_signals``:
the ``preexec_fn`` for a child process that must receive SIGINT and SIGTERM."""

from __future__ import annotations

import signal

from zoo.cli.main import main


def default_signals() -> None:
    """A test run started in the background inherits SIGINT ignored; a child started with this as its
    ``preexec_fn`` gets SIGINT and SIGTERM as a terminal would give them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def zoo_cli(capsys, *args) -> tuple[int, str, str]:
    """``zoo ARGS...`` in-process: (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err
