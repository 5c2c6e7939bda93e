"""Training framework presets (issue 17 item 1): one key sets a stack's documented behaviour; keys
the scenario writes win; versions pick the newest preset at or below them."""

from __future__ import annotations

import warnings

import pytest

from simulator.errors import CapsimError
from simulator.scenario import parse_scenario
from simulator.training import simulate_training
from simulator.training.frameworks import PRESETS, FrameworkWarning

BASE = {"kind": "training", "model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"nodes": 2},
        "parallelism": {"tp": 2, "pp": 2},
        "training": {"seq_len": 4096, "global_batch": 64, "micro_batch": 1, "precision": "fp8"}}


def _sc(*sets: str):
    return parse_scenario(BASE, list(sets))


def test_nemo_2_fills_the_performance_recipes_defaults():
    sc = _sc("training.framework=nemo")
    tr, par = sc.training, sc.parallelism
    assert (tr.grad_precision, tr.overlap_grad_reduce, tr.overlap_param_gather, tr.cross_entropy,
            tr.fp8_recipe, tr.grad_accumulation_fusion) == ("bf16", True, True, "fused", "current", True)
    assert (par.zero_stage, par.sequence_parallel, par.tp_comm_overlap) == (1, True, True)
    assert par.placement == ["tp", "cp", "dp", "pp"]


def test_rules_read_the_layout_and_the_precision():
    one = _sc("training.framework=nemo", "parallelism.tp=1", "parallelism.pp=4")
    assert not one.parallelism.sequence_parallel and not one.parallelism.tp_comm_overlap
    bf16 = _sc("training.framework=nemo", "training.precision=bf16")
    assert bf16.training.fp8_recipe is None              # per-tensor FP8 only
    assert _sc("training.framework=deepspeed", "training.precision=fp16").training.grad_precision == "fp16"
    assert _sc("training.framework=deepspeed", "training.precision=bf16").training.grad_precision == "bf16"


def test_keys_the_scenario_writes_win():
    sc = _sc("training.framework=nemo", "training.grad_precision=fp32", "parallelism.zero_stage=3")
    assert sc.training.grad_precision == "fp32" and sc.parallelism.zero_stage == 3
    assert sc.training.overlap_param_gather is False      # the rule reads the written ZeRO stage
    # what the preset filled is not recorded as written (sweeps re-apply a preset per configuration)
    assert "grad_precision" in sc.training.model_fields_set
    assert "overlap_param_gather" not in sc.training.model_fields_set


def test_versions_choose_the_newest_preset_at_or_below():
    assert _sc("training.framework=nemo", "training.framework_version=24.07").training.cross_entropy == "fp32"
    assert _sc("training.framework=nemo", "training.framework_version=24.12").training.fp8_recipe == "delayed"
    assert _sc("training.framework=nemo", "training.framework_version=26.02").training.fp8_recipe == "current"
    with pytest.warns(FrameworkWarning, match="23.11"):
        old = _sc("training.framework=nemo", "training.framework_version=23.11")
    assert old.training.fp8_recipe == "delayed"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _sc("training.framework=nemo")


def test_a_version_without_a_framework_is_an_error():
    with pytest.raises(CapsimError, match="framework_version needs training.framework"):
        _sc("training.framework_version=24.07")
    with pytest.raises(CapsimError, match="training.framework"):
        _sc("training.framework=megatron")


def test_torchtitan_is_fsdp_with_autograd_accumulation():
    sc = _sc("training.framework=torchtitan")
    assert sc.parallelism.zero_stage == 3 and sc.training.grad_accumulation_fusion is False
    r = simulate_training(sc)
    # ZeRO-3 under PP 2 keeps the weights gathered (torchtitan's reshard policy), so they are whole
    whole = simulate_training(_sc("parallelism.zero_stage=1"))
    assert r["memory_per_gpu_gib"]["params"] == whole["memory_per_gpu_gib"]["params"]


def test_deepspeed_preset_is_what_the_vtrain_rows_ran():
    doc = {"kind": "training", "model": "megatron-1.7b", "hardware": "a100-sxm-80gb",
           "cluster": {"nodes": 2, "gpus_per_node": 8}, "parallelism": {"tp": 2, "pp": 2},
           "training": {"seq_len": 2048, "global_batch": 64, "micro_batch": 2, "precision": "fp16",
                        "recompute": "full", "flash_attention": False}}
    explicit = {**doc, "parallelism": {**doc["parallelism"], "placement": ["tp", "cp", "dp", "pp"]},
                "training": {**doc["training"], "grad_precision": "fp16", "overlap_grad_reduce": False,
                             "grad_accumulation_fusion": False}}
    preset = {**doc, "training": {**doc["training"], "framework": "deepspeed"}}
    assert simulate_training(parse_scenario(preset)).iteration_time_s == \
        simulate_training(parse_scenario(explicit)).iteration_time_s


@pytest.mark.parametrize("framework", sorted(PRESETS))
def test_every_preset_runs_and_cites_every_value(framework):
    for preset in PRESETS[framework].values():
        keys = {f"training.{k}" for k in preset.training} | {f"parallelism.{k}" for k in preset.parallelism}
        assert keys <= set(preset.sources), keys - set(preset.sources)
        assert all(preset.sources[k].strip() for k in keys)
        r = simulate_training(_sc(f"training.framework={framework}", f"training.framework_version={preset.version}"))
        assert r.iteration_time_s > 0


def test_the_scenario_key_names_exactly_the_presets():
    import typing

    from simulator.scenario.training import Training

    ann = Training.model_fields["framework"].annotation
    names = {a for arg in typing.get_args(ann) for a in typing.get_args(arg)}
    assert names == set(PRESETS)
