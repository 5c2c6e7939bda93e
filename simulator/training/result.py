"""The typed result of a training simulation; serialises to JSON and pandas.

Built once from the simulation (``TrainingResult.build``); every view (the CLI table, the TUI,
the HTML report, sweep rows) reads its fields. ``to_dict()`` is the JSON of ``capsim train
--json`` and ``result["key"]`` reads one of its keys, as before the fields were typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..costmodel.layout import Layout
from ..costmodel.memory import GIB, MemoryBreakdown
from ..hardware import HardwareProfile
from ..models import ModelSpec
from ..result_views import NOT_SUMMARY, ResultViews
from ..scenario import TrainingScenario
from .job import JobOutcome
from .summary import JobSummary, MemoryPerGPU, TimeBreakdown, TrainingLayoutInfo, rounded

TIMELINE_COLUMNS = ["stage", "pass", "chunk", "microbatch", "start_s", "end_s"]


@dataclass(frozen=True, kw_only=True)
class TrainingResult(ResultViews):
    """One training step of the scenario's layout, its memory, and (with ``total_tokens``) the whole run."""

    kind: ClassVar[str] = "training"
    scenario: TrainingScenario = field(repr=False, metadata=NOT_SUMMARY)
    name: str
    """the scenario's name"""
    model: str
    params_b: float
    """model parameters, billions"""
    hardware: str
    """hardware profile name"""
    gpus: int
    layout: TrainingLayoutInfo
    fits_in_memory: bool
    """the most loaded stage's memory fits in one GPU"""
    iteration_time_s: float
    """one optimizer step, data-loading stall included"""
    tokens_per_s: float
    """cluster-wide training throughput"""
    mfu: float
    """model FLOPs utilization (fraction of peak)"""
    hfu: float
    """hardware FLOPs utilization: MFU plus recomputation"""
    tflops_per_gpu_model: float
    tflops_per_gpu_hardware: float
    memory_per_gpu_gib: MemoryPerGPU
    memory_capacity_gib: float
    time_breakdown_s: TimeBreakdown
    breakdown_stage: int = 0
    """the pipeline stage (0-based) the breakdown is read from: the one with the most work of its own"""
    infeasible_reason: str | None = None
    """why the layout does not fit (None when it fits)"""
    job: JobSummary | None = None
    """the whole run; None without ``training.total_tokens`` or when the layout does not fit"""
    timeline: list[tuple[int, str, int, int, float, float]] = field(default_factory=list, repr=False, metadata=NOT_SUMMARY)
    """one step's passes: (stage, pass, chunk, micro-batch, start s, end s)"""
    time_to_train_samples_days: list[float] = field(default_factory=list, repr=False, metadata=NOT_SUMMARY)
    """time to train of each Monte Carlo run"""

    @property
    def feasible(self) -> bool:
        """A simulated layout is feasible when it fits in memory (a layout that does not divide raises)."""
        return self.fits_in_memory

    @classmethod
    def build(cls, *, sc: TrainingScenario, model: ModelSpec, hw: HardwareProfile, lay: Layout, micro_batch: int,
              microbatches: int, step_time: float, breakdown: dict[str, float], memory: MemoryBreakdown,
              fits: bool, mfu: float, hfu: float, tokens: float, job: JobOutcome | None,
              timeline: list[tuple[int, str, int, int, float, float]], breakdown_stage: int = 0) -> TrainingResult:
        peak = hw.peak_flops(sc.training.precision)
        mem = memory.gib()
        reason = None
        if not fits:
            reason = (f"needs {memory.total / GIB:.1f} GiB per GPU, {hw.name} has {hw.memory_gib:.0f} GiB "
                      f"(params {mem['params']:.1f}, grads {mem['grads']:.1f}, optimizer "
                      f"{mem['optimizer']:.1f}, activations {mem['activations']:.1f}, "
                      f"buffers {mem['buffers']:.1f})")
        run = None
        if job is not None:
            assert sc.training.total_tokens is not None
            run = JobSummary.build(job, total_tokens=sc.training.total_tokens, gpus=lay.gpus)
        return cls(
            scenario=sc, name=sc.name, model=model.name, params_b=rounded(model.total_params() / 1e9), hardware=hw.name,
            gpus=lay.gpus, layout=TrainingLayoutInfo.build(
                lay, micro_batch, microbatches, sc.parallelism.schedule), fits_in_memory=fits,
            iteration_time_s=rounded(step_time), tokens_per_s=rounded(tokens / step_time), mfu=rounded(mfu, 4),
            hfu=rounded(hfu, 4), tflops_per_gpu_model=rounded(mfu * peak / 1e12, 4),
            tflops_per_gpu_hardware=rounded(hfu * peak / 1e12, 4),
            memory_per_gpu_gib=MemoryPerGPU(**{k: rounded(v, 5) for k, v in mem.items()}),
            memory_capacity_gib=hw.memory_gib, time_breakdown_s=TimeBreakdown.build(breakdown),
            breakdown_stage=breakdown_stage, infeasible_reason=reason, job=run, timeline=timeline,
            time_to_train_samples_days=[float(d) for d in job.days] if job is not None else [])

    @property
    def summary(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "kind": self.kind, "name": self.name, "model": self.model, "params_b": self.params_b,
            "hardware": self.hardware, "gpus": self.gpus, "layout": self.layout.to_dict(), "feasible": self.feasible,
            "fits_in_memory": self.fits_in_memory, "iteration_time_s": self.iteration_time_s,
            "tokens_per_s": self.tokens_per_s, "mfu": self.mfu, "hfu": self.hfu,
            "tflops_per_gpu_model": self.tflops_per_gpu_model, "tflops_per_gpu_hardware": self.tflops_per_gpu_hardware,
            "memory_per_gpu_gib": self.memory_per_gpu_gib.to_dict(), "memory_capacity_gib": self.memory_capacity_gib,
            "time_breakdown_s": self.time_breakdown_s.to_dict(), "breakdown_stage": self.breakdown_stage,
        }
        if self.infeasible_reason is not None:
            s["infeasible_reason"] = self.infeasible_reason
        if self.job is not None:
            s.update(self.job.to_dict())
        return s

    # ---- views ------------------------------------------------------------------------------------
    def timeline_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.timeline, columns=TIMELINE_COLUMNS)

    def pipeline_busy(self, bins: int = 60) -> list[float]:
        """Share of pipeline stages computing in each of ``bins`` equal slices of the step."""
        return pipeline_busy(self.timeline_frame(), bins)


def pipeline_busy(timeline: pd.DataFrame, bins: int = 60) -> list[float]:
    """Share of pipeline stages computing in each of ``bins`` equal slices of one training step,
    from the step's timeline (one row per forward/backward pass with ``stage``, ``start_s`` and
    ``end_s``): the warm-up and drain of the pipeline show as the ramps at either end."""
    if len(timeline) == 0:
        return []
    start, end = timeline.start_s.to_numpy()[:, None], timeline.end_s.to_numpy()[:, None]
    edges = np.linspace(0.0, float(end.max()), bins + 1)
    overlap = (np.minimum(end, edges[1:]) - np.maximum(start, edges[:-1])).clip(min=0.0)
    # passes a schedule overlaps (dualpipe's forward-and-backward slots) share their stage's time
    ids, stage = np.unique(timeline.stage.to_numpy(), return_inverse=True)
    per_stage = np.zeros((len(ids), bins))
    np.add.at(per_stage, stage, overlap)
    overlap = np.minimum(per_stage, np.diff(edges))
    stages = len(ids)
    return [float(x) for x in overlap.sum(axis=0) / (np.diff(edges) * stages)]
