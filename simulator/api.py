"""Helpers the public API, CLI and TUI share: resolve a scenario into model, hardware and layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .catalog import get_model
from .costmodel.fusion import engine_fusion
from .costmodel.layout import Layout
from .costmodel.transformer import decode_step_ops, layer_ops, prefill_ops
from .hardware import HardwareProfile, get_profile
from .layers import LayerSpec
from .scenario import ServingScenario, TrainingScenario


def index_ranges(specs: Sequence[LayerSpec], spec: LayerSpec) -> str:
    """The indices of the layers equal to ``spec`` as ranges, e.g. ``0-2, 5``."""
    runs: list[list[int]] = []
    for i, s in enumerate(specs):
        if s == spec:
            if runs and runs[-1][1] == i - 1:
                runs[-1][1] = i
            else:
                runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def scenario_hardware(sc: TrainingScenario | ServingScenario) -> HardwareProfile:
    """The scenario's GPU with its measured tables bound to what runs on it: the serving engine
    (``replica.engine``/``engine_version``), or the training basis; a fresh coverage count."""
    hw = get_profile(sc.hardware)
    if isinstance(sc, ServingScenario):
        replica = sc.replica
        return hw.with_engine(getattr(replica, "engine", "vllm"), getattr(replica, "engine_version", None))
    return hw.with_engine(None)


def layer_cost_table(sc: TrainingScenario | ServingScenario, hw: HardwareProfile | None = None) -> list[dict[str, Any]]:
    """Every kernel of one layer with its time, achieved TFLOP/s and basis (``measured`` table or
    ``roofline``) for ``capsim cost``; a model whose layers differ gets one set of rows per kind of
    layer, ``layers`` naming its indices. Pass ``hw`` (from :func:`scenario_hardware`) to read the
    coverage of its tables afterwards."""
    model = get_model(sc.model)
    hw = scenario_hardware(sc) if hw is None else hw
    rows: list[dict[str, Any]] = []
    specs = model.layer_specs()
    kinds = [spec for spec, _ in model.layer_groups()]

    def add(pass_: str, ops: Any, spec: Any) -> None:
        where = index_ranges(specs, spec)
        for o in ops:
            rows.append({"pass": pass_, "op": o.name, "kind": o.kind, "time_us": o.time * 1e6,
                         "tflops": o.flops / o.time / 1e12 if o.flops and o.time else 0.0, "layers": where,
                         "basis": "measured" if o.measured else "roofline"})

    if isinstance(sc, ServingScenario):
        from .errors import InfeasibleError
        from .serving.simulate import build_replica_model, replica_hardware
        from .serving_lengths import mean_length

        hw = replica_hardware(sc)      # the replica's engine tables, after the precision check
        if not model.generative:       # one forward per request: its layers (a CNN: every kernel), no decode pass
            _forward_rows(sc, model, hw, add, kinds, rows)
            return rows
        prompt = int(mean_length(sc.workload.prompt_tokens))
        try:
            batch = build_replica_model(sc)[1].max_num_seqs     # a full decode batch of the chosen engine's preset
        except InfeasibleError:        # no KV cache fits: the bound the engine would start from
            batch = (sc.replica.resolved(model, memory_gib=hw.memory_gib, gpu=hw.name, precision=sc.precision)
                     .max_num_seqs or 2048) if sc.replica.iteration_level else sc.replica.max_sequences(hw.memory_gib)
        fusion = engine_fusion(sc.replica.engine)
        static = sc.replica.resolved(model, memory_gib=hw.memory_gib, gpu=hw.name,
                                     precision=sc.precision).fp8_scales == "static"
        for spec in kinds:
            add("prefill", prefill_ops(spec, hw, tp=sc.replica.tp, batch=1, seq=prompt, precision=sc.precision,
                                       fusion=fusion, fp8_static=static), spec)
        for spec in kinds:
            add("decode", decode_step_ops(spec, hw, tp=sc.replica.tp, batch=batch, kv_tokens=batch * prompt,
                                          precision=sc.precision, fusion=fusion, fp8_static=static), spec)
        return rows
    from .training.layout import resolve_layout

    lay, mb = resolve_layout(sc, model, hw)
    for spec in kinds:
        ops = layer_ops(spec, hw, lay, mb, sc.training.seq_len)
        add("forward", ops.fwd, spec)
        add("backward", ops.bwd, spec)
        add("recompute", ops.recompute, spec)
    return rows


def _forward_rows(sc: ServingScenario, model: Any, hw: HardwareProfile, add: Any, kinds: list[LayerSpec],
                  rows: list[dict[str, Any]]) -> None:
    """``capsim cost`` of a model that generates nothing: the forward of one input (a ViT's patches and
    class token, an encoder's sequence; a CNN's convolutions as implicit GEMMs, ``layers`` naming each)."""
    from .serving.inputs import resolve_inputs
    from .serving_lengths import mean_length

    if model.convnet is not None:
        from .costmodel.convolution import conv_forward_ops

        for o in conv_forward_ops(hw, model.conv_ops(), 1, sc.precision):
            rows.append({"pass": "forward", "op": o.name, "kind": o.kind, "time_us": o.time * 1e6,
                         "tflops": o.flops / o.time / 1e12 if o.flops and o.time else 0.0, "layers": "",
                         "basis": "measured" if o.measured else "roofline"})
        return
    seq = int(mean_length(resolve_inputs(sc, model).workload.prompt_tokens))
    for spec in kinds:
        add("forward", prefill_ops(spec, hw, tp=sc.replica.tp, batch=1, seq=seq, precision=sc.precision), spec)


__all__ = ["Layout", "layer_cost_table", "scenario_hardware"]
