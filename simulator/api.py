"""Helpers the public API, CLI and TUI share: resolve a scenario into model, hardware and layout."""

from __future__ import annotations

from typing import Any

from .catalog import get_model
from .costmodel.layout import Layout
from .costmodel.transformer import decode_step_ops, layer_ops, prefill_ops
from .hardware import get_profile
from .scenario import Scenario, ServingScenario


def layer_cost_table(sc: Scenario) -> list[dict[str, Any]]:
    """Every kernel of one layer with its time and achieved TFLOP/s (``capsim cost``)."""
    model, hw = get_model(sc.model), get_profile(sc.hardware)
    rows: list[dict[str, Any]] = []

    def add(pass_: str, ops: Any) -> None:
        for o in ops:
            rows.append({"pass": pass_, "op": o.name, "kind": o.kind, "time_us": o.time * 1e6,
                         "tflops": o.flops / o.time / 1e12 if o.flops and o.time else 0.0})

    if isinstance(sc, ServingScenario):
        from .serving_lengths import mean_length

        prompt = int(mean_length(sc.workload.prompt_tokens))
        batch = sc.replica.max_sequences(hw.memory_gib)      # a full decode batch of the chosen engine
        add("prefill", prefill_ops(model, hw, tp=sc.replica.tp, batch=1, seq=prompt, precision=sc.precision))
        add("decode", decode_step_ops(model, hw, tp=sc.replica.tp, batch=batch, kv_tokens=batch * prompt,
                                      precision=sc.precision))
        return rows
    from .training.layout import resolve_layout

    lay, mb = resolve_layout(sc, model, hw)
    ops = layer_ops(model, hw, lay, mb, sc.training.seq_len)
    add("forward", ops.fwd)
    add("backward", ops.bwd)
    add("recompute", ops.recompute)
    return rows


__all__ = ["Layout", "layer_cost_table"]
