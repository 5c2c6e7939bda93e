"""The whole training run: iterations, failures, checkpoints, preemptions; seeded Monte Carlo.

Failures arrive as a Poisson process at ``nodes / MTBF``; each one loses the work since the last
checkpoint plus the restart time. Checkpoints are written every τ of work, by default the
Young/Daly optimum ``τ = sqrt(2·δ·M)`` (δ the write time, M the job's mean time between
failures). Spot preemptions add to the interruption rate when the market is spot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import workbound
from ..errors import CapsimError
from ..hardware import HardwareProfile, resolve_price
from ..scenario import TrainingScenario

# Assumed spot interruption rate when a scenario gives none: 10% per instance-month, the middle
# bucket of AWS's Spot Instance Advisor for GPU instances (0.1 / 730 h).
DEFAULT_SPOT_PREEMPTIONS_PER_NODE_HOUR = 0.1 / 730
CHECKPOINT_BYTES_PER_PARAM = 14.0  # 16-bit weights + fp32 master weights and Adam moments


@dataclass(frozen=True, slots=True)
class JobOutcome:
    iterations: int
    compute_days: float
    days: np.ndarray                   # time to train per Monte Carlo run
    failures_mean: float
    preemptions_mean: float
    checkpoint_interval_s: float
    checkpoint_write_s: float
    usd_per_gpu_hour: float
    usd_per_gpu_hour_source: str
    gpu_power_w: float


def simulate_job(sc: TrainingScenario, hw: HardwareProfile, *, step_time: float, tokens_per_step: float,
                 gpus: int, params: float, busy_fraction: float) -> JobOutcome:
    tr, rel, nodes = sc.training, sc.reliability, sc.cluster.nodes
    assert tr.total_tokens
    iterations = math.ceil(tr.total_tokens / tokens_per_step)
    work = iterations * step_time
    rate = nodes / (rel.node_mtbf_hours * 3600) if rel.node_mtbf_hours else 0.0
    spot_rate = 0.0
    if sc.pricing.market == "spot":
        per_node = sc.pricing.spot_preemptions_per_hour or DEFAULT_SPOT_PREEMPTIONS_PER_NODE_HOUR
        spot_rate = nodes * per_node / 3600
    total_rate = rate + spot_rate
    write = params * CHECKPOINT_BYTES_PER_PARAM / (rel.checkpoint_write_gb_s * 1e9 * nodes)
    if rel.checkpoint_interval_minutes:
        tau = rel.checkpoint_interval_minutes * 60
    elif total_rate > 0:
        tau = math.sqrt(2 * write / total_rate)
    else:
        tau = math.inf
    restart = rel.restart_minutes * 60
    rng = np.random.default_rng(sc.seed)
    runs = rel.runs if total_rate > 0 else 1
    days = np.empty(runs)
    fails = np.zeros(runs)
    preempts = np.zeros(runs)
    spot_share = spot_rate / total_rate if total_rate > 0 else 0.0
    if total_rate > 0 and work / (1 / total_rate) > 5e5:
        raise CapsimError("the job would fail more than 500,000 times: check reliability.node_mtbf_hours")
    workbound.check_failure_draws(runs, work * total_rate)
    # One draw per interruption, not per checkpoint: between interruptions the job writes a
    # checkpoint every τ of work, so a gap of g completes floor(g / (τ + write)) segments.
    full = tau + write
    for r in range(runs):
        wall = 0.0
        done = 0.0
        while True:
            remaining = work - done
            n_seg = math.ceil(remaining / tau) if math.isfinite(tau) else 1
            finish = remaining + (n_seg - 1) * write       # no checkpoint after the last segment
            gap = rng.exponential(1 / total_rate) if total_rate > 0 else math.inf
            if gap >= finish:
                wall += finish
                break
            k = min(int(gap // full), n_seg - 1)           # segments saved before the interruption
            done += k * tau
            wall += gap + restart
            if rng.random() < spot_share:
                preempts[r] += 1
            else:
                fails[r] += 1
        days[r] = wall / 86400
    price, src = resolve_price(sc.pricing, hw, gpus_per_node=sc.cluster.gpus_per_node)
    idle, tdp = hw.idle_w or 0.0, hw.tdp_w or 0.0
    power = idle + (tdp - idle) * busy_fraction
    return JobOutcome(iterations, work / 86400, days, float(fails.mean()), float(preempts.mean()),
                      tau, write, price, src, power)
