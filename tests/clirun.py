"""``zoo_cli``: run the ``zoo`` command in this process, as the tests of the CLI do."""

from __future__ import annotations

from zoo.cli.main import main


def zoo_cli(capsys, *args) -> tuple[int, str, str]:
    """``zoo ARGS...`` in-process: (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err
