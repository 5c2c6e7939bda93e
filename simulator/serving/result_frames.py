"""The time-series frames of a serving result, built on first read.

A run computes its per-replica time series, its scaling series and its per-replica totals as plain
numpy arrays (``frames.timeseries_columns``, ``scaling_columns``, ``replica_rows``: a few
kilobytes, the replicas' logs are let go); the pandas frames a report, the TUI or
``--timeseries-out`` read are made from them the first time they are asked for. A plain
``capsim serve`` prints the summary and never loads pandas (a third of its start-up). The summary
numbers that read a series (MBU, the autoscaler's flaps) read these arrays, not the frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from .frames import REPLICA_COLUMNS, fleet_frame

if TYPE_CHECKING:
    import pandas as pd


@dataclass(eq=False)
class ResultFrames:
    """A run's series as arrays, and its frames made from them once, when first read."""

    series: list[tuple[str, dict[str, np.ndarray]]]
    """per service, in the order of the request path: its replicas' time series columns
    (``frames.timeseries_columns``; empty for a service without replicas)"""
    scaling_columns: dict[str, np.ndarray]
    """per time bin: arrivals, replicas requested and ready, e2e percentiles, cost accrued"""
    replica_rows: list[dict[str, Any]] = field(repr=False)
    """per replica of each service: busy and ready seconds and their ratio"""
    ready: np.ndarray = field(repr=False)
    """replicas up per time bin, every service"""
    main_ready: np.ndarray = field(repr=False)
    """replicas up per time bin of the last service (the one that answers)"""

    def column(self, name: str, service: str | None = None) -> np.ndarray:
        """One column of the time series over every service's replicas (or ``service``'s alone), in the
        frame's row order, without building the frame."""
        parts = [cols[name] for svc, cols in self.series if cols and (service is None or svc == service)]
        return np.concatenate(parts) if parts else np.zeros(0)

    @cached_property
    def timeseries(self) -> pd.DataFrame:
        """Per service, replica and time bin (the rows of each service's replicas, then a ``service`` column)."""
        import pandas as pd

        frames = [pd.DataFrame(cols).assign(service=name) for name, cols in self.series if cols]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)

    @cached_property
    def scaling(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.scaling_columns)

    @cached_property
    def fleet(self) -> pd.DataFrame:
        return fleet_frame(self.timeseries, self.ready, self.series[-1][0], self.main_ready)

    @cached_property
    def replicas(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.replica_rows, columns=list(REPLICA_COLUMNS))

    @property
    def time_bin_s(self) -> float | None:
        """Width of the time bins every series shares (None with a single bin)."""
        t = self.scaling_columns["t_s"]
        return float(t[1] - t[0]) if len(t) > 1 else None
