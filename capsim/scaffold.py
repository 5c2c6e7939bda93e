"""Starting a scenario and learning its keys: ``capsim init``, ``capsim keys``, ``capsim schema``.

``init`` writes a commented scenario from a template (a model and a GPU checked against the
catalogs first); ``keys`` prints the key reference that :mod:`simulator.scenario.reference` reads
from the scenario models; ``schema`` writes their JSON Schema for editors.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.text import Text

TRAIN_TEMPLATE = """\
# Completion in an editor: capsim schema --out capsim.schema.json, then a first line
#   # yaml-language-server: $schema=capsim.schema.json
# A training job: {model} on {gpus} × {hardware}. Run it with:  capsim train {path}
# Every key: capsim keys (capsim keys parallelism. for one section). Find a layout: capsim sweep {path} --layouts
kind: training
name: {name}
model: {model}            # a catalog name (capsim models), an inline shape mapping or a Hugging Face config.json
hardware: {hardware}      # a GPU profile (capsim profiles) or a calibrated profile's path
cluster:
  nodes: 1                # nodes in the job
  gpus_per_node: 8        # GPUs per node, one NVLink domain (8: a DGX/HGX node)
parallelism:
  tp: {tp}                   # tensor-parallel GPUs (inside a node); must divide the attention heads
  pp: 1                   # pipeline stages; must divide the layers
  # dp: the rest of the GPUs (GPUs / (tp × pp)) unless given
  zero_stage: 1           # 0-3: how far optimizer states, gradients and weights are sharded over DP
training:
  # framework: megatron-core  # a stack's preset fills the keys left out (capsim keys training.framework)
  seq_len: {seq_len}           # tokens per sequence
  global_batch: 256       # sequences per iteration
  micro_batch: auto       # sequences per micro-batch (auto: the largest that fits)
  precision: bf16         # bf16, fp16, fp8, ... (capsim keys training.precision)
  recompute: selective    # none, selective or full activation recomputation
  total_tokens: 1.0e+9    # tokens to train on: gives time to train, GPU-hours and cost
reliability:
  node_mtbf_hours: 2000   # mean hours between failures of one node (null: never fails)
pricing:
  market: on_demand       # on_demand or spot; provider/instance/usd_per_gpu_hour pick or override the price
seed: 0                   # same seed, same result
"""

SERVE_TEMPLATE = """\
# Completion in an editor: capsim schema --out capsim.schema.json, then a first line
#   # yaml-language-server: $schema=capsim.schema.json
# Serving {model} on {hardware}: latency percentiles, throughput, SLO attainment and cost. Run it with:
#   capsim serve {path}
# Every key: capsim keys (capsim keys replica. for one section). Size the fleet: capsim sweep {path} --grid cluster.replicas=1,2,4
kind: serving
name: {name}
model: {model}            # a catalog name (capsim models), an inline shape mapping or a Hugging Face config.json
hardware: {hardware}      # a GPU profile (capsim profiles) or a calibrated profile's path
precision: bf16           # weights and GEMMs: bf16, fp8, nvfp4, w4a16, ... (capsim keys precision)
replica:
  batching: continuous    # continuous (vLLM, TensorRT-LLM, SGLang), dynamic (Triton), static or none
  tp: 1                   # tensor-parallel GPUs per replica
  engine: vllm            # vllm, trtllm, trtllm-bench or sglang: its preset fills the engine keys left out
  # max_num_seqs: 256     # uncomment to override the preset (capsim keys replica. shows each preset rule)
workload:
  duration_s: 60          # simulated seconds of arrivals
  arrival: {{process: poisson, rate_rps: 4}}      # or gamma, diurnal, closed_loop, offline, trace
  prompt_tokens: {{dist: lognormal, mean: 1024, sigma: 0.6}}
  output_tokens: {{dist: lognormal, mean: 256, sigma: 0.5}}
cluster:
  replicas: 1             # replicas at the start (all the time without autoscaling)
  router: least_outstanding
autoscaling:
  policy: none            # none, hpa, kpa, ray, queue, scheduled or predictive
slo:
  ttft_p99_s: 1.0         # time to first token, 99th percentile, seconds
  tpot_p99_s: 0.05        # time per output token, 99th percentile, seconds
pricing:
  market: on_demand       # on_demand or spot; provider/instance/usd_per_gpu_hour pick or override the price
seed: 0                   # same seed, same result
"""

DEFAULTS = {"train": ("llama-3.1-8b", "h100-sxm"), "serve": ("llama-3.1-8b", "h100-sxm")}


def scenario_template(kind: str, *, model: str | None, hardware: str | None, path: str) -> str:
    """The commented scenario ``capsim init KIND`` writes; the model and GPU are checked first."""
    from simulator.catalog import get_model
    from simulator.errors import CapsimError
    from simulator.hardware import get_profile

    if kind not in DEFAULTS:
        raise CapsimError(f"capsim init {kind!r}: choose train or serve")
    m, hw = model or DEFAULTS[kind][0], hardware or DEFAULTS[kind][1]
    spec = get_model(m)          # an unknown name is an error with the closest names
    get_profile(hw)
    name = f"{m}-{'training' if kind == 'train' else 'serving'}"
    template = TRAIN_TEMPLATE if kind == "train" else SERVE_TEMPLATE
    # a sequence the model takes (learned positions end at max_positions; a ViT's is its patches)
    seq = spec.default_seq_len if spec.architecture == "vit" else (
        min(4096, spec.max_positions) if spec.position == "learned" else 4096)
    # tensor parallelism over the node for models whose bf16 weights alone (2 bytes a parameter) pass 40 GB
    tp = 8 if spec.total_params() * 2 > 40e9 and spec.heads % 8 == 0 else 1
    return template.format(model=m, hardware=hw, name=name, path=path, gpus=8, seq_len=seq, tp=tp)


def print_keys(console: Console, prefix: str, kind: str | None, *, as_json: bool) -> int:
    """The key reference, one block per key; returns how many keys matched."""
    from simulator.errors import CapsimError, closest
    from simulator.scenario.reference import key_rows

    rows = key_rows(kind, prefix)
    if not rows:
        every = [r.path for r in key_rows(kind)]
        hint = closest(prefix, every, n=5)
        raise CapsimError(f"no scenario key starts with {prefix!r}" + (f"; closest: {', '.join(hint)}" if hint else ""))
    if as_json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return len(rows)
    kinds = sorted({r.kind for r in rows})
    for k in kinds:
        console.print(Text(f"{k} scenario keys" + (f" starting with {prefix}" if prefix else ""), style="bold underline"))
        for r in (r for r in rows if r.kind == k):
            head = Text(r.path, style="bold cyan")
            head.append(f"  {r.type}")
            if r.allowed:
                head.append(f" ({r.allowed})")
            console.print(head, overflow="fold")
            lines: list[tuple[str, Any]] = [("default", r.default)]
            if r.when:
                lines.append(("only when", "; ".join(r.when)))
            lines.append(("", r.description))
            for label, value in lines:
                t = Text()
                if label:
                    t.append(f"{label}: ", style="dim")
                t.append(str(value))
                console.print(Padding(t, (0, 0, 0, 4)), overflow="fold")
    return len(rows)


def schema_text() -> str:
    from simulator.scenario.reference import scenario_schema

    return json.dumps(scenario_schema(), indent=2) + "\n"
