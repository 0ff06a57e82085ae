"""Ctrl-C at a step boundary: the first one is noted and the training loop stops after the step under
way, so the checkpoint it writes is a consistent state to resume from; a second one stops at once.
SIGTERM (what a job scheduler or ``kill`` sends) is handled the same way.

Owns ``deferred_interrupt`` (the SIGINT handler, installed only while training) and ``interruptible``
(batches that turn a loader's failure after Ctrl-C into the interrupt). Standard library only.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["Interrupt", "deferred_interrupt", "interruptible"]


class Interrupt:
    """Set by the first Ctrl-C; the loop checks it at each step boundary."""

    requested = False


@contextlib.contextmanager
def deferred_interrupt(enabled: bool) -> Iterator[Interrupt]:
    """While training in one process on the main thread, the first Ctrl-C is noted and acted on at the
    next step boundary (so the checkpoint is a consistent state); a second one stops at once. Left
    alone when someone else handles SIGINT (or ignores it), off the main thread, and under DDP."""
    flag = Interrupt()
    usable = enabled and threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if usable else None
    if previous is not signal.default_int_handler:
        yield flag
        return

    def note(signum: int, frame: Any) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True
        what = "Terminated" if signum == signal.SIGTERM else "Interrupted"
        print(f"{what}: finishing this step and writing a checkpoint (Ctrl-C again to stop at once).",
              file=sys.stderr, flush=True)

    # SIGTERM only when nobody else handles it (its default is to die without a checkpoint).
    term = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGINT, note)
    if term is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, note)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
        if term is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, term)


def interruptible(batches: Iterator, flag: Interrupt, limit: int) -> Iterator:
    """At most ``limit`` batches (none fetched beyond, so no augmentation draw is wasted); a loader that
    fails after Ctrl-C (its workers got the signal too) counts as the interrupt, at a step boundary."""
    for _ in range(limit):
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as err:
            if flag.requested:
                raise KeyboardInterrupt from err
            raise
        yield batch


# ----------------------------------------------------------------------------------------------
# Learning rate, optimizer, autocast: small rules the steps use.
