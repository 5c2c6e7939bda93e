"""Timing: CUDA events on a GPU, wall clock on a CPU; warm-up, repeated trials, median and spread."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    median_s: float
    min_s: float
    spread: float            # (max - min) / median over the trials
    trials: int


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], object], device: torch.device, *, warmup: int = 2, trials: int = 5,
            min_time_s: float = 0.002) -> Timing:
    """Time ``fn``. Calls are batched so one trial lasts at least ``min_time_s`` (timer resolution)."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    once = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time_s / once))
    samples = []
    for _ in range(trials):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3 / inner)
        else:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - t0) / inner)
    med = statistics.median(samples)
    return Timing(med, min(samples), (max(samples) - min(samples)) / med if med > 0 else 0.0, len(samples))
