"""What the TUI shows, as plain data: editable fields per scenario kind, headline rows of a result,
comparisons. No Textual here (a test checks), so it is testable on its own and the widgets stay dumb."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from simulator import CapsimError, parse_scenario
from simulator.files import read_yaml
from simulator.scenario import apply_overrides, scenario_yaml
from simulator.serving import ServingResult
from simulator.training import TrainingResult

TRAINING_FIELDS = [
    "model", "hardware", "cluster.nodes", "cluster.gpus_per_node", "parallelism.tp", "parallelism.pp",
    "parallelism.virtual_stages", "parallelism.sequence_parallel", "parallelism.zero_stage", "parallelism.schedule",
    "training.seq_len", "training.global_batch", "training.micro_batch", "training.recompute", "training.precision",
    "training.total_tokens", "reliability.node_mtbf_hours", "pricing.provider", "pricing.market",
]
SERVING_FIELDS = [
    "model", "hardware", "precision", "replica.tp", "replica.batching", "replica.max_num_seqs",
    "replica.max_batched_tokens", "cluster.replicas", "cluster.router", "workload.arrival.process",
    "workload.arrival.rate_rps", "workload.arrival.requests", "workload.duration_s", "autoscaling.policy",
    "autoscaling.target", "autoscaling.max_replicas", "slo.ttft_p99_s", "slo.tpot_p99_s", "pricing.provider",
    "pricing.market",
]
DEFAULT = {"kind": "serving", "name": "llama3-8b-chat", "model": "llama-3.1-8b", "hardware": "h100-sxm",
           "workload": {"arrival": {"process": "poisson", "rate_rps": 4, "requests": 1000}},
           "slo": {"ttft_p99_s": 1.0, "tpot_p99_s": 0.05}}


def _get(doc: dict[str, Any], key: str) -> Any:
    node: Any = doc
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass
class Session:
    """The scenario being edited: a YAML document plus the user's edits, validated on every change."""

    doc: dict[str, Any]
    source: str = "default scenario"
    edits: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | None) -> Session:
        if not path:
            return cls(copy.deepcopy(DEFAULT))
        doc = read_yaml(path, "scenario file")     # missing, a folder, binary, not UTF-8, bad YAML: a clear error
        parse_scenario(doc, where=path)
        return cls(doc, path)

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", "serving"))

    def fields(self) -> list[tuple[str, str]]:
        keys = TRAINING_FIELDS if self.kind == "training" else SERVING_FIELDS
        full = self.scenario_doc()
        return [(k, self.edits.get(k, _fmt(_get(full, k)))) for k in keys]

    def scenario_doc(self) -> dict[str, Any]:
        """The validated scenario as a full document (defaults filled in); the raw one if invalid."""
        try:
            return self.scenario().model_dump(mode="json")
        except CapsimError:
            return self.doc

    def set(self, key: str, text: str) -> str | None:
        """Record an edit; return the validation error for the whole scenario, or None."""
        self.edits[key] = text
        return self.error()

    def overrides(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.edits.items() if v.strip() != ""]

    def error(self) -> str | None:
        """Schema errors, and what the simulators would refuse (layout, memory) — checked without simulating."""
        try:
            check(self.scenario())
        except CapsimError as e:
            return str(e)
        return None

    def scenario(self) -> Any:
        return parse_scenario(apply_overrides(self.doc, self.overrides()), where=self.source)

    def run(self) -> TrainingResult | ServingResult:
        from simulator import simulate_serving, simulate_training

        sc = self.scenario()
        return simulate_training(sc) if sc.kind == "training" else simulate_serving(sc)

    def yaml(self) -> str:
        return scenario_yaml(self.scenario())


def check(sc: Any) -> None:
    """The cheap checks each simulator runs first: a training layout that divides, a serving replica
    whose weights fit and whose TP divides the heads. Raises CapsimError."""
    from simulator.catalog import get_model
    from simulator.hardware import get_profile

    if sc.kind == "training":
        from simulator.training.layout import resolve_layout

        resolve_layout(sc, get_model(sc.model), get_profile(sc.hardware))
    else:
        from simulator.serving.simulate import build_replica_model, stage_scenarios

        for _, stage in stage_scenarios(sc):
            build_replica_model(stage)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return yaml.safe_dump(v, default_flow_style=True).strip()
    return str(v)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:,.1f} ms"


def headline(r: TrainingResult | ServingResult) -> list[tuple[str, str]]:
    """(label, value) rows summarising a result, the same numbers as ``capsim train``/``serve``."""
    if isinstance(r, TrainingResult):
        lay = r.layout
        rows = [("layout", f"TP{lay.tp} PP{lay.pp} DP{lay.dp} mb {lay.micro_batch} {lay.recompute}"),
                ("iteration", f"{r.iteration_time_s:.3f} s"), ("tokens/s", f"{r.tokens_per_s:,.0f}"),
                ("MFU", f"{100 * r.mfu:.1f}%"),
                ("memory/GPU", f"{r.memory_per_gpu_gib.total:.1f} of {r.memory_capacity_gib:.0f} GiB"
                 + ("" if r.fits_in_memory else " DOES NOT FIT"))]
        if r.job is not None:
            rows += [("time to train", f"{r.job.time_to_train_days:.1f} days"), ("cost", f"${r.job.cost_usd:,.0f}"),
                     ("energy", f"{r.job.energy_kwh:,.0f} kWh")]
        return rows
    att, cpm = r.slo_attainment, r.cost_per_million_tokens_usd
    return [("requests", f"{r.completed:,} done, {r.rejected:,} rejected"),
            ("throughput", f"{r.throughput_rps:,.2f} req/s, {r.output_tokens_per_s:,.0f} tok/s"),
            ("TTFT p50/p99", f"{_ms(r.ttft_s.p50)} / {_ms(r.ttft_s.p99)}"),
            ("TPOT p50/p99", f"{_ms(r.tpot_s.p50)} / {_ms(r.tpot_s.p99)}"),
            ("E2E p50/p99", f"{r.e2e_s.p50 or 0:,.2f} / {r.e2e_s.p99 or 0:,.2f} s"),
            ("SLO attainment", "-" if att is None else f"{100 * att:.2f}% ({'met' if r.slo_met else 'missed'})"),
            ("replicas", f"mean {r.replicas.mean}, max {r.replicas.max}"),
            ("GPU busy / MFU", f"{100 * r.gpu_utilization:.1f}% / {100 * r.mfu:.1f}%"),
            ("$/hour", f"${r.usd_per_hour:,.2f}"),
            ("$/M tokens", "-" if cpm is None else f"${cpm:,.3f}")]


Metric = Callable[[Any], float | None]

# per kind: (label, value of a result, +1 when higher is better / -1 when lower is)
COMPARE: dict[str, list[tuple[str, Metric, int]]] = {
    "training": [("iteration_time_s", lambda r: r.iteration_time_s, -1), ("tokens_per_s", lambda r: r.tokens_per_s, 1),
                 ("mfu", lambda r: r.mfu, 1),
                 ("time_to_train_days", lambda r: r.job.time_to_train_days if r.job else None, -1),
                 ("cost_usd", lambda r: r.job.cost_usd if r.job else None, -1)],
    "serving": [("throughput_rps", lambda r: r.throughput_rps, 1), ("ttft_s.p99", lambda r: r.ttft_s.p99, -1),
                ("tpot_s.p99", lambda r: r.tpot_s.p99, -1), ("e2e_s.p99", lambda r: r.e2e_s.p99, -1),
                ("slo_attainment", lambda r: r.slo_attainment, 1), ("usd_per_hour", lambda r: r.usd_per_hour, -1),
                ("cost_per_million_tokens_usd", lambda r: r.cost_per_million_tokens_usd, -1)]}


def compare(results: Sequence[TrainingResult | ServingResult]) -> tuple[list[str], list[list[tuple[str, int]]]]:
    """Rows of (text, verdict) per metric and run: verdict +1 better than the first run, -1 worse, 0 same."""
    rows = []
    for label, metric, sense in COMPARE[results[0].kind]:
        vals = [metric(r) for r in results]
        row = [(label, 0)]
        first = vals[0]
        for v in vals:
            if v is None or first is None:
                row.append(("-", 0))
                continue
            rel = (v - first) / abs(first) if first else 0.0
            verdict = 0 if abs(rel) < 0.005 else (1 if rel * sense > 0 else -1)
            row.append((f"{v:,.4g}" + (f" ({100 * rel:+.0f}%)" if verdict else ""), verdict))
        rows.append(row)
    header = ["metric", *(f"#{i + 1} {r.name}" for i, r in enumerate(results))]
    return header, rows
