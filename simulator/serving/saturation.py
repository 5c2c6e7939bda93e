"""Two honest utilization numbers beside "GPU busy" (the share of time a kernel runs, what DCGM's GPU
utilization reports, which under continuous batching reads high from low load on):

* **saturation**: the arrival rate over what the ready replicas can carry: the cost model's
  steady-state capacity of one replica (``simulator.plan.capacity.steady_state``: as many sequences
  as the KV cache and ``max_num_seqs`` allow, each iteration prefilling what arrivals bring) × the
  mean replicas ready. 1.0 means the fleet is at its throughput limit; a request-level batcher's
  capacity is its largest batch over that batch's forward time.
* **MBU** (model-bandwidth utilization, Databricks' and NVIDIA NIM's decode metric): bytes a decode
  step must read (the GPU's share of the weights plus the KV cache of the sequences running) times
  the steps run per second, over the GPU's memory bandwidth. Steps per second per replica are its
  output tokens per second over the mean sequences running while busy (``timeseries.running``,
  the time series' column as an array: no frame is built for it).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def saturation(perf: Any, plan: Any, *, mean_prompt: float, mean_output: float, arrival_rps: float,
               ready_replicas: float, batch: int | None = None) -> float | None:
    """Load ÷ capacity of the ready fleet (module docstring); None with no replica ready."""
    from ..plan.capacity import steady_state

    if ready_replicas <= 0:
        return None
    if plan.generative:
        cap = steady_state(perf, plan, max(mean_prompt, 1.0), max(mean_output, 1.0))[0]
    else:
        b = max(batch or 1, 1)
        cap = b / perf.forward_time(b, max(round(mean_prompt), 1))
    return arrival_rps / (cap * ready_replicas) if cap > 0 else None


def mbu(perf: Any, plan: Any, running: np.ndarray, *, output_tokens_per_s: float, ready_replicas: float,
        mean_prompt: float, mean_output: float) -> float | None:
    """Model-bandwidth utilization of the decode steps (module docstring); ``running``: the mean
    sequences running per replica and time bin (the time series' ``running`` column). None for a
    model that generates nothing or a run with no decode."""
    run = np.asarray(running, dtype=float)
    if not plan.generative or ready_replicas <= 0 or output_tokens_per_s <= 0 or not len(run):
        return None
    busy = run[run > 0]
    if not len(busy):
        return None
    n = float(np.mean(busy))
    steps_per_s = output_tokens_per_s / ready_replicas / n
    bytes_per_step = perf.weight_bytes_per_gpu() + n * (mean_prompt + mean_output / 2) * perf.kv_bytes_per_token_per_gpu()
    return float(steps_per_s * bytes_per_step / (perf.hw.memory_bandwidth_tbps * 1e12))
