"""Recorded request traces: the layouts of the public LLM serving traces, read into arrival times and
token counts.

Each format is a file type, the three columns that matter and the unit of its timestamps, as the
trace's publisher documents them:

- ``capsim``: CSV ``timestamp`` (seconds), ``prompt_tokens``, ``output_tokens`` (this project's own).
- ``azure``: the Azure LLM inference traces 2023 (Splitwise, ISCA 2024) and 2024 (DynamoLLM): CSV
  ``TIMESTAMP`` (the invocation time as a date-time string, e.g. ``2023-11-16 18:17:03.9799600``),
  ``ContextTokens``, ``GeneratedTokens`` (github.com/Azure/AzurePublicDataset,
  ``AzureLLMInferenceDataset2023.md`` and ``AzureLLMInferenceDataset2024.md``, "Schema"; the rows of
  ``data/AzureLLMInferenceTrace_code.csv``).
- ``burstgpt``: BurstGPT (Wang et al. 2024, arXiv:2401.17644): CSV ``Timestamp`` ("request submission
  time, seconds from 0:00:00 on the first day"), ``Model``, ``Request tokens``, ``Response tokens``,
  ``Total tokens``, ``Log Type``; in ``BurstGPT_1.csv`` and ``BurstGPT_2.csv`` failed requests have 0
  response tokens (github.com/HPMLL/BurstGPT ``README.md``, "Schema" and the file list): they are
  skipped with a warning.
- ``mooncake``: Mooncake's FAST'25 traces (Qin et al., FAST 2025): JSON lines with ``timestamp``
  (milliseconds since the first request), ``input_length``, ``output_length`` and ``hash_ids`` (the
  prompt's remapped KV-block hashes, not read here) (github.com/kvcache-ai/Mooncake
  ``FAST25-release/README.md`` and ``FAST25-release/traces/*.jsonl``; the unit as NVIDIA Dynamo's
  ``benchmarks/data_generator/README.md`` and aiperf's trace-replay guide read it).

Any other file: ``columns: {timestamp, prompt_tokens, output_tokens}`` and ``time_unit``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CapsimError
from ..files import excerpt, read_text
from ..limits import MAX_TOKENS
from ..scenario.workload import Trace


@dataclass(frozen=True)
class TraceFormat:
    """One trace layout: file type, the columns read, the timestamps' unit."""

    jsonl: bool
    timestamp: str
    prompt_tokens: str
    output_tokens: str
    time_unit: str
    zero_output_is_failure: bool = False


FORMATS: dict[str, TraceFormat] = {
    "capsim": TraceFormat(False, "timestamp", "prompt_tokens", "output_tokens", "s"),
    "azure": TraceFormat(False, "TIMESTAMP", "ContextTokens", "GeneratedTokens", "datetime"),
    "burstgpt": TraceFormat(False, "Timestamp", "Request tokens", "Response tokens", "s", zero_output_is_failure=True),
    "mooncake": TraceFormat(True, "timestamp", "input_length", "output_length", "ms"),
}

UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _read_csv(path: str, what: str) -> tuple[list[str], dict[str, np.ndarray], int]:
    """(column names, column → values as objects, the line of the first row) of a CSV file."""
    import pandas as pd

    text = read_text(path, "trace")     # a missing file, a folder, binary or non-UTF-8 text: a clear error
    try:
        # no NaN conversion: an empty cell stays "" (named in errors); numeric columns stay numeric
        frame = pd.read_csv(io.StringIO(text), keep_default_na=False, skipinitialspace=True)
    except Exception as e:  # pandas raises several parser errors
        raise CapsimError(f"{what} is not a readable CSV: {excerpt(str(e), 200)}") from None
    cols = [str(c) for c in frame.columns]
    return cols, {c: frame[c].to_numpy() for c in cols}, 2


def _read_jsonl(path: str, what: str) -> tuple[list[str], dict[str, np.ndarray], list[int]]:
    """(keys of the first record, key → values (None where a record lacks the key), the line number of each
    record) of a JSON-lines file."""
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    for i, line in enumerate(read_text(path, "trace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            raise CapsimError(f"{what}: line {i} is not JSON ({getattr(e, 'msg', 'nested too deeply')})") from None
        if not isinstance(rec, dict):
            raise CapsimError(f"{what}: line {i} is not a JSON object")
        records.append(rec)
        lines.append(i)
    cols = list(records[0]) if records else []
    values = {k: np.array([rec.get(k) for rec in records], dtype=object) for k in cols}
    return cols, values, lines


def _numbers(values: np.ndarray) -> np.ndarray:
    """The values as floats, NaN where one is not a number (an empty cell, a word, a date-time, null, a
    boolean). A numeric column converts at once; text is parsed in one pass and only a column with a bad
    value takes the slower element-wise path that finds it."""
    if values.dtype.kind in "iuf":
        return values.astype(float)
    if not any(isinstance(v, bool | np.bool_) for v in values):
        try:
            return values.astype(float)
        except (TypeError, ValueError):
            pass
    import pandas as pd

    series = pd.Series(values, dtype=object)
    series = series.where(~series.map(lambda v: isinstance(v, bool | np.bool_)))
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _shown(v: object) -> str:
    if isinstance(v, np.generic):
        v = v.item()
    if v is None:
        return "no value"
    return "an empty cell" if isinstance(v, str) and not v.strip() else repr(v)


def _seconds(values: np.ndarray, unit: str | None, where: str, row_of: Any) -> np.ndarray:
    """Timestamps as seconds (not yet shifted to start at 0); vectorised, for traces of millions of rows."""
    nums = _numbers(values)
    if unit is None:     # columns without a unit: seconds, or date-times when the values are not numbers
        unit = "s" if not np.isnan(nums).any() else "datetime"
    if unit != "datetime":
        bad = np.flatnonzero(np.isnan(nums))
        if len(bad):
            i = int(bad[0])
            hint = " (date-time strings: set time_unit: datetime)" if isinstance(values[i], str) and \
                values[i].strip() else ""
            raise CapsimError(f"{where}: {row_of(i)} has timestamp {_shown(values[i])}; expected a number in "
                              f"{unit}{hint}")
        bad = np.flatnonzero(~np.isfinite(nums) | (nums < 0))
        if len(bad):
            i = int(bad[0])
            raise CapsimError(f"{where}: {row_of(i)} has timestamp {_shown(values[i])}; expected a number >= 0 in "
                              f"{unit}")
        return nums * UNIT_SECONDS[unit]
    import pandas as pd

    text = pd.Series(values, dtype=object)
    blank = text.map(lambda v: not isinstance(v, str) or not v.strip()).to_numpy(dtype=bool)
    bad = np.flatnonzero(~np.isnan(nums) | blank)
    if len(bad):
        i = int(bad[0])
        raise CapsimError(f"{where}: {row_of(i)} has timestamp {_shown(values[i])}; expected a date-time such as "
                          "2023-11-16 18:17:03.97 (time_unit: datetime; for numbers set time_unit: s, ms, us or ns)")
    stamps = pd.to_datetime(text.astype(str), format="ISO8601", utc=True, errors="coerce")
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise CapsimError(f"{where}: {row_of(i)} has timestamp {values[i]!r}, which is not a date-time (expected "
                          "ISO 8601, such as 2023-11-16 18:17:03.97)")
    return (stamps - stamps.min()).dt.total_seconds().to_numpy(dtype=float)


def _tokens(values: np.ndarray, col: str, where: str, row_of: Any, allow_zero: bool) -> np.ndarray:
    """Token counts as whole numbers (>= 1, or >= 0 where a 0 marks a failed request)."""
    low = 0 if allow_zero else 1
    x = _numbers(values)
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~np.isfinite(x) | (x < low) | (x > MAX_TOKENS) | (x != np.round(x)))
    if len(bad):
        i = int(bad[0])
        raise CapsimError(f"{where}: {row_of(i)} has {col} {_shown(values[i])}; token counts must be whole numbers "
                          f"from {low} to {MAX_TOKENS:,}")
    return x.astype(np.int64)


def read_trace(tr: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(arrival times from 0 in seconds, prompt tokens, output tokens, warnings) of a trace file, sorted by
    arrival time."""
    fmt = FORMATS[tr.format]
    names = (tr.columns.timestamp, tr.columns.prompt_tokens, tr.columns.output_tokens) if tr.columns else (
        fmt.timestamp, fmt.prompt_tokens, fmt.output_tokens)
    unit = tr.time_unit or (None if tr.columns else fmt.time_unit)
    where = f"trace {tr.path!r} ({tr.format})" if not tr.columns else f"trace {tr.path!r}"
    jsonl = fmt.jsonl or (tr.columns is not None and tr.path.endswith((".jsonl", ".ndjson")))
    if jsonl:
        cols, values, lines = _read_jsonl(tr.path, where)
    else:
        cols, values, first = _read_csv(tr.path, where)
        lines = list(range(first, first + (len(next(iter(values.values()))) if values else 0)))
    label = "line" if jsonl else "row"

    def row_of(i: int) -> str:
        return f"{label} {lines[i]}"

    missing = [c for c in names if c not in cols]
    if missing:
        kind = "key" if jsonl else "column"
        hint = "" if tr.columns else (f"; for another layout set workload.arrival.format (one of "
                                      f"{', '.join(FORMATS)}) or workload.arrival.columns")
        raise CapsimError(f"{where} lacks {kind}(s) {', '.join(missing)}; it needs {', '.join(names)} (has "
                          f"{', '.join(cols) or 'none'}){hint}")
    n = len(values[names[0]])
    if n == 0:
        raise CapsimError(f"trace {tr.path!r} has no rows")
    t = _seconds(values[names[0]], unit, where, row_of)
    prompt = _tokens(values[names[1]], names[1], where, row_of, allow_zero=False)
    output = _tokens(values[names[2]], names[2], where, row_of, allow_zero=fmt.zero_output_is_failure)
    warnings: list[str] = []
    if fmt.zero_output_is_failure:
        ok = output > 0
        if not ok.all():
            warnings.append(f"trace {tr.path}: {int((~ok).sum())} failed requests ({names[2]} 0) were not replayed")
            t, prompt, output = t[ok], prompt[ok], output[ok]
            if not len(t):
                raise CapsimError(f"trace {tr.path!r}: every request failed ({names[2]} 0); nothing to replay")
    if np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        t, prompt, output = t[order], prompt[order], output[order]
        warnings.append(f"trace {tr.path}: timestamps were not in order; requests were sorted by timestamp")
    t = (t - t[0]) * tr.time_scale
    return t, prompt, output, warnings
