"""Typed results: the JSON's key structure is pinned, every typed field reads what its JSON key
holds (and every key has a field), ``result["key"]`` is ``to_dict()["key"]``, and sweep rows keep
their columns."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from simulator import load_scenario, parse_scenario, simulate_serving, simulate_training
from simulator.serving import ServingResult
from simulator.sweep import evaluate
from simulator.sweep.evaluate import evaluate_row
from simulator.sweep.rows import FailedRow, OutOfMemoryRow, ServingSweepRow, TrainingSweepRow
from simulator.training import TrainingResult
from simulator.training.summary import TimeBreakdown

ROOT = Path(__file__).resolve().parents[1]
TRAIN = {"kind": "training", "model": "megatron-1.7b", "hardware": "a100-sxm-80gb", "name": "typed-train",
         "cluster": {"nodes": 1, "gpus_per_node": 8}, "parallelism": {"tp": 2, "pp": 2},
         "training": {"seq_len": 2048, "global_batch": 32, "micro_batch": 2, "total_tokens": 1e9},
         "reliability": {"node_mtbf_hours": 500, "runs": 20}}
SERVE = {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm", "name": "typed-serve",
         "workload": {"arrival": {"process": "poisson", "rate_rps": 30, "requests": 800},
                      "prompt_tokens": {"dist": "fixed", "value": 512}, "output_tokens": {"dist": "fixed", "value": 64},
                      "classes": [{"name": "gold", "priority": 2}, {"name": "bronze", "weight": 3}]},
         "replica": {"max_num_seqs": 8, "max_queue": 4}, "slo": {"ttft_p99_s": 0.5}}
CHAIN = {"kind": "serving", "name": "chain", "model": "llama-3.1-8b", "hardware": "h100-sxm",
         "workload": {"arrival": {"process": "poisson", "rate_rps": 10, "requests": 400},
                      "prompt_tokens": {"dist": "fixed", "value": 600}, "output_tokens": {"dist": "fixed", "value": 50}},
         "services": [
             {"name": "embed", "model": "bert-large", "hardware": "l4", "cache_hit_rate": 0.4,
              "replica": {"batching": "dynamic", "max_batch_size": 16, "latency_table": [[1, 0.004], [16, 0.02]]},
              "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "fixed", "value": 1}},
             {"name": "llm", "cluster": {"replicas": 2}}]}

TRAINING_KEYS = [
    "kind", "name", "model", "params_b", "hardware", "gpus", "layout", "layout.tp", "layout.pp", "layout.dp",
    "layout.cp", "layout.ep", "layout.virtual_stages", "layout.schedule", "layout.sequence_parallel", "layout.zero_stage",
    "layout.recompute", "layout.micro_batch", "layout.microbatches_per_step", "feasible", "fits_in_memory",
    "iteration_time_s", "tokens_per_s", "mfu", "hfu", "tflops_per_gpu_model", "tflops_per_gpu_hardware",
    "memory_per_gpu_gib", "memory_per_gpu_gib.params", "memory_per_gpu_gib.grads", "memory_per_gpu_gib.optimizer",
    "memory_per_gpu_gib.activations", "memory_per_gpu_gib.buffers", "memory_per_gpu_gib.total", "memory_capacity_gib",
    "time_breakdown_s", "time_breakdown_s.compute_s", "time_breakdown_s.tp_comm_s", "time_breakdown_s.cp_comm_s",
    "time_breakdown_s.ep_comm_s", "time_breakdown_s.host_overhead_s", "time_breakdown_s.pipeline_bubble_s",
    "time_breakdown_s.dp_comm_exposed_s", "time_breakdown_s.optimizer_s", "time_breakdown_s.data_loading_s",
    "breakdown_stage", "total_tokens", "iterations", "time_to_train_days", "time_to_train_days_p10", "time_to_train_days_p50",
    "time_to_train_days_p90", "compute_days_without_failures", "goodput", "failures_mean", "preemptions_mean",
    "checkpoint_interval_s", "checkpoint_interval_note", "checkpoint_write_s", "gpu_hours", "usd_per_gpu_hour",
    "price_source", "cost_usd",
    "gpu_power_w", "energy_kwh", "scenario"]
SERVING_KEYS = [
    "kind", "name", "model", "hardware", "precision", "generative", "item", "kernel_tables", "kernel_table_versions",
    *(f"kernel_table_versions.{k}" for k in ("gemm", "context_attention", "generation_attention", "collective", "moe",
                                             "quantize", "nccl")),
    "replica_layout", "replica_layout.tp", "replica_layout.pp",
    "replica_layout.batching", "replica_layout.max_num_seqs", "replica_layout.max_batched_tokens",
    "replica_layout.kv_cache_precision", "engine_settings",
    *(f"engine_settings.{k}" for k in ("engine", "engine_version", "preset", "max_num_seqs", "max_batched_tokens",
                                       "chunked_prefill", "scheduler_policy", "schedule_order", "kv_block_tokens",
                                       "kv_cache_precision", "kv_memory", "prefix_caching", "max_prefill_tokens",
                                       "mixed_chunk", "fp8_scales", "host_us_per_request", "sources")),
    *(f"engine_settings.sources.{k}" for k in ("max_num_seqs", "max_batched_tokens", "chunked_prefill",
                                               "scheduler_policy", "schedule_order", "kv_block_tokens",
                                               "kv_cache_precision", "kv_memory", "prefix_caching", "fp8_scales",
                                               "host_us_per_request")),
    "kv_cache_tokens_per_replica", "memory_per_gpu_gib",
    "memory_per_gpu_gib.capacity_gib", "memory_per_gpu_gib.weights_gib", "memory_per_gpu_gib.workspace_gib",
    "memory_per_gpu_gib.runtime_gib", "memory_per_gpu_gib.kv_cache_gib", "simulated_s", "warmup_requests",
    "measured_from_s", "arrived", "completed",
    "rejected", "rejected_by_reason", "failed", "in_flight", "retries", "replica_failures", "spot_preemptions",
    "preemptions", "throughput_rps", "items_per_s", "output_tokens_per_s", "input_tokens_per_s",
    *(f"{lat}{q}" for lat in ("ttft_s", "tpot_s", "itl_s", "e2e_s", "queue_s")
      for q in ("", ".p50", ".p90", ".p99", ".mean")),
    "replicas", "replicas.mean", "replicas.max", "replica_hours", "cold_start_s", "autoscaling", "gpus",
    "gpu_utilization", "saturation", "mbu",
    "mfu", "kv_cache_utilization", "slo", "slo.ttft_p99_s", "slo.tpot_p99_s", "slo_attainment",
    "slo_met", "usd_per_gpu_hour", "price_source", "usd_per_hour", "cost_usd", "cost_per_million_tokens_usd",
    "cost_per_million_items_usd", "energy_kwh", "items_per_joule", "warnings", "scenario"]


def key_paths(d: dict[str, Any], prefix: str = "") -> list[str]:
    """Every key of the JSON, nested ones dotted, in order; the scenario counts as one key."""
    out = []
    for k, v in d.items():
        out.append(prefix + k)
        if isinstance(v, dict) and not (prefix == "" and k == "scenario"):
            out += key_paths(v, f"{prefix}{k}.")
    return out


@pytest.fixture(scope="module")
def results() -> dict[str, TrainingResult | ServingResult]:
    return {"train": simulate_training(parse_scenario(TRAIN)),
            "oom": simulate_training(parse_scenario(TRAIN, ["model=megatron-18.4b", "parallelism.tp=1",
                                                            "parallelism.pp=1"])),
            "serve": simulate_serving(parse_scenario(SERVE)), "chain": simulate_serving(parse_scenario(CHAIN))}


def test_json_key_structure_of_the_examples_is_pinned() -> None:
    """Changing the JSON's shape must be deliberate: update these lists with it."""
    train = simulate_training(load_scenario(ROOT / "examples" / "train_gpt3_175b.yaml"))
    assert key_paths(json.loads(train.to_json())) == TRAINING_KEYS
    serve = simulate_serving(load_scenario(ROOT / "examples" / "serve_llama3_8b.yaml"))
    assert key_paths(json.loads(serve.to_json())) == SERVING_KEYS


def _same(field: Any, value: Any, where: str) -> None:
    """A typed field against its JSON value, recursively; a part's fields and its keys are the same."""
    if dataclasses.is_dataclass(field):
        assert isinstance(value, dict), where
        names = [f.name for f in dataclasses.fields(field) if getattr(field, f.name) is not None]
        assert list(value) == names, where
        for k, v in value.items():
            _same(getattr(field, k), v, f"{where}.{k}")
    elif isinstance(field, dict):
        assert list(field) == list(value), where
        for k, v in value.items():
            _same(field[k], v, f"{where}.{k}")
    elif isinstance(field, tuple):
        assert list(field) == value, where
    else:
        assert field == value, where


@pytest.mark.parametrize("name", ["train", "oom", "serve", "chain"])
def test_typed_fields_are_the_json_values(results: dict[str, Any], name: str) -> None:
    r = results[name]
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d                     # plain JSON data, nothing typed leaks out
    for key, value in d.items():
        if key == "scenario":
            assert value == json.loads(json.dumps(r.scenario.model_dump(mode="json")))
            continue
        owner = r.job if isinstance(r, TrainingResult) and not hasattr(r, key) else r   # the run's keys are flat
        _same(getattr(owner, key), value, key)
        assert r[key] == value == r.summary[key]
    assert r["scenario"] == d["scenario"]
    # and no field is left out of the JSON (the scenario and the frames are not summary fields)
    shown = {f.name for f in dataclasses.fields(r) if f.metadata.get("summary", True) and getattr(r, f.name) is not None}
    assert shown - {"job"} <= set(d)
    with pytest.raises(KeyError):
        r["no_such_key"]


def test_optional_parts_are_absent_not_null(results: dict[str, Any]) -> None:
    oom, train, serve, chain = results["oom"], results["train"], results["serve"], results["chain"]
    assert not oom.fits_in_memory and oom.infeasible_reason and oom.job is None and "cost_usd" not in oom.to_dict()
    assert train.infeasible_reason is None and "infeasible_reason" not in train.to_dict() and train.job is not None
    assert serve.classes is not None and list(serve.classes) == ["gold", "bronze"] and serve.services is None
    assert serve.rejected > 0 and sum(c.rejected for c in serve.classes.values()) == serve.rejected
    assert chain.services is not None and list(chain.services) == ["embed", "llm"] and chain.classes is None
    assert "classes" not in chain.to_dict() and "services" not in serve.to_dict()
    assert serve.slo.to_dict() == {"ttft_p99_s": 0.5} and serve["slo"] == {"ttft_p99_s": 0.5}


def test_time_breakdown_takes_the_simulators_dict_with_or_without_cp_and_ep() -> None:
    base = {"compute_s": 1.0, "tp_comm_s": 0.5, "host_overhead_s": 0.1, "pipeline_bubble_s": 0.2,
            "dp_comm_exposed_s": 0.3, "optimizer_s": 0.05, "data_loading_s": 0.0}
    old = TimeBreakdown.build(base)
    assert old.cp_comm_s == old.ep_comm_s == 0.0
    assert list(old.to_dict())[:4] == ["compute_s", "tp_comm_s", "cp_comm_s", "ep_comm_s"]
    new = TimeBreakdown.build({**base, "cp_comm_s": 0.25, "ep_comm_s": 0.125})
    assert new.to_dict()["cp_comm_s"] == 0.25 and sum(new.to_dict().values()) == pytest.approx(2.525)
    with pytest.raises(TypeError):
        TimeBreakdown.build({**base, "pp_comm_s": 1.0})


def test_sweep_rows_are_typed_inside_and_plain_across_processes(results: dict[str, Any]) -> None:
    train_doc = parse_scenario(TRAIN).model_dump(mode="json", exclude_none=True)
    row = evaluate_row(train_doc)
    assert isinstance(row, TrainingSweepRow) and row.feasible
    assert list(row.to_dict()) == ["feasible", "fits_in_memory", "memory_gib", "iteration_time_s", "tokens_per_s", "mfu",
                                   "gpus", "micro_batch", "gpu_seconds_per_step", "error", "time_to_train_days",
                                   "cost_usd", "gpu_hours", "energy_kwh"]
    r = results["train"]
    assert row.iteration_time_s == r.iteration_time_s and row.cost_usd == r["cost_usd"]
    assert row.gpu_seconds_per_step == r.iteration_time_s * r.gpus
    plain = evaluate(train_doc)
    assert plain == row.to_dict() and pickle.loads(pickle.dumps(plain)) == plain
    assert all(isinstance(v, int | float | str | bool | None) for v in plain.values())
    oom = evaluate_row({**train_doc, "model": "megatron-18.4b", "parallelism": {"tp": 1, "pp": 1}})
    assert isinstance(oom, OutOfMemoryRow) and list(oom.to_dict()) == ["feasible", "fits_in_memory", "memory_gib", "error"]
    bad = evaluate_row({**train_doc, "parallelism": {"tp": 3}})
    assert isinstance(bad, FailedRow) and bad.to_dict() == {"feasible": False, "error": bad.error}
    serve = evaluate_row(parse_scenario(SERVE).model_dump(mode="json", exclude_none=True))
    assert isinstance(serve, ServingSweepRow) and serve.max_rate is None
    s = results["serve"]
    assert (serve.ttft_p99_s, serve.usd_per_hour, serve.slo_met) == (s.ttft_s.p99, s.usd_per_hour, s.slo_met)
    assert list(serve.to_dict())[-2:] == ["gpus", "error"]
