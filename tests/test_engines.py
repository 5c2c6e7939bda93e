"""Batching engines: the tagged union on ``replica.batching``, the typed plan and its GPU-dependent
defaults, and the pieces of the continuous engine (KV blocks, fast-forward arithmetic) by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simulator import CapsimError, parse_scenario
from simulator.serving.engines import ENGINES, ReplicaPlan
from simulator.serving.engines.defaults import VLLM_TIERS
from simulator.serving.engines.fastforward import DecodeBatch, Window
from simulator.serving.engines.kv import BlockAllocator
from simulator.serving.simulate import build_replica_model

BUILT_IN = ("none", "static", "dynamic", "continuous", "prefill_first", "speculative")
ROOT = Path(__file__).resolve().parents[1]


def serving(replica: dict, **over: object) -> dict:
    return {"kind": "serving", "model": "llama-2-7b", "hardware": "h100-sxm", "replica": replica, **over}


# ---- the tagged union ---------------------------------------------------------------------------------
def test_a_key_of_another_engine_names_the_key_the_batching_and_what_it_allows() -> None:
    with pytest.raises(CapsimError) as e:
        parse_scenario(serving({"batching": "static", "chunked_prefill": True}))
    msg = str(e.value)
    assert "unknown key 'replica.chunked_prefill'" in msg
    assert "under batching 'static'" in msg
    assert "(chunked_prefill is a key of batching continuous, prefill_first, speculative)" in msg
    allowed = msg.split("allowed keys: ")[1].split(" under")[0].split(", ")
    assert allowed == ["batching", "tp", "pp", "ep", "attention_dp", "expert_skew", "max_queue", "kv_cache_fraction",
                       "kv_cache_precision", "fp8_scales", "host_us_per_request",
                       "engine",
                       "engine_version", "latency_table", "max_batch_size"]


def test_the_batching_kind_chooses_the_keys() -> None:
    assert type(parse_scenario(serving({})).replica).__name__ == "ContinuousBatching"     # the default
    dyn = parse_scenario(serving({"batching": "dynamic", "max_batch_size": 8, "preferred_batch_sizes": [4, 8]}))
    assert dyn.replica.batching == "dynamic" and dyn.replica.preferred_batch_sizes == [4, 8]
    with pytest.raises(CapsimError, match="unknown key 'replica.max_batch_size'.*under batching 'continuous'"):
        parse_scenario(serving({"max_batch_size": 8}))
    with pytest.raises(CapsimError, match="unknown key 'replica.preferred_batch_sizes'.*under batching 'static'"):
        parse_scenario(serving({"batching": "static", "preferred_batch_sizes": [4]}))
    with pytest.raises(CapsimError, match="replica.batching: 'bogus' is not allowed; batching must be one of "
                                          "none, static, dynamic, continuous"):
        parse_scenario(serving({"batching": "bogus"}))
    with pytest.raises(CapsimError, match="beyond replica.latency_table's largest batch"):
        parse_scenario(serving({"batching": "static", "max_batch_size": 16, "latency_table": [[1, 0.01], [8, 0.02]]}))


def test_a_service_takes_its_own_engine() -> None:
    sc = parse_scenario(serving({}, services=[
        {"name": "embed", "model": "bert-large", "replica": {"batching": "dynamic", "max_queue_delay_ms": 5}},
        {"name": "llm"}]))
    assert sc.services[0].replica.batching == "dynamic" and sc.services[1].replica is None
    # a top-level replica key with services listed would be ignored: it is an error naming the service key
    with pytest.raises(CapsimError, match=r"top-level replica.max_num_seqs has no effect when services are listed"):
        parse_scenario(serving({"max_num_seqs": 8}, services=[{"name": "llm"}]))
    with pytest.raises(CapsimError, match="unknown key 'services.0.replica.max_num_seqs'.*under batching 'dynamic'"):
        parse_scenario(serving({}, services=[{"name": "x", "replica": {"batching": "dynamic", "max_num_seqs": 4}}]))


def test_every_replica_key_says_what_it_does_and_where_its_default_comes_from() -> None:
    for name in BUILT_IN:
        for key, f in ENGINES.members[name].model_fields.items():
            assert f.description and len(f.description) > 20, (name, key)
    cont, dyn = ENGINES.members["continuous"].model_fields, ENGINES.members["dynamic"].model_fields
    assert "vLLM" in cont["max_num_seqs"].description and "1024 on GPUs with >= 70 GiB" in cont["max_num_seqs"].description
    assert "vLLM block_size 16" in cont["kv_block_tokens"].description
    assert "TensorRT-LLM" in cont["scheduler_policy"].description
    assert "Triton's max_queue_delay_microseconds" in dyn["max_queue_delay_ms"].description


# ---- the plan: limits by engine, GPU-dependent defaults from one table ----------------------------------------
@pytest.mark.parametrize("hardware,replica,seqs,tokens", [
    ("h100-sxm", {}, 1024, 8192),                                   # 80 GiB: vLLM's large-GPU defaults
    ("l40s", {}, 256, 2048),                                        # 48 GiB: below 70 GiB
    ("h100-sxm", {"max_num_seqs": 64}, 64, 8192),                   # a key given wins over the table
    ("h100-sxm", {"batching": "static", "max_batch_size": 4}, 4, 4 * 4096),   # whole requests: 4 × max positions
    ("h100-sxm", {"batching": "none"}, 1, 4096),
])
def test_plan_limits(hardware: str, replica: dict, seqs: int, tokens: int) -> None:
    _, plan = build_replica_model(parse_scenario(serving(replica, hardware=hardware)))
    assert isinstance(plan, ReplicaPlan)
    assert (plan.max_num_seqs, plan.max_batched_tokens) == (seqs, tokens)
    assert plan.generative and plan.gpus_per_replica == 1 and plan.kv_cache_tokens > 0


@pytest.mark.parametrize("engine", ["trtllm", "trtllm-bench", "vllm"])
def test_tensorrt_llm_holds_pp_micro_batches_of_its_limits(engine: str) -> None:
    """TensorRT-LLM admits pp x max_batch_size active requests, pp micro-batches each scheduled to its own
    max_batch_size and max_num_tokens (model_engine.py get_max_num_sequences); vLLM's limits are the replica's."""
    def plan(pp: int) -> ReplicaPlan:
        _, p = build_replica_model(parse_scenario(serving({"engine": engine, "pp": pp}, model="llama-3.1-70b",
                                                          precision="fp8", hardware="h100-sxm")))
        return p

    one, two = plan(1), plan(2)
    assert one.engine is not None and two.engine is not None
    assert (one.max_num_seqs, one.max_batched_tokens) == (one.engine.max_num_seqs, one.engine.max_batched_tokens)
    scale = 2 if engine.startswith("trtllm") else 1
    assert (two.max_num_seqs, two.max_batched_tokens) == (scale * two.engine.max_num_seqs,
                                                          scale * two.engine.max_batched_tokens)


def test_the_default_table_is_ordered_largest_first() -> None:
    assert [t.min_memory_gib for t in VLLM_TIERS] == sorted((t.min_memory_gib for t in VLLM_TIERS), reverse=True)
    assert VLLM_TIERS[-1].min_memory_gib == 0       # every GPU falls in a tier


def test_continuous_batching_needs_a_decoder() -> None:
    with pytest.raises(CapsimError, match="bert-large is an encoder model.*set replica.batching to dynamic"):
        build_replica_model(parse_scenario(serving({}, model="bert-large")))


# ---- the continuous engine's pieces, by hand ----------------------------------------------------------------
def test_block_allocator_counts_blocks_and_keeps_no_evict_promises() -> None:
    kv = BlockAllocator(kv_tokens=100, block_tokens=16, no_evict=True)
    assert (kv.total, kv.free, kv.capacity_tokens) == (6, 6, 96)    # 100 // 16 whole blocks
    assert [kv.blocks(n) for n in (0, 1, 16, 17, 32)] == [0, 1, 1, 2, 2]
    assert kv.fits_ever(96) and not kv.fits_ever(97)
    assert kv.promise(40) and kv.committed == 3                     # 40 tokens: 3 blocks promised
    assert not kv.promise(49) and kv.committed == 3                 # 4 more would make 7 > 6
    assert kv.promise(48) and kv.committed == 6
    kv.release(40)
    assert kv.committed == 3
    free_for_all = BlockAllocator(kv_tokens=100, block_tokens=16, no_evict=False)
    assert free_for_all.promise(10_000) and free_for_all.committed == 0


def test_window_end_is_the_sum_of_its_steps() -> None:
    """Step i of the window lasts A + C·(c0 + n·(i−1)): 7 + 3·(50 + 4·(i−1)) = 157, 169, 181, 193, 205 fs."""
    w = Window(t0=1000, A=7, C=3, c0=50, n=4, k=5)
    ends = [1000 + sum(7 + 3 * (50 + 4 * i) for i in range(j)) for j in range(6)]
    assert ends == [1000, 1157, 1326, 1507, 1700, 1905]
    assert [w.end(j) for j in range(6)] == ends
    assert [w.steps_done(t) for t in (999, 1156, 1157, 1600, 1905, 10**6)] == [0, 0, 1, 3, 5, 5]


def test_decode_batch_takes_blocks_by_phase_and_frees_finished_sequences() -> None:
    """4-token blocks. a joins with 5 cached tokens for 6 steps, b with 8 for 3. a's 9th token (step 4)
    opens its third block; b's 9th (step 1) its third: blocks over k steps 1, 1, 1, 2, 3 for k = 1..5.
    After 3 steps b is done with 11 tokens in 3 blocks: 3 freed, 1 taken."""
    dec = DecodeBatch(block_tokens=4)
    dec.join(0, ctx=5, rem=6, prio=0, order=1)
    dec.join(1, ctx=8, rem=3, prio=0, order=2)
    assert [dec.blocks_over(k) for k in range(1, 6)] == [1, 1, 1, 2, 3]
    assert dec.steps_to_next_finish() == 3
    finished: list[int] = []
    assert dec.advance(3, finished) == 3 - 1
    assert finished == [1] and dec.step == 3 and dec.ctx(0) == 8 and dec.ctx_sum == 8
    assert dec.blocks_over(1) == 1 and dec.steps_to_next_finish() == 3
    seq, ctx = dec.leave(0)
    assert (seq.finish_step, ctx, len(dec), dec.ctx_sum) == (6, 8, 0, 0)


@pytest.mark.parametrize("first", ["simulator.serving.engines.kv", "simulator.serving.engines.continuous",
                                   "simulator.scenario.serving", "simulator.serving.service"])
def test_any_module_can_be_imported_first(first: str) -> None:
    """The scenario imports the engines (their keys) and the engines import the scenario's base:
    whichever a program imports first, both load and the built-in engines are registered."""
    code = (f"import {first}\nfrom simulator.serving.engines import ENGINES\n"
            "from simulator.scenario import ServingScenario\nprint(ENGINES.names())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(list(BUILT_IN))


def test_capsim_cost_prices_a_full_decode_batch_of_the_chosen_engine() -> None:
    """The decode table runs at the engine's batch: 1 (none), max_batch_size (static), max_num_seqs
    (continuous; 1024 from the GPU table on an H100). A 1024-row FC1 GEMM of Llama-2-7B is compute
    bound (2·1024·4096·11008 FLOP ≈ 92 GFLOP), a 1-row one reads the weights: far longer."""
    from simulator.api import layer_cost_table

    def fc1_us(replica: dict) -> float:
        rows = layer_cost_table(parse_scenario(serving(replica)))
        return next(r["time_us"] for r in rows if r["pass"] == "decode" and r["op"] == "fc1")

    one, four, full = fc1_us({"batching": "none"}), fc1_us({"batching": "static", "max_batch_size": 4}), fc1_us({})
    assert one == pytest.approx(four, rel=0.05)          # both read the weights once: memory bound
    assert full > 2 * one
