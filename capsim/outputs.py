"""Per-record output files: ``capsim serve --out`` (one row per request), ``--timeseries-out`` (per
service, replica and time bin) and ``capsim train --out`` (the pipeline timeline of one step), as
CSV, Parquet or JSON (a list of records) by the file's suffix."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.errors import CapsimError

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

FORMATS = (".csv", ".parquet", ".json")


def report_or_json(r: Any, *, html: Path | None, as_json: bool, err: Console, show: Callable[[], None]) -> None:
    """A run's last outputs, alike for every kind: the HTML report when asked, then the JSON or the
    tables (``show``)."""
    if html:
        from simulator.report import write_html  # plotly: only for the report

        write_html(r, html)
        if not as_json:
            err.print(f"report written to {html}")
    if as_json:
        print(r.to_json())
    else:
        show()


def check_path(path: Path, option: str) -> None:
    """Fail before simulating when the file cannot be written as asked."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise CapsimError(f"{option} {path}: use a .csv, .parquet or .json file name")
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise CapsimError(f"{option} {path}: writing Parquet needs pyarrow (pip install pyarrow); "
                          f"or use {path.with_suffix('.csv')}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CapsimError(f"{option} {path}: the folder {parent} does not exist")


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` by the suffix (checked by :func:`check_path`), through a temporary file in the
    same folder, so an interrupted write never leaves half a file under the name asked for."""
    suffix = path.suffix.lower()
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        elif suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            tmp.write_text(frame.to_json(orient="records", indent=1, double_precision=15) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def request_records(frame: pd.DataFrame) -> pd.DataFrame:
    """The per-request frame with a ``request`` id (its row: arrival order) first."""
    out = frame.reset_index(drop=True)
    return out.rename_axis("request").reset_index() if "request" not in out else out
