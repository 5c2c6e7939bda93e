"""What the TUI shows, as plain data: editable fields per scenario kind, headline rows of a result,
comparisons. No Textual here (a test checks), so it is testable on its own and the widgets stay dumb."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel

from simulator import CapsimError, parse_scenario
from simulator.catalog import get_model
from simulator.files import read_yaml
from simulator.result_views import serving_throughput_text
from simulator.scenario import apply_overrides, scenario_yaml
from simulator.serving import ServingResult
from simulator.serving.engines.presets import preset_name
from simulator.serving.multi_result import MultiModelResult
from simulator.training import TrainingResult

TRAINING_FIELDS = [
    "model", "hardware", "cluster.nodes", "cluster.gpus_per_node", "parallelism.tp", "parallelism.pp",
    "parallelism.virtual_stages", "parallelism.sequence_parallel", "parallelism.zero_stage", "parallelism.schedule",
    "training.seq_len", "training.global_batch", "training.micro_batch", "training.recompute", "training.precision",
    "training.total_tokens", "reliability.node_mtbf_hours", "pricing.provider", "pricing.market",
]
MOE_TRAINING_FIELDS = ["training.moe_dispatcher", "training.moe_a2a_overlap"]
SERVING_FIELDS = [
    "model", "hardware", "precision", "replica.tp", "replica.batching", "replica.max_num_seqs",
    "replica.max_batched_tokens", "cluster.replicas", "cluster.router", "workload.arrival.process",
    # the chosen arrival process's own keys follow it (rate_rps, mean_rps, concurrency, path, ...)
    "workload.duration_s", "autoscaling.policy",
    "autoscaling.target", "autoscaling.max_replicas", "slo.ttft_p99_s", "slo.tpot_p99_s", "pricing.provider",
    "pricing.market",
]
# with services: each service's own keys; the top-level replica, cluster and autoscaling do not apply
# several models on one GPU pool (kind: multi_model): the pool's keys, then each deployment's
MULTI_MODEL_FIELDS = ["pool.hardware", "pool.gpus", "policy.kind", "pricing.provider", "pricing.market"]
DEPLOYMENT_FIELDS = ["model", "replica.tp", "cluster.replicas", "workload.arrival.process", "slo.ttft_p99_s",
                     "slo.tpot_p99_s"]
SERVICE_FIELDS = ["model", "hardware", "replica.batching", "replica.tp", "cluster.replicas", "autoscaling.policy",
                  "cache_hit_rate"]
PER_SERVICE = ("replica.", "cluster.", "autoscaling.")
TAGS = ("process", "batching", "policy", "schedule", "dist")     # keys that pick a variant and its keys
PRECISION_KEYS = ("precision", "training.precision")
DEFAULT = {"kind": "serving", "name": "llama3-8b-chat", "model": "llama-3.1-8b", "hardware": "h100-sxm",
           "workload": {"arrival": {"process": "poisson", "rate_rps": 4, "requests": 1000}},
           "slo": {"ttft_p99_s": 1.0, "tpot_p99_s": 0.05}}


def _get(doc: dict[str, Any], key: str) -> Any:
    node: Any = doc
    for part in key.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(doc: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (dotted; a number indexes a list, as in ``services.0.cluster.replicas``) in ``doc``."""
    parts = key.split(".")
    node: Any = doc
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        nxt = node.get(part) if isinstance(node, dict) else None
        if not isinstance(nxt, dict | list):
            nxt = node[part] = {}
        node = nxt
    node[parts[-1]] = value


@dataclass(frozen=True)
class Field:
    """One editable key: its dotted path, the label shown, its value as text, and its allowed values
    (an enum or a variant's tag: a choice list; None: free text)."""

    key: str
    label: str
    value: str
    choices: tuple[str, ...] | None = None


_SCHEMAS: dict[str, dict[str, Any]] = {}


def _schema(kind: str) -> dict[str, Any]:
    if kind not in _SCHEMAS:
        from simulator.scenario import MultiModelScenario, ServingScenario, TrainingScenario

        classes: dict[str, type[BaseModel]] = {"training": TrainingScenario, "multi_model": MultiModelScenario}
        cls = classes.get(kind, ServingScenario)
        _SCHEMAS[kind] = cls.model_json_schema()
    return _SCHEMAS[kind]


def _expand(root: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives a schema node stands for ($ref followed, anyOf/oneOf/allOf members flattened)."""
    if "$ref" in node:
        return _expand(root, root["$defs"][node["$ref"].rsplit("/", 1)[-1]])
    for k in ("anyOf", "oneOf", "allOf"):
        if k in node:
            return [x for member in node[k] for x in _expand(root, member)]
    if node.get("type") == "array" and "items" in node:
        return [node]
    return [node]


def _at(kind: str, key: str) -> list[dict[str, Any]]:
    """The schema alternatives at a dotted key (a list index steps into the list's items)."""
    root = _schema(kind)
    cands = [root]
    for part in key.split("."):
        nxt: list[dict[str, Any]] = []
        for c in cands:
            if part.isdigit() and c.get("type") == "array":
                nxt += _expand(root, c.get("items", {}))
            elif part in c.get("properties", {}):
                nxt += _expand(root, c["properties"][part])
        cands = nxt
    return cands


def choices_for(kind: str, key: str) -> tuple[str, ...] | None:
    """The values a key allows when they are a closed set (an enum, a boolean, a variant's tag), else None."""
    if key in PRECISION_KEYS:
        from simulator.precision import FORMATS

        return tuple(FORMATS)
    vals: list[str] = []
    for c in _at(kind, key):
        if "const" in c:
            vals.append(_fmt(c["const"]))
        elif "enum" in c:
            vals += [_fmt(v) for v in c["enum"] if v is not None]
        elif c.get("type") == "boolean":
            vals += ["true", "false"]
        elif c.get("type") not in (None, "null"):
            return None          # free values allowed beside the listed ones
    out = tuple(dict.fromkeys(vals))
    return out or None


def variant_keys(kind: str, parent: str, tag: str, value: str) -> list[str] | None:
    """The keys of the variant at ``parent`` whose ``tag`` is ``value`` (None: no such variant)."""
    for c in _at(kind, parent):
        prop = c.get("properties", {})
        if _fmt(prop.get(tag, {}).get("const")) == value:
            return list(prop)
    return None


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

    def keys(self) -> list[tuple[str, str]]:
        """(key, label) of every editable field: the kind's main keys, the arrival process's own keys after
        it, and with ``services:`` each service's keys instead of the top-level replica, cluster and
        autoscaling."""
        full = self.scenario_doc()
        if self.kind == "training":
            keys = list(TRAINING_FIELDS)
            if self._trains_moe():         # an MoE model's own keys: its expert parallelism and dispatcher
                keys[keys.index("parallelism.pp") + 1:1] = ["parallelism.ep"]
                keys[keys.index("training.precision") + 1:1] = MOE_TRAINING_FIELDS
            return [(k, k) for k in keys]
        if self.kind == "multi_model":
            rows = [(k, k) for k in MULTI_MODEL_FIELDS]
            for i, d in enumerate(full.get("deployments") or []):
                name = d.get("name", str(i)) if isinstance(d, dict) else str(i)
                rows += [(f"deployments.{i}.{k}", f"{name} · {k}") for k in DEPLOYMENT_FIELDS]
            return rows
        services = full.get("services") or self.doc.get("services") or []
        out: list[tuple[str, str]] = []
        for k in SERVING_FIELDS:
            if services and k.startswith(PER_SERVICE):
                continue
            out.append((k, k))
            if k == "workload.arrival.process":
                process = self.edits.get(k) or _fmt(_get(full, k)) or "poisson"
                own = variant_keys(self.kind, "workload.arrival", "process", process) or []
                out += [(f"workload.arrival.{n}", f"workload.arrival.{n}") for n in own if n != "process"]
        for i, st in enumerate(services):
            name = st.get("name", str(i)) if isinstance(st, dict) else str(i)
            out += [(f"services.{i}.{k}", f"{name} · {k}") for k in SERVICE_FIELDS]
        return out

    def _trains_moe(self) -> bool:
        """Whether the (valid) scenario trains a mixture-of-experts model."""
        try:
            return get_model(self.scenario().model).moe is not None
        except (CapsimError, ValueError, KeyError):
            return False

    def fields(self) -> list[Field]:
        full = self.scenario_doc()
        return [Field(k, label, self.edits.get(k, _fmt(_get(full, k))), choices_for(self.kind, k))
                for k, label in self.keys()]

    def scenario_doc(self) -> dict[str, Any]:
        """The validated scenario as a full document (defaults filled in); the raw one if invalid."""
        try:
            return self.scenario().model_dump(mode="json")
        except CapsimError:
            return self.doc

    def set(self, key: str, text: str) -> str | None:
        """Record an edit; return the validation error for the whole scenario, or None. A new value of a
        variant's tag (``workload.arrival.process``, ``replica.batching``, ...) drops the keys of the old
        variant that the new one does not take (a diurnal arrival has no ``rate_rps``)."""
        parent, _, tag = key.rpartition(".")
        if tag in TAGS and text != self.edits.get(key, _fmt(_get(self.scenario_doc(), key))):
            keep = variant_keys(self.kind, parent, tag, text)
            if keep is not None:
                node = _get(self.doc, parent) if parent else self.doc
                if isinstance(node, dict):
                    for k in [k for k in node if k not in keep]:
                        del node[k]
                for k in [k for k in self.edits if k.startswith(parent + ".") and
                          k[len(parent) + 1:].split(".")[0] not in keep]:
                    del self.edits[k]
        self.edits[key] = text
        return self.error()

    def overrides(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.edits.items() if v.strip() != "" and not k.startswith("services.")]

    def edited_doc(self) -> dict[str, Any]:
        """The document with every edit applied (a service's keys by their list index)."""
        doc = apply_overrides(self.doc, self.overrides())
        for k, v in self.edits.items():
            if k.startswith("services.") and v.strip() != "":
                try:
                    value = yaml.safe_load(v)
                except yaml.YAMLError:
                    value = v
                _set(doc, k, value)
        return doc

    def error(self) -> str | None:
        """Schema errors, and what the simulators would refuse (layout, memory) — checked without simulating."""
        try:
            check(self.scenario())
        except CapsimError as e:
            return str(e)
        return None

    def scenario(self) -> Any:
        return parse_scenario(self.edited_doc(), where=self.source)

    def memory_warning(self) -> str | None:
        """A valid training scenario whose busiest stage does not fit in GPU memory: what it needs of what
        the GPU has (it still runs: the result flags it as not fitting). None when it fits or is invalid."""
        if self.kind != "training" or self.error() is not None:
            return None
        return memory_fit(self.scenario())[1]

    def status(self) -> tuple[str, str]:
        """What the editor's status line shows: ("error" | "warning" | "ok", text)."""
        err = self.error()
        if err is not None:
            return "error", err
        warn = self.memory_warning()
        if warn is not None:
            return "warning", warn
        if self.kind == "training":
            return "ok", "✓ valid scenario · " + str(memory_fit(self.scenario())[0])
        return "ok", "✓ valid scenario"

    def run(self) -> TrainingResult | ServingResult | MultiModelResult:
        from simulator import simulate_multi_model, simulate_serving, simulate_training

        sc = self.scenario()
        if sc.kind == "multi_model":
            return simulate_multi_model(sc)
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
    elif sc.kind == "multi_model":
        from simulator.serving.simulate import build_replica_model

        for i in range(len(sc.deployments)):
            build_replica_model(sc.serving_scenario(i))
    else:
        from simulator.serving.simulate import build_replica_model, stage_scenarios

        for _, stage in stage_scenarios(sc):
            build_replica_model(stage)


def memory_fit(sc: Any) -> tuple[str, str | None]:
    """(what the busiest pipeline stage needs per GPU, and a warning when that exceeds the GPU's memory)
    for a training scenario, from the same memory plan the simulation uses (micro_batch auto: the
    smallest, 1)."""
    from simulator.catalog import get_model
    from simulator.hardware import get_profile
    from simulator.training.layout import resolve_layout
    from simulator.training.simulate import step_memory

    model, hw = get_model(sc.model), get_profile(sc.hardware)
    lay, mb = resolve_layout(sc, model, hw, 1 if sc.training.micro_batch == "auto" else None)
    mem = step_memory(model, hw, lay, mb, sc)
    need, have = mem.total / 2**30, hw.memory_gib
    text = f"{need:.1f} of {have:.0f} GiB per GPU"
    if mem.total <= hw.memory_bytes:
        return text, None
    parts = ", ".join(f"{k} {getattr(mem, k) / 2**30:.1f}" for k in ("params", "grads", "optimizer", "activations",
                                                                       "buffers"))
    return text, (f"✗ does not fit in memory: {text} on the busiest pipeline stage ({parts} GiB); raise "
                  "parallelism.tp or pp, the ZeRO stage or recompute, or lower training.micro_batch "
                  "(ctrl+r still runs it and reports it as not fitting)")


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


def multi_model_headline(r: MultiModelResult) -> list[tuple[str, str]]:
    """The pool's rows, then one per deployment: its SLO attainment, TTFT p99, replicas and GPU-hours."""
    p = r.pool
    rows = [("pool", f"{p.gpus} × {p.hardware}, policy {r.policy}, {p.moves} replicas moved"),
            ("pool cost", f"${p.cost_usd:,.2f} (${p.usd_per_hour:,.2f}/h)"),
            ("GPUs held / busy", f"{100 * p.allocation:.1f}% / {100 * p.utilization:.1f}%")]
    for name, d in r.deployments.items():
        att = "-" if d.slo_attainment is None else f"{100 * d.slo_attainment:.2f}% ({'met' if d.slo_met else 'missed'})"
        ttft = _ms(d.ttft_s.p99) if d.ttft_s is not None else "-"
        rows.append((name, f"SLO {att}, TTFT p99 {ttft}, replicas mean {d.replicas.mean} max {d.replicas.max}, "
                           f"{d.gpu_hours:,.2f} GPU-h"))
    return rows


def headline(r: TrainingResult | ServingResult | MultiModelResult) -> list[tuple[str, str]]:
    """(label, value) rows summarising a result, the same numbers as ``capsim train``/``serve``."""
    if isinstance(r, MultiModelResult):
        return multi_model_headline(r)
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
    if not r.generative:     # one forward per request: latency in ms, inputs per second, no TTFT/TPOT/KV
        return [("requests", f"{r.completed:,} done, {r.rejected:,} rejected"),
                ("throughput", serving_throughput_text(r)),
                ("latency p50/p99", f"{_ms(r.e2e_s.p50)} / {_ms(r.e2e_s.p99)} per {r.item}"),
                ("SLO attainment", "-" if att is None else f"{100 * att:.2f}% ({'met' if r.slo_met else 'missed'})"),
                ("replicas", f"mean {r.replicas.mean}, max {r.replicas.max}"),
                ("saturation", _pct(r.saturation) + " of capacity"),
                ("GPU busy (DCGM)", f"{100 * r.gpu_utilization:.1f}%, MFU {100 * r.mfu:.1f}%"),
                ("$/hour", f"${r.usd_per_hour:,.2f}"),
                (f"$/M {r.item}s", "-" if r.cost_per_million_items_usd is None
                 else f"${r.cost_per_million_items_usd:,.2f}")]
    ttft, tpot = r.ttft_s, r.tpot_s
    assert ttft is not None and tpot is not None    # a generative model's result has both
    return [("requests", f"{r.completed:,} done, {r.rejected:,} rejected"),
            ("throughput", f"{r.throughput_rps:,.2f} req/s, {r.output_tokens_per_s:,.0f} tok/s"),
            ("TTFT p50/p99", f"{_ms(ttft.p50)} / {_ms(ttft.p99)}"),
            ("TPOT p50/p99", f"{_ms(tpot.p50)} / {_ms(tpot.p99)}"),
            ("E2E p50/p99", f"{r.e2e_s.p50 or 0:,.2f} / {r.e2e_s.p99 or 0:,.2f} s"),
            ("SLO attainment", "-" if att is None else f"{100 * att:.2f}% ({'met' if r.slo_met else 'missed'})"),
            ("replicas", f"mean {r.replicas.mean}, max {r.replicas.max}"),
            ("saturation / MBU", f"{_pct(r.saturation)} of capacity / {_pct(r.mbu)}"),
            ("GPU busy (DCGM)", f"{100 * r.gpu_utilization:.1f}%, MFU {100 * r.mfu:.1f}%"),
            ("$/hour", f"${r.usd_per_hour:,.2f}"),
            ("$/M tokens", "-" if cpm is None else f"${cpm:,.3f}"),
            *([("engine", _engine_text(r.engine_settings))] if r.engine_settings else [])]


def _engine_text(es: dict[str, Any]) -> str:
    """The engine preset in a few words (the report and ``capsim serve`` print every setting):
    ``trtllm 1.3+ preset, host 3.4 µs/request``."""
    host = es.get("host_us_per_request")
    return f"{preset_name(es)} preset" + (f", host {host:g} µs/request" if host else "")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def latency_table(r: ServingResult) -> list[tuple[str, Any]]:
    """(name, percentiles) per latency the result has: a generative model's TTFT, TPOT, end-to-end and
    queueing; one forward per request: its latency (end to end) and queueing."""
    if not r.generative:
        return [("latency", r.e2e_s), ("queue", r.queue_s)]
    return [("ttft", r.ttft_s), ("tpot", r.tpot_s), ("e2e", r.e2e_s), ("queue", r.queue_s)]


Metric = Callable[[Any], float | None]

# per kind: (label, value of a result, +1 when higher is better / -1 when lower is); short labels so
# that three runs fit an 80-column terminal
COMPARE: dict[str, list[tuple[str, Metric, int]]] = {
    "training": [("iteration s", lambda r: r.iteration_time_s, -1), ("tokens/s", lambda r: r.tokens_per_s, 1),
                 ("MFU", lambda r: r.mfu, 1),
                 ("days to train", lambda r: r.job.time_to_train_days if r.job else None, -1),
                 ("cost $", lambda r: r.job.cost_usd if r.job else None, -1)],
    "serving": [("req/s", lambda r: r.throughput_rps, 1),
                ("TTFT p99 s", lambda r: r.ttft_s.p99 if r.ttft_s else None, -1),
                ("TPOT p99 s", lambda r: r.tpot_s.p99 if r.tpot_s else None, -1),
                ("E2E p99 s", lambda r: r.e2e_s.p99, -1),
                ("SLO attained", lambda r: r.slo_attainment, 1), ("$/hour", lambda r: r.usd_per_hour, -1),
                ("$/M tokens", lambda r: r.cost_per_million_tokens_usd, -1)],
    "multi_model": [("pool $", lambda r: r.pool.cost_usd, -1), ("GPU busy", lambda r: r.pool.utilization, 1),
                    ("worst SLO", lambda r: min((d.slo_attainment for d in r.deployments.values()
                                                 if d.slo_attainment is not None), default=None), 1)]}
LABEL_WIDTH = 16


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        return {k: v for key, x in d.items() for k, v in _flat(x, f"{prefix}{key}.").items()}
    if isinstance(d, list):
        return {k: v for i, x in enumerate(d) for k, v in _flat(x, f"{prefix}{i}.").items()}
    return {prefix[:-1]: d}


def run_differences(results: Sequence[TrainingResult | ServingResult | MultiModelResult]) -> list[list[str]]:
    """Per run, the scenario keys whose values differ from run #1's, as ``key=value`` (run #1: none)."""
    flat = [_flat(r.scenario.model_dump(mode="json")) for r in results]
    out = []
    for f in flat:
        keys = sorted(k for k in set(f) | set(flat[0]) if f.get(k) != flat[0].get(k))
        out.append([f"{k}={_fmt(f.get(k))}" for k in keys])
    return out


def run_labels(results: Sequence[TrainingResult | ServingResult | MultiModelResult]) -> list[str]:
    """A short, distinct column label per run: its number and what it changed from run #1 (the last
    part of each key), cut to :data:`LABEL_WIDTH` characters."""
    labels = []
    for i, diff in enumerate(run_differences(results)):
        short = ",".join(k.rsplit(".", 1)[-1] + "=" + v for k, v in (d.split("=", 1) for d in diff))
        text = f"#{i + 1} " + (short or ("base" if i == 0 else "same"))
        labels.append(text if len(text) <= LABEL_WIDTH else text[:LABEL_WIDTH - 1] + "…")
    return labels


def compare(results: Sequence[TrainingResult | ServingResult | MultiModelResult]
            ) -> tuple[list[str], list[list[tuple[str, int]]]]:
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
    header = ["metric", *run_labels(results)]
    return header, rows
