"""aiconfigurator's measured serving rows, simulated as they were run.

Data: ``bench/data/aiconfigurator_silicon_sample.csv`` (committed by the measured-silicon work; see
``bench/data/README.md``). A row is one engine at one concurrency c and one fixed ISL/OSL, measured
by aiperf in closed loop: 2·c warm-up requests drained, then 20·c measured requests, mean TTFT and
mean TPOT over the measured ones (``../shared/reference/README.md``).

Each row is simulated with that harness (``workload.arrival: closed_loop`` with ``warmup_requests
= 2c``, ``requests = 20c``, every user starting at once: aiperf's concurrency mode) and with the
engine's preset at the row's version (``replica.engine`` / ``engine_version``) plus the settings
aiconfigurator's generator writes for a benchmark run (its ``rule_plugin/benchmark/*.rule`` and
the versioned backend templates, github.com/ai-dynamo/aiconfigurator, read at commit 095f58a5):

- ``max_batch_size`` (vLLM ``max-num-seqs``, SGLang ``max-running-requests``) = the row's
  ``batch_size`` column (``agg_decode max_batch_size = max_batch_size``), per attention-DP rank; aiperf's
  concurrency is the source's ``silicon_concurrency``: the batch, or batch × attention DP (``_concurrency``);
- TensorRT-LLM: ``max_num_tokens = max_batch_size + ISL + 1500``, chunked prefill off, KV block
  reuse off, ``free_gpu_memory_fraction`` 0.80 (the 1.0.0rc3 template's default), overlap
  scheduler on (``agg disable_overlap_scheduler = false``);
- vLLM 0.12: ``max-num-batched-tokens`` is not passed by the 0.12.0 template (vLLM's own default),
  prefix caching off (``--no-enable-prefix-caching``);
- SGLang: ``max-prefill-tokens = ISL + 1500``, ``enable-mixed-chunk`` (prefill chunks share a
  batch with decodes; in the rules since 2026-01-19, so undated SGLang 0.5.1 runs may predate it),
  radix cache off.

- KV cache: aiconfigurator's precision profiles (``sdk/task_v1_compat.py`` ``_PROFILE_TO_QUANT``) pair
  ``fp8`` and ``nvfp4`` GEMMs with an fp8 KV cache (``kvcache_quant_mode: fp8``), which the
  generator passes to every engine (``--kv-cache-dtype fp8``, SGLang ``fp8_e4m3``); so those rows
  set ``kv_cache_precision: fp8`` rather than the engine's ``auto``.

- Prefix caching off, and no prompt found cached (the default). An open question, run with
  ``--repeated-prompts``: the generator passes ``--no-enable-prefix-caching`` / ``disable-radix-cache``
  only when its ``disable_prefix_cache`` is set, which its current rules never do without a prefix
  (``rendering/engine.py``, ``rule_plugin/benchmark/*.rule``), so vLLM V1 and SGLang would keep their
  prefix caches on (TensorRT-LLM's template writes ``enable_block_reuse: false``); and aiperf draws
  prompts from a synthetic dataset of ``--num-dataset-entries`` prompts, default 100 (aiperf
  ``InputDefaults.NUM_DATASET_ENTRIES``, SHUFFLE sampling), which aiconfigurator's ``bench_run.sh``
  does not set, so after the first 100 requests every prompt repeats. With that, a measured request
  on vLLM or SGLang finds its prompt cached unless it is among the run's first 100 requests
  (``workload.prefix_cache_hit_rate`` = that share of the measured ones). It brings vLLM's TTFT much
  closer but makes SGLang's rows far too fast, so the rows' own engine settings in this respect are
  not known; the README reports both.
- FP8 activation scales: the engine preset's (static for TensorRT-LLM, dynamic for vLLM's and
  SGLang's ``--quantization fp8``), static for NVIDIA's ModelOpt checkpoints (``nvidia/...-FP8``).

Rows whose precision column is empty are simulated in bf16 (the checkpoint's dtype) and flagged.
Nothing here is fitted to the rows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data" / "aiconfigurator_silicon_sample.csv"

MODELS = {"meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b", "nvidia/Llama-3.1-8B-Instruct-FP8": "llama-3.1-8b",
          "meta-llama/Llama-3.1-70B": "llama-3.1-70b", "Qwen/Qwen3-32B": "qwen3-32b",
          "nvidia/Qwen3-32B-NVFP4": "qwen3-32b"}
SYSTEMS = {"h100_sxm": "h100-sxm", "h200_sxm": "h200", "b200_sxm": "b200", "gb200": "gb200", "b300_sxm": "b300"}
# the row's GEMM quantization -> capsim's precision vocabulary (simulator/precision.py)
PRECISIONS = {"fp8": "fp8", "fp8_block": "fp8-block", "nvfp4": "nvfp4"}
ENGINES = {"trtllm": "trtllm", "vllm": "vllm", "sglang": "sglang"}
# MoE checkpoints -> capsim catalog names (simulator/catalog/hf_configs: aiconfigurator-core's config.json files)
MOE_MODELS = {"deepseek-ai/DeepSeek-R1": "deepseek-r1", "nvidia/DeepSeek-R1-NVFP4": "deepseek-r1",
              "deepseek-ai/DeepSeek-V3": "deepseek-v3", "nvidia/DeepSeek-V3.1-NVFP4": "deepseek-v3",
              "openai/gpt-oss-120b": "gpt-oss-120b", "Qwen/Qwen3-235B-A22B-FP8": "qwen3-235b-a22b",
              "moonshotai/Kimi-K2.5": "kimi-k2.5", "MiniMaxAI/MiniMax-M2.5": "minimax-m2.5"}
# MoE checkpoints of the development data capsim cannot express, with the reason (simulator/hf_families.py)
NOT_EXPRESSIBLE = {"Qwen/Qwen3.5-397B-A17B": "qwen3_5_moe", "zhipuai/GLM-5": "glm_moe_dsa"}
# the MoE quantization -> capsim's vocabulary; int4_wo (Kimi-K2.5's INT4 weight-only QAT experts) is w4a16
MOE_PRECISIONS = {**PRECISIONS, "int4_wo": "w4a16"}
HOPPER = ("h100-sxm", "h200")
TRTLLM_KV_FRACTION = 0.80   # extra_engine_args.1.0.0rc3.yaml.j2: free_gpu_memory_fraction | default(0.80)


@dataclass(frozen=True, slots=True)
class Row:
    """One measured configuration."""

    id: str
    checkpoint: str        # the row's model_path
    engine: str
    version: str | None   # None: the row does not say (simulated with the newest preset; flagged)
    model: str
    hardware: str
    precision: str
    precision_given: bool
    tp: int
    concurrency: int
    isl: int
    osl: int
    ttft_ms: float
    tpot_ms: float
    attention_dp: int = 1
    ep: int = 1
    note: str = ""         # how the row's precision or concurrency was mapped, when not one to one
    max_batch: int | None = None   # the engine's max batch per attention-DP group (None: the concurrency)

    @property
    def gpus(self) -> int:
        return self.tp * self.attention_dp


def dense_rows(path: Path = DATA) -> list[Row]:
    """The aggregated (not disaggregated) rows of dense models capsim's catalog has."""
    d = pd.read_csv(path)
    d = d[(d["mode"] == "agg") & d["model_path"].isin(list(MODELS))]
    out = []
    for r in d.itertuples(index=False):
        q = r.gemm_quant_mode
        given = isinstance(q, str)
        version = r.backend_version if isinstance(r.backend_version, str) else None
        c, _, note = _concurrency(r, 1)
        out.append(Row(id=str(r.id), checkpoint=str(r.model_path), engine=ENGINES[r.backend], version=version,
                       model=MODELS[r.model_path], hardware=SYSTEMS[r.system],
                       precision=PRECISIONS[q] if given else "bf16", precision_given=given,
                       tp=int(r.tp_size), concurrency=c, isl=int(r.isl), osl=int(r.osl),
                       ttft_ms=float(r.silicon_ttft_ms), tpot_ms=float(r.silicon_tpot_ms), note=note))
    return out


def _concurrency(r: Any, adp: int) -> tuple[int, int | None, str]:
    """(aiperf's concurrency, the engine's max batch per attention-DP group, a note) of a row.

    ``batch_size`` is the engine's max batch (``max_batch_size`` / ``max-num-seqs``), per attention-DP rank
    as TensorRT-LLM's and vLLM's are; aiperf's concurrency is ``silicon_concurrency`` in the row's source
    (the generator's ``bench_run.sh --concurrency``). They agree on every row but those with attention DP
    where the source says ``batch_size × attention_dp`` (a batch of that many on each rank) and a few Dynamo
    runs whose concurrency is 2-32× the batch with no attention DP: their TTFT (0.2-1 s) holds no queue of that
    depth (32× at 15k/500 would wait minutes), so the label cannot be the harness's concurrency there; those
    rows keep ``batch_size`` as both and are noted."""
    b = int(r.batch_size)
    m = re.search(r"silicon_concurrency=(\d+)", str(r.silicon_data_source))
    if m is None or int(m.group(1)) == b:
        return b, None, ""
    sc = int(m.group(1))
    if adp > 1 and sc == b * adp:
        return sc, b, ""
    return b, None, f"source's silicon_concurrency {sc} != batch_size {b} x attention_dp {adp}: run at {b}"


def _int(v: object) -> int:
    """A layout column: empty (not recorded: vLLM's rows without attention DP or EP) is 1."""
    return 1 if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)  # type: ignore[call-overload]


def moe_rows(path: Path = DATA) -> tuple[list[Row], list[tuple[str, str, int]]]:
    """The aggregated rows of MoE checkpoints: those capsim expresses, and ``(checkpoint, reason, rows)``
    for those it cannot.

    Layout: the row's GPUs are ``tp_size × attention_dp_size`` (= ``moe_tp_size × moe_ep_size``), simulated
    as ``replica.tp = tp_size``, ``attention_dp = attention_dp_size``, ``ep = moe_ep_size``. Precision: the
    row's MoE quantization (the experts hold almost all the weights), for every GEMM. GPT-OSS's ``nvfp4``
    rows on Hopper ran its MXFP4 experts as weight-only 4-bit kernels with bf16 math (Hopper has no FP4 tensor
    cores): simulated as w4a16 and noted."""
    from simulator.hf_families import NOT_EXPRESSIBLE as WHY

    d = pd.read_csv(path)
    d = d[d["mode"] == "agg"]
    out = []
    for r in d[d["model_path"].isin(list(MOE_MODELS))].itertuples(index=False):
        q = r.moe_quant_mode if isinstance(r.moe_quant_mode, str) else r.gemm_quant_mode
        given = isinstance(q, str)
        hw = SYSTEMS[r.system]
        prec, note = (MOE_PRECISIONS[q] if given else "bf16"), ""
        if prec == "nvfp4" and hw in HOPPER:
            prec, note = "w4a16", "nvfp4 on Hopper: MXFP4 weight-only experts, simulated as w4a16"
        version = r.backend_version if isinstance(r.backend_version, str) else None
        tp, ep, moe_tp = _int(r.tp_size), max(_int(r.moe_ep_size), 1), max(_int(r.moe_tp_size), 1)
        adp = _int(r.attention_dp_size)
        if isinstance(r.attention_dp_size, float) and math.isnan(r.attention_dp_size) and moe_tp * ep > tp:
            adp = moe_tp * ep // tp     # not recorded: the data-parallel attention the MoE layout implies
        c, batch, c_note = _concurrency(r, adp)
        note = "; ".join(n for n in (note, c_note) if n)
        if tp * adp != moe_tp * ep:
            note = f"layout: tp {tp} x attention_dp {adp} != moe_tp {moe_tp} x ep {ep}"
        out.append(Row(id=str(r.id), checkpoint=str(r.model_path), engine=ENGINES[r.backend], version=version,
                       model=MOE_MODELS[r.model_path], hardware=hw, precision=prec, precision_given=given,
                       tp=tp, concurrency=c, isl=int(r.isl), osl=int(r.osl),
                       ttft_ms=float(r.silicon_ttft_ms), tpot_ms=float(r.silicon_tpot_ms),
                       attention_dp=adp, ep=ep, note=note, max_batch=batch))
    skipped = [(ckpt, f"model_type {mt}: {WHY[mt]}", int((d["model_path"] == ckpt).sum()))
               for ckpt, mt in NOT_EXPRESSIBLE.items() if (d["model_path"] == ckpt).any()]
    return out, skipped


AIPERF_DATASET_ENTRIES = 100   # aiperf InputDefaults.NUM_DATASET_ENTRIES (--num-dataset-entries default)


def repeated_prompt_share(c: int, measured_per_user: int = 20, warmup_per_user: int = 2) -> float:
    """The share of the measured requests whose prompt an earlier request of the run already sent:
    aiperf cycles through its 100 synthetic prompts, so only the run's first 100 requests are new."""
    measured, warmup = measured_per_user * c, warmup_per_user * c
    new = min(measured, max(0, AIPERF_DATASET_ENTRIES - warmup))
    return 1.0 - new / measured if measured else 0.0


def scenario(row: Row, *, measured_per_user: int = 20, warmup_per_user: int = 2, start: str = "burst",
             repeated_prompts: bool = False) -> dict[str, Any]:
    """The scenario the row was run as (module docstring)."""
    c = row.concurrency
    batch = row.max_batch or c          # the engine's max batch, per attention-DP group
    replica: dict[str, Any] = {"tp": row.tp, "ep": row.ep, "attention_dp": row.attention_dp,
                               "batching": "continuous", "engine": row.engine,
                               "engine_version": row.version, "max_num_seqs": batch,
                               "kv_cache_precision": "fp8" if row.precision_given else "bf16"}
    if row.checkpoint.startswith("nvidia/") and row.precision == "fp8":
        replica["fp8_scales"] = "static"       # NVIDIA's ModelOpt FP8 checkpoints carry calibrated input scales
    hit = 0.0
    if row.engine == "trtllm":
        replica |= {"max_batched_tokens": batch + row.isl + 1500, "chunked_prefill": False,
                    "prefix_caching": False, "kv_cache_fraction": TRTLLM_KV_FRACTION}
    else:
        if repeated_prompts:
            hit = repeated_prompt_share(c, measured_per_user, warmup_per_user)   # the engine's cache: on
        else:
            replica["prefix_caching"] = False
        if row.engine == "sglang":
            replica |= {"max_prefill_tokens": row.isl + 1500, "mixed_chunk": True}
    return {
        "kind": "serving", "model": row.model, "hardware": row.hardware, "precision": row.precision,
        "replica": replica,
        "pricing": {"usd_per_gpu_hour": 1.0},   # cost is not compared; GB200 has no catalog price
        "workload": {"arrival": {"process": "closed_loop", "concurrency": c, "requests": measured_per_user * c,
                                 "warmup_requests": warmup_per_user * c, "start": start},
                     "prefix_cache_hit_rate": hit,
                     "prompt_tokens": {"dist": "fixed", "value": row.isl},
                     "output_tokens": {"dist": "fixed", "value": row.osl}},
        "seed": 0,
    }


def simulate(row: Row, **kw: Any) -> dict[str, Any]:
    """Predicted mean TTFT/TPOT (ms) of one row, or the reason it could not run."""
    from simulator import parse_scenario, simulate_serving
    from simulator.errors import CapsimError

    if row.note.startswith("layout:"):
        return {"id": row.id, "error": f"the row's {row.note}"}

    try:
        r = simulate_serving(parse_scenario(scenario(row, **kw)))
    except CapsimError as e:
        return {"id": row.id, "error": str(e).splitlines()[0]}
    ttft, tpot = r.ttft_s.mean, r.tpot_s.mean
    if ttft is None or tpot is None or r.rejected:
        return {"id": row.id, "error": f"{r.rejected} requests rejected" if r.rejected else "no request completed"}
    return {"id": row.id, "ttft_ms": 1e3 * ttft, "tpot_ms": 1e3 * tpot, "preemptions": r.preemptions}


def spearman(a: pd.Series, b: pd.Series) -> float:
    """Rank correlation (NaN below three points)."""
    if len(a) < 3:
        return math.nan
    return float(a.rank().corr(b.rank()))


def e2e_ms(ttft_ms: float, tpot_ms: float, osl: int) -> float:
    """E2E as aiperf defines it from its means: TTFT + (output - 1) * TPOT."""
    return ttft_ms + (osl - 1) * tpot_ms


def tok_s_per_gpu(row: Row, ttft_ms: float, tpot_ms: float) -> float:
    """Output tokens/s per GPU of c closed-loop users: c * OSL / E2E, over the replica's GPUs."""
    return row.concurrency * row.osl / (1e-3 * e2e_ms(ttft_ms, tpot_ms, row.osl)) / row.gpus
