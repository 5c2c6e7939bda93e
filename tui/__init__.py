"""capsim's terminal UI (Textual): edit a scenario, run it in a worker, read, compare and export results.

Widgets hold no domain logic: they call ``tui.present`` (plain data, no Textual) and the same public
functions as the CLI.
"""

from __future__ import annotations


def run_tui(path: str | None = None) -> None:
    from .app import run_tui as _run

    _run(path)


__all__ = ["run_tui"]
