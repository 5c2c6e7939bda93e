"""How every command prints a table and an amount of money.

A table never cuts a value: ids and numbers are never wrapped or shortened, text wraps between
words. The table is laid out at the console's width only if every column's narrowest form fits
(the whole id, the longest word); otherwise each row is printed as a block of ``name: value`` lines.
Rich's own fitting (which shortens cells to ``llama-3.…``) is never reached, so what a table shows is
the same at 80 columns, at 200 and piped.

Money: ``usd(1.78e6)`` → ``$1,780,000``, ``usd_per_hour(2.3)`` → ``$2.30/h``,
``usd_per_month(41_600)`` → ``$41.6k/month``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

__all__ = ["Col", "KVTable", "compact_usd", "kv_table", "metric", "print_table", "usd", "usd_per_hour", "usd_per_month"]

Kind = Literal["id", "num", "text"]
GAP = 2                       # between columns: one space of padding and the blank divider of box.SIMPLE_HEAD


@dataclass(frozen=True)
class Col:
    """A column: ``id`` and ``num`` cells are never broken; ``text`` cells wrap between words."""

    header: str
    kind: Kind = "text"

    @property
    def justify(self) -> Literal["left", "right"]:
        return "right" if self.kind == "num" else "left"


def _plain(cell: str) -> str:
    return Text.from_markup(cell, emoji=False).plain     # as capsim's consoles print it (emoji=False)


def _longest_word(s: str) -> int:
    return max((cell_len(w) for line in s.splitlines() for w in line.split()), default=0)


def min_width(col: Col, cells: Sequence[str]) -> int:
    """The narrowest the column can be without cutting anything."""
    plain = [_plain(c) for c in cells]
    if col.kind in ("id", "num"):
        body = max((max((cell_len(line) for line in p.splitlines()), default=0) for p in plain), default=0)
    else:
        body = max((_longest_word(p) for p in plain), default=0)
    return max(body, _longest_word(col.header))


def fits(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int) -> bool:
    widths = [min_width(c, [r[i] for r in rows]) for i, c in enumerate(cols)]
    return sum(widths) + GAP * (len(cols) - 1) <= width


def print_table(console: Console, cols: Sequence[Col], rows: Sequence[Sequence[str]], *, title: str | None = None,
                show_header: bool = True) -> None:
    """Print ``rows`` as a table if it fits the console without cutting a value, else as blocks."""
    if fits(cols, rows, console.width):
        t = Table(*(Column(c.header, justify=c.justify, no_wrap=c.kind != "text", overflow="fold",
                           min_width=min_width(c, [r[i] for r in rows])) for i, c in enumerate(cols)),
                  title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                  show_header=show_header,
                  title_justify="left")
        for r in rows:
            t.add_row(*r)
        console.print(t)
        return
    _print_blocks(console, cols, rows, title=title, show_header=show_header)


def _print_blocks(console: Console, cols: Sequence[Col], rows: Sequence[Sequence[str]], *, title: str | None,
                  show_header: bool) -> None:
    """The narrow layout: per row, its first cell, then ``header: value`` for the others (or, for a
    key/value table, ``key`` on one line and its value wrapped below)."""
    if title:
        console.print(Text(title, style="italic"), soft_wrap=False)
    for r in rows:
        if not show_header:              # key/value: the key, then the value indented
            console.print(Text.from_markup(f"[bold]{r[0]}[/]"), overflow="fold")
            for cell in r[1:]:
                t = Text.from_markup(cell)
                t.pad_left(2)
                console.print(t, overflow="fold")
            continue
        console.print(Text.from_markup(f"[bold]{r[0]}[/]"), overflow="fold")
        for c, cell in zip(cols[1:], r[1:], strict=True):
            t = Text.from_markup(f"  {c.header}: ")
            t.append_text(Text.from_markup(cell))
            console.print(t, overflow="fold")


def kv_table(console: Console, rows: Sequence[tuple[str, str]], *, title: str | None = None) -> None:
    """A result's ``label  value`` table: labels whole, values wrapped between words."""
    print_table(console, [Col("", "id"), Col("", "text")], [list(r) for r in rows], title=title, show_header=False)


# ---- money -------------------------------------------------------------------------------------------
def usd(x: float | None) -> str:
    """``$1,780,000`` (whole dollars from $100), ``$12.34``, ``$0.0451`` (three significant figures below $1)."""
    if x is None or x != x:
        return "-"
    sign, a = ("-" if x < 0 else ""), abs(x)
    if a >= 100:
        return f"{sign}${a:,.0f}"
    if a >= 1 or a == 0:
        return f"{sign}${a:,.2f}"
    return f"{sign}${a:.3g}"


def compact_usd(x: float | None) -> str:
    """``$41.6k``, ``$1.78M``, ``$3.2B`` (three significant figures); below $1,000 as :func:`usd`."""
    if x is None or x != x:
        return "-"
    a = abs(x)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            v = a / div
            text = f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"
            return f"{'-' if x < 0 else ''}${text}{suffix}"
    return usd(x)


def usd_per_hour(x: float | None) -> str:
    """``$2.30/h`` (``$1,234/h`` from $100)."""
    return "-" if x is None or x != x else f"{usd(x)}/h"


HOURS_PER_MONTH = 730.0        # 8,760 hours a year / 12, the cloud providers' monthly-price convention


def usd_per_month(per_hour: float | None) -> str:
    """A rate in $/h as a month of it: ``$41.6k/month`` (730 hours, as AWS and GCP price a month)."""
    return "-" if per_hour is None or per_hour != per_hour else f"{compact_usd(per_hour * HOURS_PER_MONTH)}/month"


def metric(column: str, v: object) -> str:
    """A sweep or result column's value for people: money as money, large numbers with separators,
    others to four significant figures."""
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if column.endswith("usd_per_hour") or column == "usd_per_hour":
        return usd_per_hour(float(v))
    if "usd" in column or column.startswith("cost"):
        return usd(float(v))
    if isinstance(v, int):
        return f"{v:,}"
    if abs(v) >= 1e4:
        return f"{v:,.0f}"
    return f"{v:.4g}"


class KVTable:
    """A result's ``label  value`` rows, collected with :meth:`add_row` and printed by :func:`kv_table`."""

    def __init__(self, title: str | None = None) -> None:
        self.title = title
        self.rows: list[tuple[str, str]] = []

    def add_row(self, label: str, value: str) -> None:
        self.rows.append((label, value))

    def print(self, console: Console) -> None:
        kv_table(console, self.rows, title=self.title)
