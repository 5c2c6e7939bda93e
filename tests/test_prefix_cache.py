"""The hashed prefix cache (simulator/serving/engines/prefix_cache.py) from first principles: chain
hashes, LRU order worked by hand on a four-block cache, a full hit computing only the new tokens,
the hit rate of N shared prefixes, multi-turn sessions' prompts and hits, the prefix-aware router,
and conservation, fast-forward exactness and determinism with the cache, sessions and routing on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator import CapsimError, load_scenario, parse_scenario, simulate_serving
from simulator.serving.engines.kv import BlockAllocator
from simulator.serving.engines.offload import Tier
from simulator.serving.engines.prefix_cache import Content, PrefixCache, chain_hashes
from simulator.serving.simulate import prepare

ROOT = Path(__file__).resolve().parents[1]
COLS = ["arrival_s", "queue_s", "ttft_s", "e2e_s", "tpot_s", "replica", "status", "preemptions"]


def scenario(**workload: object) -> dict:
    w = {"arrival": {"process": "poisson", "rate_rps": 8, "requests": 400},
         "prompt_tokens": {"dist": "fixed", "value": 200}, "output_tokens": {"dist": "fixed", "value": 64},
         "shared_prefix": {"groups": 4, "system_prompt_tokens": 2000}}
    w.update(workload)
    return {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm", "precision": "bf16",
            "replica": {"engine": "vllm"}, "workload": w, "seed": 3}


def run(d: dict, **kw: bool):
    return simulate_serving(parse_scenario(d), **kw)


# ---- hashes ---------------------------------------------------------------------------------------------
def test_block_hashes_chain_the_prefix() -> None:
    """Block i's name covers every token before it: two sequences agree on block i exactly when they
    agree on the first (i+1)·B tokens, whatever the segments are called."""
    a = chain_hashes(((7, 40), (100, 24)), 16)          # 64 tokens: 4 full blocks
    b = chain_hashes(((7, 40), (200, 24)), 16)          # same first 40 tokens
    assert len(a) == len(b) == 4
    assert a[:2] == b[:2]                               # tokens 0-31 shared
    assert a[2] != b[2] and a[3] != b[3]                # block 2 holds tokens 32-47: 8 shared, 8 not
    c = chain_hashes(((8, 16), (7, 40)), 16)            # segment 7's tokens at another position
    assert not set(a) & set(c)
    assert chain_hashes(((7, 15),), 16) == []           # a partial block has no name
    assert chain_hashes(((7, 16), (9, 16)), 16)[0] == chain_hashes(((7, 16),), 16)[0]


# ---- LRU by hand --------------------------------------------------------------------------------------
def tiny(tier_blocks: int = 0) -> tuple[BlockAllocator, PrefixCache]:
    """Four blocks of 2 tokens; requests 0-2 have 4 prompt tokens each (two full blocks) of their own and
    one output token (their 5 tokens hold two full blocks); request 3 repeats request 1's prompt."""
    kv = BlockAllocator(8, 2, no_evict=False)
    segs = [((0, 4),), ((1, 4),), ((2, 4),), ((1, 4),)]
    tiers = [Tier("cpu", tier_blocks, 1e-3, 1e-4)] if tier_blocks else []
    return kv, PrefixCache(kv, Content(segs, np.ones(4, dtype=np.int64)), tiers)


def serve(kv: BlockAllocator, pc: PrefixCache, r: int) -> int:
    """Admit ``r`` (target 4 tokens), compute its uncached blocks, finish it: returns the blocks it hit."""
    gpu, shared, tiers = pc.match(r, 5)                 # 5 tokens to compute: at most 2 blocks looked up
    nb = gpu + sum(tiers)
    kv.free -= nb - shared
    pc.acquire(r, nb, 4, nb * kv.B, tiers)
    pc.fit()
    kv.free -= 2 - nb                                   # its uncomputed blocks
    pc.register(r, 2)
    pc.fit()
    kv.free += 2 - pc.release(r, 2)
    return nb


def test_lru_evicts_the_least_recently_used_tail_first() -> None:
    kv, pc = tiny()
    h = [pc.content.hashes(r, 2) for r in range(4)]
    assert serve(kv, pc, 0) == 0 and serve(kv, pc, 1) == 0
    # freed tail first: A1 A0 B1 B0 (front first), all four blocks free and cached
    assert list(pc.lru) == [h[0][1], h[0][0], h[1][1], h[1][0]] and kv.free == 4
    assert serve(kv, pc, 0) == 2                        # A again: a full hit, A's blocks move to the back
    assert list(pc.lru) == [h[1][1], h[1][0], h[0][1], h[0][0]]
    kv.free -= 1                                        # one block taken: B's tail goes
    pc.fit()
    assert list(pc.lru) == [h[1][0], h[0][1], h[0][0]] and pc.evicted == 1
    assert pc.match(3, 5) == (1, 0, [])                 # request 3 (B's prompt) still finds B's first block
    kv.free += 1
    # C takes 2 blocks with 4 free and 3 cached: one never-used block, then B0 is evicted; C's blocks
    # join the back, tail first
    assert serve(kv, pc, 2) == 0
    assert list(pc.lru) == [h[0][1], h[0][0], h[2][1], h[2][0]] and pc.evicted == 2
    assert pc.match(0, 5) == (2, 0, []) and pc.match(1, 5) == (0, 0, [])


def test_lru_by_hand_with_a_cpu_tier() -> None:
    """Evicted blocks go to a one-block CPU tier, whose own LRU block is dropped: a prefix continues
    from the GPU into the tier."""
    kv, pc = tiny(tier_blocks=1)
    h = [pc.content.hashes(r, 2) for r in range(4)]
    serve(kv, pc, 0)
    serve(kv, pc, 1)                                    # LRU: A1 A0 B1 B0
    kv.free -= 2
    pc.fit()                                            # A1 then A0 evicted to the tier; A1 dropped from it
    assert list(pc.tiers[0].blocks) == [h[0][0]] and pc.tiers[0].stored == 2 and pc.tiers[0].evicted == 1
    assert pc.match(0, 5) == (0, 0, [1])                # A0 from the tier, A1 nowhere
    assert pc.match(3, 5) == (2, 0, [0])                # B on the GPU
    kv.free += 2
    assert serve(kv, pc, 0) == 1                        # A loads A0 (1 block) and computes A1
    assert pc.tiers[0].loaded == 1 and pc.hit_tier == [2] and pc.load_s == pytest.approx(1e-4 + 1e-3)


def test_shared_blocks_are_taken_once() -> None:
    """Two requests holding the same cached block take it once: the second's admission needs only its
    own blocks, and the block returns to the free pool when the last holder leaves."""
    kv, pc = tiny()
    serve(kv, pc, 1)                                    # B's two blocks cached, unreferenced
    gpu, shared, _ = pc.match(3, 5)
    assert (gpu, shared) == (2, 0)
    kv.free -= 2
    pc.acquire(3, 2, 4, 4, [])
    assert pc.match(1, 5) == (2, 2, [])                 # now in use by request 3: shared, not taken again
    kv.free -= 0
    pc.acquire(1, 2, 4, 4, [])
    assert kv.free == 2
    assert pc.release(3, 2) == 2                        # request 1 still holds both
    assert pc.release(1, 2) == 0
    kv.free += 2
    assert kv.free == 4 and len(pc.lru) == 2


# ---- engine-level: what a hit saves ------------------------------------------------------------------
def test_full_prefix_hit_prefills_only_the_new_tokens() -> None:
    """One group, requests far apart: every request after the first finds the 2,000-token system prompt
    (125 blocks of 16) cached, so its first iteration prefills its 200 own tokens after 2,000 cached
    ones: TTFT is exactly that iteration's time on the cost model (no queue, nothing else running)."""
    d = scenario(arrival={"process": "poisson", "rate_rps": 0.2, "requests": 6},
                 shared_prefix={"groups": 1, "system_prompt_tokens": 2000})
    sc = parse_scenario(d)
    r = simulate_serving(sc)
    perf = prepare(sc).stages[0][2]          # the replica model the run used (its workload's prompt length)
    q, c = 200, 2000
    hit = perf.iteration_time(tokens=q, sampled=1, prefill_work=q * (c + (q + 1) / 2), decode_seqs=0, decode_ctx=0)
    full = perf.iteration_time(tokens=c + q, sampled=1, prefill_work=(c + q) * (c + q + 1) / 2, decode_seqs=0,
                               decode_ctx=0)
    ttft = r.requests.ttft_s.to_numpy()
    assert (r.requests.queue_s.to_numpy() == 0).all()
    assert ttft[0] == pytest.approx(full, rel=1e-9)
    assert ttft[1:] == pytest.approx([hit] * 5, rel=1e-9)
    assert hit < full / 5
    p = r.prefix_cache
    assert p is not None and p.hit_tokens == 5 * 2000 and p.queried_tokens == 6 * 2200
    assert r.requests.prefix_hit_tokens.tolist() == [0] + [2000] * 5
    # MFU counts the tokens computed: 6 prompts of 2,200 less 5 × 2,000 found, plus the outputs
    off = simulate_serving(parse_scenario(d | {"replica": {"engine": "vllm", "prefix_caching": False}}))
    computed_on, computed_off = 6 * 2200 - 5 * 2000 + 6 * 64, 6 * 2200 + 6 * 64
    assert "prefix_hit_tokens" not in off.requests
    assert r.mfu / off.mfu == pytest.approx(computed_on / computed_off * off.simulated_s / r.simulated_s, rel=2e-3)


def test_hit_rate_of_n_shared_prefixes() -> None:
    """N groups, R requests, enough cache: each group's first request misses its L-token prefix and every
    other one finds it, so the prefix part's hit rate is (R − N)·L / (R·L) = 1 − N/R; the questions are
    unique, so the overall rate is (R − N)·L / (R·(L + q))."""
    R, N, L, q = 400, 4, 2000, 200
    r = run(scenario())
    p = r.prefix_cache
    assert p is not None and p.evicted_blocks == 0
    assert p.hit_tokens / (R * L) == pytest.approx(1 - N / R)
    assert p.hit_rate == pytest.approx((R - N) * L / (R * (L + q)), abs=5e-5)
    assert p.queried_tokens == R * (L + q)
    # L not a multiple of the block: only whole blocks are found (2008 -> 125 blocks = 2000 tokens)
    r2 = run(scenario(shared_prefix={"groups": N, "system_prompt_tokens": 2008}))
    assert r2.prefix_cache is not None and r2.prefix_cache.hit_tokens == (R - N) * 2000
    # the time series adds up to the totals
    ts = r.timeseries
    assert ts.prefix_hit_tokens.sum() == p.hit_tokens and ts.prefix_queried_tokens.sum() == p.queried_tokens


def test_prefix_caching_off_computes_every_token() -> None:
    on, off = run(scenario()), run(scenario(**{}) | {"replica": {"engine": "vllm", "prefix_caching": False}})
    assert off.prefix_cache is None
    assert off.ttft_s.mean > 2 * on.ttft_s.mean


# ---- sessions ----------------------------------------------------------------------------------------
def test_session_prompts_grow_by_each_turn_and_the_next_turn_waits_for_the_answer() -> None:
    """Turn k's prompt is k·(u + o) + u (no system prompt), sent think_time_s after turn k-1 finished; a
    turn finds the previous turn's prompt and output in the cache: floor((p + o − 1)/B) blocks."""
    u, o, T, think, S = 100, 50, 3, 2.0, 5
    d = scenario(arrival={"process": "poisson", "rate_rps": 0.5, "requests": S},
                 sessions={"turns": T, "think_time_s": think},
                 prompt_tokens={"dist": "fixed", "value": u}, output_tokens={"dist": "fixed", "value": o})
    del d["workload"]["shared_prefix"]
    r = run(d)
    f = r.requests
    assert r.arrived == r.completed == S * T
    assert f.prompt_tokens.tolist() == [k * (u + o) + u for k in range(T)] * S
    arrival, e2e = f.arrival_s.to_numpy(), f.e2e_s.to_numpy()
    for s in range(S):
        for k in range(1, T):
            i = s * T + k
            assert arrival[i] == pytest.approx(arrival[i - 1] + e2e[i - 1] + think, abs=1e-9)
    B = 16
    hits = sum((k * (u + o) + u + o - 1) // B * B for k in range(T - 1))   # turn k+1 finds turn k's computed KV
    p = r.prefix_cache
    assert p is not None and p.hit_tokens == S * hits
    assert p.queried_tokens == S * sum(k * (u + o) + u for k in range(T))


def test_agent_loop_steps_draw_their_own_tokens() -> None:
    d = scenario(arrival={"process": "offline", "requests": 3},
                 sessions={"turns": 4, "think_time_s": 0.5, "step_tokens": {"dist": "fixed", "value": 30}},
                 prompt_tokens={"dist": "fixed", "value": 300}, output_tokens={"dist": "fixed", "value": 20})
    r = run(d)
    L = 2000
    assert r.requests.prompt_tokens.tolist()[:4] == [L + 300, L + 300 + 20 + 30, L + 300 + 2 * 50, L + 300 + 3 * 50]


# ---- the whole engine: conservation, fast-forward exactness, determinism -----------------------------------
def pressure(**replica: object) -> dict:
    """Sessions on two small-KV replicas with prefix-aware routing: the histories outgrow the cache, so
    blocks are evicted and sequences preempted."""
    d = scenario(arrival={"process": "poisson", "rate_rps": 6, "requests": 40},
                 sessions={"turns": 4, "think_time_s": 1.0},
                 prompt_tokens={"dist": "lognormal", "mean": 600, "sigma": 0.5},
                 output_tokens={"dist": "lognormal", "mean": 150, "sigma": 0.5},
                 shared_prefix={"groups": 3, "system_prompt_tokens": 1000})
    d["replica"] = {"engine": "vllm", "kv_cache_fraction": 0.02, **replica}
    d["cluster"] = {"replicas": 2, "router": "prefix_aware"}
    return d


@pytest.mark.parametrize("replica", [{}, {"kv_offload": {"cpu_gib": 2, "nvme_gib": 4, "nvme_gbps": 6.8}}],
                         ids=["gpu", "offload"])
def test_conservation_fast_forward_and_determinism_under_pressure(replica: dict) -> None:
    fast = run(pressure(**replica))
    slow = run(pressure(**replica), fast_forward=False)
    p = fast.prefix_cache
    assert p is not None and p.evicted_blocks > 0 and fast.preemptions > 0
    assert fast.arrived == fast.completed + fast.rejected + fast.failed + fast.in_flight == 160
    assert fast.requests[COLS].equals(slow.requests[COLS])
    assert fast.summary["prefix_cache"] == slow.summary["prefix_cache"]
    again = run(pressure(**replica))
    assert json.dumps(again.summary, sort_keys=True) == json.dumps(fast.summary, sort_keys=True)
    if replica:
        assert p.tiers["cpu"]["loaded_blocks"] > 0


def test_prefix_aware_router_keeps_groups_together() -> None:
    """Four replicas, eight groups far apart in time: prefix-aware routing sends each group's later requests
    to the replica that cached its prompt, so the hit rate is that of one replica; least-outstanding
    spreads them and misses on every replica a group first reaches."""
    d = scenario(arrival={"process": "poisson", "rate_rps": 2, "requests": 200},
                 shared_prefix={"groups": 8, "system_prompt_tokens": 2000})
    d["cluster"] = {"replicas": 4, "router": "prefix_aware"}
    aware = run(d)
    d["cluster"]["router"] = "round_robin"
    spread = run(d)
    assert aware.prefix_cache is not None and spread.prefix_cache is not None
    assert aware.prefix_cache.hit_tokens == (200 - 8) * 2000
    assert spread.prefix_cache.hit_tokens < aware.prefix_cache.hit_tokens


# ---- errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "message"), [
    ({"workload": {"prefix_cache_hit_rate": 0.5}}, "prefix_cache_hit_rate is the simple mode"),
    ({"workload": {"sessions": {"turns": 2, "think_time_s": 1}, "arrival": {"process": "closed_loop",
                                                                            "concurrency": 4, "requests": 10}}},
     "sessions need an open-loop or offline arrival process"),
    ({"workload": {"sessions": {"turns": 0, "think_time_s": 1}}}, "workload.sessions.turns"),
    ({"workload": {"shared_prefix": {"groups": 2}}}, "system_prompt_tokens"),
    ({"replica": {"engine": "vllm", "kv_offload": {"cpu_gib": 8, "nvme_gib": 10}}}, "nvme_gib and nvme_gbps go together"),
])
def test_bad_keys_are_clear_errors(change: dict, message: str) -> None:
    d = scenario()
    for k, v in change.items():
        d[k] = {**d[k], **v} if k == "workload" else v
    with pytest.raises(CapsimError) as e:
        run(d)
    assert message in str(e.value)


def test_combinations_the_cache_does_not_take() -> None:
    d = scenario()
    d["replica"] = {"engine": "sglang"}
    with pytest.raises(CapsimError, match="set replica.schedule_order: decode_first"):
        run(d)
    d["replica"] = {"engine": "vllm", "prefix_caching": False, "kv_offload": {"cpu_gib": 8}}
    with pytest.raises(CapsimError, match="kv_offload needs prefix caching"):
        run(d)
    d = scenario()
    del d["workload"]["shared_prefix"]
    d["cluster"] = {"replicas": 2, "router": "prefix_aware"}
    with pytest.raises(CapsimError, match="prefix_aware routes by the prompts' cached prefixes"):
        run(d)


def test_example_runs() -> None:
    r = simulate_serving(load_scenario(ROOT / "examples" / "serve_prefix_cache.yaml"))
    p = r.prefix_cache
    assert p is not None and p.hit_rate > 0.5 and r.completed == r.arrived
