"""One configuration of a sweep: simulate it and reduce the result to a row of numbers.

Runs in worker processes (local pool or Ray), so it takes and returns plain data.
"""

from __future__ import annotations

from typing import Any

from ..catalog import get_model
from ..errors import CapsimError
from ..hardware import get_profile
from ..scenario import ServingScenario, TrainingScenario, parse_scenario
from ..training.schedules import OneFOneBConfig, make_schedule

RATE_STEPS = 7          # bisection steps for the maximum sustainable rate
MAX_RATE_FACTOR = 64.0  # search up to 64× the scenario's rate


def _training_row(sc: TrainingScenario) -> dict[str, Any]:
    from ..training.layout import resolve_layout
    from ..training.simulate import simulate_training, step_memory

    model, hw = get_model(sc.model), get_profile(sc.hardware)
    if sc.training.micro_batch != "auto":
        # prune what cannot fit before simulating the pipeline
        lay, mb = resolve_layout(sc, model, hw)
        mem = step_memory(model, hw, lay, mb, sc)
        if mem.total > hw.memory_bytes:
            return {"feasible": False, "fits_in_memory": False, "memory_gib": mem.total / 2**30,
                    "error": f"needs {mem.total / 2**30:.1f} GiB per GPU of {hw.memory_gib:.0f}"}
    r = simulate_training(sc)
    s = r.summary
    row = {"feasible": bool(s["fits_in_memory"]), "fits_in_memory": s["fits_in_memory"],
           "memory_gib": s["memory_per_gpu_gib"]["total"], "iteration_time_s": s["iteration_time_s"],
           "tokens_per_s": s["tokens_per_s"], "mfu": s["mfu"], "gpus": s["gpus"],
           "micro_batch": s["layout"]["micro_batch"],
           "gpu_seconds_per_step": s["iteration_time_s"] * s["gpus"], "error": None}
    for k in ("time_to_train_days", "cost_usd", "gpu_hours", "energy_kwh"):
        row[k] = s.get(k)
    if not s["fits_in_memory"]:
        row["error"] = s.get("infeasible_reason")
    return row


def _serving_metrics(s: dict[str, Any]) -> dict[str, Any]:
    return {"feasible": True, "completed": s["completed"], "rejected": s["rejected"],
            "throughput_rps": s["throughput_rps"], "output_tokens_per_s": s["output_tokens_per_s"],
            "ttft_p99_s": s["ttft_s"]["p99"], "tpot_p99_s": s["tpot_s"]["p99"], "e2e_p99_s": s["e2e_s"]["p99"],
            "ttft_p50_s": s["ttft_s"]["p50"], "slo_attainment": s["slo_attainment"], "slo_met": s["slo_met"],
            "gpu_utilization": s["gpu_utilization"], "usd_per_hour": s["usd_per_hour"],
            "cost_per_million_tokens_usd": s["cost_per_million_tokens_usd"], "gpus": s["gpus"], "error": None}


def _meets(doc: dict[str, Any], rate: float) -> bool:
    from ..serving import simulate_serving

    d = {**doc, "workload": {**doc["workload"], "arrival": {**doc["workload"]["arrival"], "rate_rps": rate}}}
    r = simulate_serving(parse_scenario(d))
    return bool(r["slo_met"])


def max_sustainable_rate(doc: dict[str, Any]) -> float:
    """Largest arrival rate meeting the SLO (doubling, then bisection over RATE_STEPS steps)."""
    arrival = doc["workload"]["arrival"]
    if "rate_rps" not in arrival:
        raise CapsimError("max-rate search needs an arrival process with rate_rps (poisson or gamma)")
    r0 = float(arrival["rate_rps"])
    lo, hi = 0.0, r0
    while _meets(doc, hi):
        lo, hi = hi, hi * 2
        if hi > r0 * MAX_RATE_FACTOR:
            return lo
    for _ in range(RATE_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _meets(doc, mid) else (lo, mid)
    return lo


def evaluate(doc: dict[str, Any], max_rate: bool = False) -> dict[str, Any]:
    """Simulate one configuration; errors become a row with ``feasible=False`` and the message."""
    try:
        sc = parse_scenario(doc)
        if isinstance(sc, TrainingScenario):
            return _training_row(sc)
        assert isinstance(sc, ServingScenario)
        from ..serving import simulate_serving

        row = _serving_metrics(simulate_serving(sc).summary)
        if max_rate:
            if not sc.slo.model_dump(exclude_none=True):
                raise CapsimError("max-rate search needs an SLO (slo.ttft_p99_s, tpot_p99_s or e2e_p99_s)")
            rate = max_sustainable_rate(doc)
            base = float(doc["workload"]["arrival"]["rate_rps"])
            row.update({"max_rate_rps": rate, "headroom_x": rate / base, "handles_2x": rate >= 2 * base,
                        "handles_3x": rate >= 3 * base})
        return row
    except CapsimError as e:
        return {"feasible": False, "error": str(e)}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def training_layouts(sc: TrainingScenario, *, full: bool = False) -> list[dict[str, Any]]:
    """Every layout of the model on the scenario's GPUs: TP (inside a node, dividing the heads), PP
    (dividing the layers), DP (the rest, dividing the global batch), micro-batch (dividing the
    per-rank batch, up to 8), recompute, ZeRO stage (1-3 only with DP > 1); sequence parallelism
    with TP > 1, as Megatron runs it. ``full`` adds context parallelism (2, 4 dividing the sequence,
    with TP·CP inside a node) and interleaved schedules (2 or 4 virtual stages per GPU)."""
    model = get_model(sc.model)
    gpus = sc.cluster.nodes * sc.cluster.gpus_per_node
    gb, seq = sc.training.global_batch, sc.training.seq_len
    out: list[dict[str, Any]] = []
    cps = [c for c in (1, 2, 4) if seq % c == 0] if full else [1]
    for tp in _divisors(sc.cluster.gpus_per_node):
        if model.heads % tp or gpus % tp:
            continue
        for cp in cps:
            if tp * cp > sc.cluster.gpus_per_node and cp > 1:
                continue
            for pp in _divisors(model.layers):
                if gpus % (tp * cp * pp):
                    continue
                dp = gpus // (tp * cp * pp)
                if gb % dp:
                    continue
                per_rank = gb // dp
                vs = [v for v in ((1, 2, 4) if full and pp > 1 else (1,)) if model.layers % (pp * v) == 0]
                for v in vs:
                    for mb in [b for b in _divisors(per_rank) if b <= 8]:
                        if make_schedule(OneFOneBConfig(pp=pp, virtual_stages=v), per_rank // mb).problems():
                            continue               # e.g. interleaving needs micro-batches in multiples of PP
                        for rec in ("none", "selective", "full"):
                            for zero in ((0, 1, 2, 3) if dp > 1 else (0,)):
                                c = {"parallelism.tp": tp, "parallelism.pp": pp, "parallelism.dp": dp,
                                     "parallelism.sequence_parallel": tp > 1, "parallelism.zero_stage": zero,
                                     "training.micro_batch": mb, "training.recompute": rec}
                                if full:
                                    c.update({"parallelism.cp": cp, "parallelism.virtual_stages": v,
                                              "parallelism.schedule": "interleaved" if v > 1 else "1f1b"})
                                out.append(c)
    return out
