"""Token-length distributions of a serving workload (used by the cost table and the simulator)."""

from __future__ import annotations

import math

from .scenario import Empirical, Exponential, Fixed, LengthDist, LogNormal, Normal, Uniform


def mean_length(d: LengthDist) -> float:
    """The distribution's mean token count (empirical: the mean of its file's column)."""
    if isinstance(d, Fixed):
        return float(d.value)
    if isinstance(d, Uniform):
        return (d.low + d.high) / 2
    if isinstance(d, LogNormal | Exponential):
        return d.mean
    if isinstance(d, Normal):
        if d.stddev == 0:
            return float(math.ceil(d.mean))
        # the normal above 0 (a truncated normal's mean), then rounded up: + 1/2 on average
        alpha = -d.mean / d.stddev
        tail = 0.5 * math.erfc(alpha / math.sqrt(2))                  # P(X > 0)
        pdf = math.exp(-alpha * alpha / 2) / math.sqrt(2 * math.pi)
        return d.mean + d.stddev * pdf / tail + 0.5
    if isinstance(d, Empirical):
        from .serving.workload import empirical_values  # the one reader: file, decoding and value errors

        return float(empirical_values(d).mean())
    return math.nan
