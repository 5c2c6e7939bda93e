"""The typed result of a training simulation; serialises to JSON and pandas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..costmodel.layout import Layout
from ..costmodel.memory import GIB, MemoryBreakdown
from ..hardware import HardwareProfile
from ..models import ModelSpec
from ..result_views import ResultViews
from ..scenario import TrainingScenario
from .job import JobOutcome


def _r(x: float, nd: int = 6) -> float:
    return float(f"{x:.{nd}g}") if x == x and abs(x) != float("inf") else x


@dataclass
class TrainingResult(ResultViews):
    scenario: TrainingScenario
    summary: dict[str, Any]
    timeline: list[tuple[int, str, int, int, float, float]] = field(default_factory=list, repr=False)
    time_to_train_samples_days: list[float] = field(default_factory=list, repr=False)

    @classmethod
    def build(cls, *, sc: TrainingScenario, model: ModelSpec, hw: HardwareProfile, lay: Layout, micro_batch: int,
              microbatches: int, step_time: float, breakdown: dict[str, float], memory: MemoryBreakdown,
              fits: bool, mfu: float, hfu: float, tokens: float, job: JobOutcome | None,
              timeline: list) -> TrainingResult:
        peak = hw.peak_flops(sc.training.precision)
        gpus = lay.gpus
        mem = memory.gib()
        s: dict[str, Any] = {
            "kind": "training",
            "name": sc.name,
            "model": model.name,
            "params_b": _r(model.total_params() / 1e9),
            "hardware": hw.name,
            "gpus": gpus,
            "layout": {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "cp": lay.cp, "ep": lay.ep,
                       "virtual_stages": lay.virtual_stages, "sequence_parallel": lay.sequence_parallel,
                       "zero_stage": lay.zero_stage, "recompute": lay.recompute, "micro_batch": micro_batch,
                       "microbatches_per_step": microbatches},
            "feasible": fits,
            "fits_in_memory": fits,
            "iteration_time_s": _r(step_time),
            "tokens_per_s": _r(tokens / step_time),
            "mfu": _r(mfu, 4),
            "hfu": _r(hfu, 4),
            "tflops_per_gpu_model": _r(mfu * peak / 1e12, 4),
            "tflops_per_gpu_hardware": _r(hfu * peak / 1e12, 4),
            "memory_per_gpu_gib": {k: _r(v, 5) for k, v in mem.items()},
            "memory_capacity_gib": hw.memory_gib,
            "time_breakdown_s": {k: _r(v) for k, v in breakdown.items()},
        }
        if not fits:
            s["infeasible_reason"] = (f"needs {memory.total / GIB:.1f} GiB per GPU, {hw.name} has {hw.memory_gib:.0f} GiB "
                                      f"(params {mem['params']:.1f}, grads {mem['grads']:.1f}, optimizer "
                                      f"{mem['optimizer']:.1f}, activations {mem['activations']:.1f}, "
                                      f"buffers {mem['buffers']:.1f})")
        days: list[float] = []
        if job is not None:
            days = [float(d) for d in job.days]
            mean_days = float(np.mean(job.days))
            gpu_hours = mean_days * 24 * gpus
            s.update({
                "total_tokens": sc.training.total_tokens,
                "iterations": job.iterations,
                "time_to_train_days": _r(mean_days),
                "time_to_train_days_p10": _r(float(np.percentile(job.days, 10))),
                "time_to_train_days_p50": _r(float(np.percentile(job.days, 50))),
                "time_to_train_days_p90": _r(float(np.percentile(job.days, 90))),
                "compute_days_without_failures": _r(job.compute_days),
                "goodput": _r(job.compute_days / mean_days, 4),
                "failures_mean": _r(job.failures_mean, 4),
                "preemptions_mean": _r(job.preemptions_mean, 4),
                "checkpoint_interval_s": _r(job.checkpoint_interval_s),
                "checkpoint_write_s": _r(job.checkpoint_write_s),
                "gpu_hours": _r(gpu_hours),
                "usd_per_gpu_hour": _r(job.usd_per_gpu_hour),
                "price_source": job.usd_per_gpu_hour_source,
                "cost_usd": _r(gpu_hours * job.usd_per_gpu_hour),
                "gpu_power_w": _r(job.gpu_power_w, 4),
                "energy_kwh": _r(gpu_hours * job.gpu_power_w / 1000),
            })
        return cls(sc, s, timeline, days)

    # ---- views ------------------------------------------------------------------------------------
    def timeline_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.timeline, columns=["stage", "pass", "chunk", "microbatch", "start_s", "end_s"])
