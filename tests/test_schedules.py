"""Pipeline schedules: what each decides, the tagged union on ``parallelism.schedule``, and a new
schedule added from outside the library through the public registration point."""

from typing import Literal

import pytest
import yaml

from simulator import parse_scenario, simulate_training
from simulator.errors import CapsimError
from simulator.training.schedules import (
    SCHEDULES,
    GPipe,
    Interleaved,
    OneFOneB,
    OneFOneBConfig,
    ParallelismBase,
    PipelineSchedule,
    Work,
    make_schedule,
    schedule_tag,
)
from simulator.training.step import PassTime, StageSpec, joint_time, simulate_step

BASE = {"kind": "training", "model": "megatron-7.5b", "hardware": "a100-sxm-80gb",
        "cluster": {"nodes": 1, "gpus_per_node": 8},
        "training": {"seq_len": 2048, "global_batch": 64, "micro_batch": 1, "recompute": "full"}}


# ---- a schedule from outside the library ----------------------------------------------------------
class FillDrainConfig(ParallelismBase):
    """``schedule: fill_drain``: no knobs of its own."""

    schedule: Literal["fill_drain"] = schedule_tag("fill_drain")


class FillDrain(PipelineSchedule):
    """Every forward, then every backward in reverse micro-batch order (last in, first out)."""

    def stage_order(self, stage: int) -> list[Work]:
        m = self.microbatches
        return [("F", 0, i) for i in range(m)] + [("B", 0, i) for i in reversed(range(m))]

    def in_flight(self, stage: int) -> float:
        return float(self.microbatches)


@pytest.fixture
def fill_drain():
    SCHEDULES.register(FillDrainConfig, FillDrain)
    yield
    SCHEDULES.unregister("fill_drain")


SCENARIO = """
kind: training
model: megatron-7.5b
hardware: a100-sxm-80gb
cluster: {nodes: 1, gpus_per_node: 8}
parallelism: {schedule: fill_drain, tp: 4, pp: 2}
training: {seq_len: 2048, global_batch: 2, micro_batch: 1, recompute: full}
"""


def test_a_schedule_registered_from_outside_loads_and_runs(fill_drain):
    sc = parse_scenario(yaml.safe_load(SCENARIO))
    assert isinstance(sc.parallelism, FillDrainConfig) and sc.parallelism.pp == 2
    schedule = make_schedule(sc.parallelism, microbatches=2)
    assert schedule.order(0) == [("F", 0, 0), ("F", 0, 1), ("B", 0, 1), ("B", 0, 0)]
    assert schedule.grads_ready(0, 0) == ("B", 0)          # the last backward is micro-batch 0's

    # p = 2, m = 2, forward 1 s, backward 2 s, sends 0.5 s. Stage 0: F0 [0, 1], F1 [1, 2]. Stage 1:
    # F0 [1.5, 2.5], F1 [2.5, 3.5], B1 [3.5, 5.5], B0 [5.5, 7.5]. Stage 0: B1 once stage 1's B1 has
    # arrived, [6, 8]; B0 [8, 10]. Each stage reduces one 0.5 s gradient bucket when its last
    # backward (B0) ends: stage 0 at 10 -> 10.5.
    stages = [StageSpec([PassTime.of(1.0)], [PassTime.of(2.0)]) for _ in range(2)]
    trace = simulate_step(stages, schedule, p2p=0.5)
    assert trace.iteration_time == pytest.approx(10.0)
    assert [(k, i, s, e) for st, k, _, i, s, e in trace.timeline if st == 0] == [
        ("F", 0, 0.0, 1.0), ("F", 1, 1.0, 2.0), ("B", 1, 6.0, 8.0), ("B", 0, 8.0, 10.0)]
    assert trace.compute_end == pytest.approx([10.0, 7.5])
    with_buckets = [StageSpec([PassTime.of(1.0)], [PassTime.of(2.0)], grad_buckets=[[0.5]]) for _ in range(2)]
    assert simulate_step(with_buckets, schedule, p2p=0.5).iteration_time == pytest.approx(10.5)
    assert simulate_step(stages, schedule).iteration_time == pytest.approx(9.0)   # no sends: 2 + 1 + 2·2 + 2·2

    r = simulate_training(sc)
    assert [(k, i) for st, k, _, i, _, _ in r.timeline if st == 0] == [("F", 0), ("F", 1), ("B", 1), ("B", 0)]
    gpipe = simulate_training(parse_scenario(yaml.safe_load(SCENARIO), ["parallelism.schedule=gpipe"]))
    # both keep every micro-batch's activations: the same memory as GPipe
    assert r["memory_per_gpu_gib"] == gpipe["memory_per_gpu_gib"] and r["iteration_time_s"] > 0


def test_an_unregistered_schedule_is_an_error_naming_the_known_ones():
    SCHEDULES.register(FillDrainConfig, FillDrain)
    SCHEDULES.unregister("fill_drain")
    with pytest.raises(CapsimError, match="parallelism.schedule: 'fill_drain' is not allowed; schedule must be one "
                                          "of dualpipe, dualpipev, gpipe, interleaved, 1f1b"):
        parse_scenario(yaml.safe_load(SCENARIO))


# ---- the tagged union -----------------------------------------------------------------------------
def test_a_knob_of_another_schedule_names_the_key_the_schedule_and_the_allowed_keys():
    with pytest.raises(CapsimError) as e:
        parse_scenario(BASE, ["parallelism.schedule=gpipe", "parallelism.virtual_stages=2", "parallelism.pp=2"])
    msg = str(e.value)
    assert "unknown key 'parallelism.virtual_stages'" in msg and "under schedule 'gpipe'" in msg
    assert ("allowed keys: tp, pp, dp, cp, ep, etp, sequence_parallel, tp_comm_overlap, zero_stage, reshard_after_forward, "
            "dp_shard, schedule, placement "
            "under") in msg
    assert "virtual_stages is a key of schedule" in msg and "1f1b" in msg and "interleaved" in msg


def test_interleaved_needs_two_virtual_stages_and_two_stages():
    with pytest.raises(CapsimError, match="parallelism.virtual_stages: Field required"):
        parse_scenario(BASE, ["parallelism.schedule=interleaved", "parallelism.pp=2"])
    with pytest.raises(CapsimError, match="parallelism.virtual_stages: Input should be greater than or equal to 2"):
        parse_scenario(BASE, ["parallelism.schedule=interleaved", "parallelism.virtual_stages=1"])
    sc = parse_scenario(BASE, ["parallelism.schedule=interleaved", "parallelism.virtual_stages=2", "parallelism.tp=8"])
    with pytest.raises(CapsimError, match=r"virtual_stages=2 \(interleaved 1F1B\) needs pp >= 2 \(got pp=1\)"):
        simulate_training(sc)


def test_interleaving_needs_micro_batches_in_multiples_of_pp():
    sc = parse_scenario(BASE, ["parallelism.tp=2", "parallelism.pp=4", "parallelism.virtual_stages=2",
                               "training.global_batch=6"])     # 6 micro-batches on 4 stages
    with pytest.raises(CapsimError, match="the 6 micro-batches per iteration .* multiple of pp=4"):
        simulate_training(sc)


def test_1f1b_with_virtual_stages_is_interleaved_1f1b():
    over = ["parallelism.tp=2", "parallelism.pp=4", "parallelism.virtual_stages=2"]
    a = simulate_training(parse_scenario(BASE, over))
    b = simulate_training(parse_scenario(BASE, [*over, "parallelism.schedule=interleaved"]))
    assert a["layout"]["virtual_stages"] == 2
    assert a["iteration_time_s"] == b["iteration_time_s"] and a["memory_per_gpu_gib"] == b["memory_per_gpu_gib"]
    assert type(make_schedule(OneFOneBConfig(pp=4, virtual_stages=2), 8)) is Interleaved
    plain = simulate_training(parse_scenario(BASE, over[:2]))
    assert plain["iteration_time_s"] > a["iteration_time_s"]    # interleaving shrinks the bubble


def test_every_parallelism_key_is_described_with_its_default():
    for name, cls in SCHEDULES.members.items():
        for key, f in cls.model_fields.items():
            assert f.description and "default" in f.description, (name, key)


# ---- what each schedule decides -------------------------------------------------------------------
def test_micro_batches_in_flight_per_stage():
    assert [OneFOneB(4, 8).in_flight(s) for s in range(4)] == [4, 3, 2, 1]
    assert [OneFOneB(4, 2).in_flight(s) for s in range(4)] == [2, 2, 2, 1]     # never more than m
    assert [GPipe(4, 8).in_flight(s) for s in range(4)] == [8] * 4
    assert GPipe(1, 8).in_flight(0) == 1                                       # no pipeline: accumulate
    # interleaving: p micro-batches of 1 + (p - 1)/(p·v) chunks' worth on the first stage
    assert Interleaved(4, 8, 2).in_flight(0) == pytest.approx(4 * (1 + 3 / 8))


def test_chunk_map_dependencies_and_gradient_readiness():
    s = Interleaved(4, 8, 2)
    assert [s.virtual_stage(1, c) for c in range(2)] == [1, 5]
    assert s.depends_on("F", 0, 3) is None and s.depends_on("F", 5, 3) == ("F", 4, 3)
    assert s.depends_on("B", 5, 3) == ("B", 6, 3) and s.depends_on("B", 7, 3) == ("F", 7, 3)
    assert s.grads_ready(0, 0) == ("B", 7) == s.grads_ready(3, 1)
    order = s.order(0)
    assert len(order) == 2 * 8 * 2 and order[:4] == [("F", 0, 0), ("F", 0, 1), ("F", 0, 2), ("F", 0, 3)]
    assert OneFOneB(2, 3).order(0) == [("F", 0, 0), ("F", 0, 1), ("B", 0, 0), ("F", 0, 2), ("B", 0, 1), ("B", 0, 2)]
    assert GPipe(1, 2).order(0) == [("F", 0, 0), ("B", 0, 0), ("F", 0, 1), ("B", 0, 1)]


def test_gpipe_bubble_and_memory():
    # p = 2, m = 2, forward 1 s, backward 2 s: F0 F1 on stage 0 [0, 2]; stage 1 F0 [1, 2], F1 [2, 3],
    # B0 [3, 5], B1 [5, 7]; stage 0 B0 [5, 7], B1 [7, 9].
    st = [StageSpec([PassTime.of(1.0)], [PassTime.of(2.0)]) for _ in range(2)]
    assert simulate_step(st, GPipe(2, 2)).iteration_time == pytest.approx(9.0)
    over = ["parallelism.tp=2", "parallelism.pp=4"]
    g = simulate_training(parse_scenario(BASE, [*over, "parallelism.schedule=gpipe"]))
    f = simulate_training(parse_scenario(BASE, over))
    # all 64 micro-batches in flight on every stage instead of at most 4 (the first stage's; full
    # recompute keeps one 2·s·b·h input per layer: 64 × 9 layers × 16 MiB = 9 GiB)
    assert g["layout"]["microbatches_per_step"] == 64
    assert g["memory_per_gpu_gib"]["activations"] == pytest.approx(9.0)
    assert g["memory_per_gpu_gib"]["activations"] == pytest.approx(f["memory_per_gpu_gib"]["activations"] * 64 / 4)
    assert g["iteration_time_s"] >= f["iteration_time_s"]


# ---- zero bubble (ZB-H1) ----------------------------------------------------------------------------
def _zb_bubble(p: int, m: int, f: float, b: float, w: float) -> float:
    from simulator.training.schedules import ZeroBubbleH1

    zb = ZeroBubbleH1(p, m)
    zb.fit([(f, b, w)] * p, 0.0)
    st = [StageSpec([PassTime.of(f)], [PassTime.of(b)], wgt=[PassTime.of(w)]) for _ in range(p)]
    return simulate_step(st, zb).iteration_time - m * (f + b + w)


@pytest.mark.parametrize("p,m", [(4, 16), (8, 64), (16, 128)])
def test_zero_bubble_cuts_the_bubble_between_the_papers_bound_and_1f1b(p, m):
    # equal pass times (the paper's handcrafted case): 1F1B idles (p-1)(F+B+W), ZB-H1 (p-1)(F+B-W)
    bubble = _zb_bubble(p, m, 1.0, 1.0, 1.0)
    assert (p - 1) * 1.0 <= bubble < (p - 1) * 3.0
    assert bubble == {4: 5.0, 8: 9.0, 16: 21.0}[p]      # p + 1, p + 1, p + 5: measured, above the paper's p - 1
    # weight gradients lighter than input gradients (a model's W is its wgrad GEMMs only): still below 1F1B
    assert _zb_bubble(p, m, 1.0, 1.3, 0.9) < (p - 1) * 3.2


def test_zero_bubble_orders_keep_1f1b_memory_and_every_dependency():
    from simulator.training.schedules import ZeroBubbleH1

    p, m = 8, 32
    zb = ZeroBubbleH1(p, m)
    zb.fit([(1.0, 1.4, 0.7)] * p, 0.05)
    for s in range(p):
        order = zb.order(s)
        assert sorted(order) == sorted((k, 0, i) for k in "FBW" for i in range(m))
        seen: set[tuple[str, int]] = set()
        f = b = w = 0
        for kind, _, i in order:
            if kind == "B":
                assert ("F", i) in seen
            if kind == "W":
                assert ("B", i) in seen
            seen.add((kind, i))
            f, b, w = f + (kind == "F"), b + (kind == "B"), w + (kind == "W")
            assert f - w <= p and f - b <= p - s          # 1F1B's first-stage peak; its own before B
        assert zb.in_flight(s) == p
    assert zb.grads_ready(0, 0) == ("W", m - 1)


def test_zero_bubble_in_a_scenario_does_the_same_work_in_less_time():
    sets = ["cluster.nodes=2", "parallelism.tp=2", "parallelism.pp=8", "training.recompute=none"]
    one = simulate_training(parse_scenario(BASE, sets))
    zb = simulate_training(parse_scenario(BASE, [*sets, "parallelism.schedule=zb-h1"]))
    assert zb.iteration_time_s < one.iteration_time_s
    assert zb["time_breakdown_s"]["compute_s"] == pytest.approx(one["time_breakdown_s"]["compute_s"], rel=1e-6)
    assert zb["time_breakdown_s"]["pipeline_bubble_s"] < 0.7 * one["time_breakdown_s"]["pipeline_bubble_s"]
    with pytest.raises(CapsimError, match="virtual_stages"):
        parse_scenario(BASE, [*sets, "parallelism.schedule=zb-h1", "parallelism.virtual_stages=2"])


# ---- DualPipe (DeepSeek-V3) -------------------------------------------------------------------------
def _dualpipe_stages(p: int, f: float, b: float, w: float, **comm: float) -> list[StageSpec]:
    return [StageSpec([PassTime.of(f, **comm)] * 2, [PassTime.of(b, **comm)] * 2, wgt=[PassTime.of(w)] * 2)
            for _ in range(p)]


@pytest.mark.parametrize("p,m", [(4, 8), (4, 12), (8, 16), (8, 20), (16, 64)])
def test_dualpipe_bubble_and_activations_are_the_readmes(p, m):
    from simulator.training.schedules import DualPipe

    s = DualPipe(p, m)
    # every stage runs F, B and W of its m/2 micro-batches in each direction, once
    for st in range(p):
        assert sorted(s.order(st)) == sorted((k, c, i) for k in "FBW" for c in (0, 1) for i in range(m // 2))
    # deepseek-ai/DualPipe README, on equal chunks (F = B = W = 1, so F&B = F + B + W = 3 without
    # communication): bubble (p/2 - 1)(F&B + B - 3W) = (p/2 - 1)·2, activations p + 1 chunks
    bubble = simulate_step(_dualpipe_stages(p, 1.0, 1.0, 1.0), s).iteration_time - m * 3.0
    assert bubble == pytest.approx((p / 2 - 1) * (3.0 + 2.0 - 3.0))
    assert [s.in_flight(st) * 2 for st in range(p)] == [p + 1] * p
    # 1F1B on the same work idles (p - 1)(F + B + W) = 3(p - 1)
    assert bubble < 3 * (p - 1)


def test_dualpipe_chains_each_direction_and_overlaps_forward_with_backward():
    from simulator.training.schedules import DualPipe

    s = DualPipe(4, 8)
    assert [s.virtual_stage(0, c) for c in (0, 1)] == [0, 7] and [s.virtual_stage(3, c) for c in (0, 1)] == [3, 4]
    assert [s.layer_position(vs) for vs in (0, 3, 4, 7)] == [0, 3, 0, 3]   # the same layers, both ways
    assert s.depends_on("F", 4, 2) is None and s.depends_on("F", 5, 2) == ("F", 4, 2)   # enters at stage 3
    assert s.depends_on("B", 3, 1) == ("F", 3, 1) and s.depends_on("B", 6, 1) == ("B", 7, 1)
    # stage 0 (half rank 0): step 1 nF0 twice, step 2 F0 F1, step 3 B1 W1 F1 (zero bubble), then the
    # main step's overlapped slots: F0 with the whole backward of direction 1, and the reverse
    order, joined = s.order(0), s.joined(0)
    assert order[:8] == [("F", 0, 0), ("F", 0, 1), ("F", 0, 2), ("F", 1, 0), ("B", 1, 0), ("W", 1, 0),
                         ("F", 1, 1), ("F", 0, 3)]
    assert order[8:10] == [("B", 1, 1), ("W", 1, 1)] and {8, 9} <= joined and 7 not in joined
    assert s.weight_copies == 2 and s.grads_ready(0, 0)[0] == "W"
    # a slot of a forward and a backward: computation on one stream, both all-to-alls on the other
    f, b = PassTime.of(1.0, ep_comm=0.4), PassTime.of(2.0, ep_comm=0.6)
    assert joint_time([f, b]).total == pytest.approx(3.0)                     # max(3.0, 1.0): hidden
    assert joint_time([f, b], 0.1).total == pytest.approx(3.1)                # + 10% of the 1.0 s hidden
    slow = joint_time([PassTime.of(0.2, ep_comm=1.0), PassTime.of(0.3, ep_comm=0.9)])
    assert slow.total == pytest.approx(1.9) and slow.ep_comm == pytest.approx(1.4)   # comm-bound: 0.5 hidden


def test_dualpipe_in_a_scenario_holds_two_copies_and_hides_communication():
    sets = ["cluster.nodes=2", "parallelism.tp=2", "parallelism.pp=8", "training.recompute=none"]
    one = simulate_training(parse_scenario(BASE, sets))
    dual = simulate_training(parse_scenario(BASE, [*sets, "parallelism.schedule=dualpipe"]))
    b1, bd = one["time_breakdown_s"], dual["time_breakdown_s"]
    assert dual.iteration_time_s < one.iteration_time_s
    assert bd["pipeline_bubble_s"] < 0.5 * b1["pipeline_bubble_s"]
    assert bd["tp_comm_s"] < 0.5 * b1["tp_comm_s"]             # hidden under the other micro-batch's compute
    m1, md = one["memory_per_gpu_gib"], dual["memory_per_gpu_gib"]
    # every stage holds two parts of the 36 layers (4 or 5 each) and the embedding or head twice
    assert md["params"] == pytest.approx(2 * m1["params"], rel=0.02)
    assert md["optimizer"] == pytest.approx(2 * m1["optimizer"], rel=0.02)
    # dp = 1, yet the two copies' gradients are summed between their stages (over InfiniBand here)
    assert bd["dp_comm_exposed_s"] > 0 == b1["dp_comm_exposed_s"]
    with pytest.raises(CapsimError, match="even pp >= 2"):
        simulate_training(parse_scenario(BASE, ["parallelism.schedule=dualpipe", "parallelism.tp=8"]))
    with pytest.raises(CapsimError, match="at least 2·pp = 16"):
        simulate_training(parse_scenario(BASE, [*sets, "parallelism.schedule=dualpipe", "training.global_batch=8"]))
    with pytest.raises(CapsimError, match="zero_stage=2"):
        simulate_training(parse_scenario(BASE, [*sets, "parallelism.schedule=dualpipe", "parallelism.zero_stage=2"]))


def test_dualpipe_bounds_the_planner_uses_stay_below_the_step_and_the_report_draws_its_slots():
    from simulator.plan.bounds import busy_bound_s, work_bound_s
    from simulator.report import _slots
    from simulator.training.schedules import DualPipe

    s = DualPipe(8, 20)
    stages = _dualpipe_stages(8, 1.0, 1.3, 0.9, ep_comm=0.5)
    t = simulate_step(stages, s).iteration_time
    assert work_bound_s(stages, s) == pytest.approx(t)            # no gradient buckets: the same walk
    assert busy_bound_s(stages, s) <= t
    sets = ["cluster.nodes=2", "parallelism.tp=2", "parallelism.pp=8", "training.recompute=none",
            "parallelism.schedule=dualpipe", "training.global_batch=32"]
    r = simulate_training(parse_scenario(BASE, sets))
    tl = r.timeline_frame()
    slots = _slots(tl)
    assert set(slots["pass"]) == {"F", "B", "W", "F&B"}
    assert not slots.duplicated(["stage", "start_s", "end_s"]).any()
    # each F&B slot stands for its three passes (F of one micro-batch, B and W of another)
    assert len(tl) == len(slots) + 2 * (slots["pass"] == "F&B").sum()
    assert max(r.pipeline_busy()) <= 1.0


@pytest.mark.parametrize("p,m", [(3, 6), (4, 8), (8, 20)])
def test_dualpipev_bubble_activations_and_single_copy_of_the_weights(p, m):
    from simulator.training.schedules import DualPipeV

    s = DualPipeV(p, m)
    for st in range(p):      # every micro-batch down the V's first half and back up its second
        assert sorted(s.order(st)) == sorted((k, c, i) for k in "FBW" for c in (0, 1) for i in range(m))
    # README: (PP/2 - 1)(F&B + B - 3W) over PP = 2p stages, 2p + 1 chunks of activations
    bubble = simulate_step(_dualpipe_stages(p, 1.0, 1.0, 1.0), s).iteration_time - 2 * m * 3.0
    assert bubble == pytest.approx((p - 1) * 2.0)
    assert [s.in_flight(st) * 2 for st in range(p)] == [2 * p + 1] * p
    assert s.depends_on("F", p, 0) == ("F", p - 1, 0)          # the turn of the V, on the last stage
    assert s.weight_copies == 1 and s.layer_positions == 2 * p


def test_dualpipev_in_a_scenario_holds_the_weights_once():
    sets = ["cluster.nodes=2", "parallelism.tp=2", "parallelism.pp=8", "training.recompute=none"]
    inter = simulate_training(parse_scenario(BASE, [*sets, "parallelism.virtual_stages=2"]))
    v = simulate_training(parse_scenario(BASE, [*sets, "parallelism.schedule=dualpipev"]))
    assert v["memory_per_gpu_gib"]["params"] == pytest.approx(inter["memory_per_gpu_gib"]["params"], rel=0.05)
    assert v.iteration_time_s < inter.iteration_time_s
    assert v["layout"]["schedule"] == "dualpipev" and v["layout"]["virtual_stages"] == 2


def test_the_planners_bound_is_the_step_engines_walk_for_every_candidate_of_one_schedule_shape():
    """The bound's walk is compiled once per schedule shape (simulator/plan/bounds.py): a second candidate
    of that shape with other pass times, and one with a hop between stages, get their own critical path."""
    from simulator.plan.bounds import _PROGRAMS, work_bound_s

    def stages(p: int, v: int, f: float, b: float, opt: float) -> list[StageSpec]:
        # uneven stages: the last is slower, so the walk's waits matter
        return [StageSpec([PassTime.of(f * (1 + 0.5 * (s == p - 1)))] * v, [PassTime.of(b * (1 + s / p))] * v,
                          optimizer=opt) for s in range(p)]

    for sched, v in ((OneFOneB(4, 8), 1), (Interleaved(4, 8, 2), 2)):
        for f, b, opt, p2p in ((1.0, 2.0, 0.1, 0.0), (0.3, 0.5, 0.0, 0.0), (1.0, 2.0, 0.1, 0.25)):
            st = stages(4, v, f, b, opt)
            t = simulate_step(st, sched, p2p=p2p).iteration_time
            assert work_bound_s(st, sched, p2p=p2p) == pytest.approx(t, rel=1e-12)
    assert (OneFOneB, 4, 1, 8) in _PROGRAMS and (Interleaved, 4, 2, 8) in _PROGRAMS
    # by hand, plain 1F1B with equal stages: (m + p - 1)·(f + b) plus the optimizer
    assert work_bound_s([StageSpec([PassTime.of(1.0)], [PassTime.of(2.0)], optimizer=0.5)] * 4,
                        OneFOneB(4, 8)) == pytest.approx(11 * 3.0 + 0.5)
