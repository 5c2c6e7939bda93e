"""Progress bars for long commands, on stderr, with the time remaining.

Shown when stderr is a terminal and the command's result is not JSON; ``--progress`` shows it
anyway and ``--no-progress`` never. The work reports through a callback (simulated seconds of a
serve, configurations of a sweep); a bar only reads, so it cannot change a result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

Update = Callable[[float, float | None], None]


def _silent(done: float, total: float | None) -> None:
    """What a bar that is not shown does with an update: nothing."""


def wanted(console: Console, *, as_json: bool, flag: bool | None) -> bool:
    """``flag`` (``--progress``/``--no-progress``) if given, else: stderr is a terminal and not --json."""
    if flag is not None:
        return flag
    return console.is_terminal and not as_json


@contextmanager
def bar(console: Console, label: str, *, enabled: bool, unit: str = "") -> Iterator[Update]:
    """A transient bar; yields ``update(done, total)`` (``total`` None: not known yet). Asked for on a
    stream that is not a terminal (``--progress`` into a pipe or a log), it is drawn there all the same.
    Not shown, it yields a no-op and loads nothing (rich's progress module is a few ms of a command's start)."""
    if not enabled:
        yield _silent
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not console.is_terminal:
        console = Console(file=console.file, force_terminal=True, width=console.width)
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[amount]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as p:
        task = p.add_task(label, total=None, amount="")

        def update(done: float, total: float | None) -> None:
            if total and done > total:       # past the last arrival: the requests in flight finishing
                amount = f"{int(done):,} {unit}, draining"
            else:
                amount = (f"{int(done):,}/{int(total):,} {unit}" if total else f"{int(done):,} {unit}").strip()
            p.update(task, completed=min(done, total) if total else done, total=total, amount=amount)

        yield update
