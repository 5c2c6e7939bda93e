"""Start-up of a command: the garbage collector paused while the simulator loads.

Loading the simulator and validating a scenario allocates a few hundred thousand objects that live
for the whole process (modules, classes, pydantic's schemas and validators) and no garbage cycles.
CPython's collector scans them again and again as they accumulate (a full collection each time the
long-lived objects grow by a quarter): about 0.08 s of a 0.6 s ``capsim serve``, for nothing.
:func:`loading` turns the collector off for that phase, then moves every object alive at its end
into the permanent generation (:func:`gc.freeze`, which later collections skip) and turns it back
on, so the simulation itself runs with the collector as usual. Nothing in a result depends on when
the collector runs: outputs are the same bit for bit.

Only a process that is one command does this (``capsim.cli.main`` calls :func:`one_command`): a
program or a test that runs commands in its own process (typer's ``CliRunner``, the TUI) keeps its
collector untouched, since what is frozen is never collected, garbage or not.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_ONE_COMMAND = False


def one_command() -> None:
    """This process runs one command and exits: :func:`loading` may pause the collector."""
    global _ONE_COMMAND
    _ONE_COMMAND = True


@contextmanager
def loading() -> Iterator[None]:
    """No garbage collection inside; on the way out, what was loaded is frozen and the collector is
    back in the state it was in (on, unless the caller had turned it off). A no-op unless
    :func:`one_command` was called."""
    if not _ONE_COMMAND:
        yield
        return
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_on:
            gc.enable()
