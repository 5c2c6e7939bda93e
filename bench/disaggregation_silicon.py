"""aiconfigurator's measured disaggregated rows of dense models, simulated as they were run.

Data: ``bench/data/aiconfigurator_silicon_sample.csv``, ``mode == disagg`` (1,602 rows, mostly DeepSeek
MoE). The dense ones capsim's catalog has: 5 Qwen3-32B rows on H100 (4 SGLang 0.5.6.post2, 1 vLLM
0.12.0, FP8) and 3 Qwen3-32B-NVFP4 rows on B200/GB200 (TensorRT-LLM 1.3.0rc5, through Dynamo).

A row gives ``prefill_num_workers`` × ``prefill_tp_size`` and ``decode_num_workers`` × ``decode_tp_size``,
each worker's ``*_batch_size`` (its max batch: the engine's max_num_seqs / max_batch_size), ISL/OSL,
and mean TTFT/TPOT measured by aiperf in closed loop. Its concurrency is not a column: where the
source names it (``silicon_concurrency=480``, ``c480`` in the id) it equals decode_batch_size ×
decode_num_workers (80 × 6 = 480, 92 × 6 = 552), so that product is the concurrency of every row.

Each row is simulated with the aggregated rows' harness and engine settings
(``bench/serving_silicon.py``: 2c warm-up, 20c measured, every user at once, the engine's preset at
the row's version, aiconfigurator's generator settings per engine), applied to each pool with its
own TP and batch size (TensorRT-LLM's ``max_num_tokens`` = that pool's batch + ISL + 1500), behind a
``disaggregation:`` block; the KV link is ``auto`` (NVLink when every worker fits one NVLink domain:
GB200's NVL72; else InfiniBand).

    PYTHONPATH=. python bench/disaggregation_silicon.py
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from bench.serving_silicon import DATA, ENGINES, MODELS, PRECISIONS, SYSTEMS, Row, scenario


def disagg_rows(path: Path = DATA) -> list[tuple[Row, dict[str, int]]]:
    """The dense disaggregated rows: the aggregated Row fields (tp: the decode's) and the pools' sizes."""
    d = pd.read_csv(path)
    d = d[(d["mode"] == "disagg") & d["model_path"].isin(list(MODELS))]
    out = []
    for r in d.itertuples(index=False):
        q = r.gemm_quant_mode
        given = isinstance(q, str)
        pools = {"prefill_workers": int(r.prefill_num_workers), "prefill_tp": int(r.prefill_tp_size),
                 "prefill_batch": int(r.prefill_batch_size), "decode_workers": int(r.decode_num_workers),
                 "decode_tp": int(r.decode_tp_size), "decode_batch": int(r.decode_batch_size)}
        c = pools["decode_batch"] * pools["decode_workers"]
        out.append((Row(id=str(r.id), checkpoint=str(r.model_path), engine=ENGINES[r.backend],
                        version=r.backend_version if isinstance(r.backend_version, str) else None,
                        model=MODELS[r.model_path], hardware=SYSTEMS[r.system],
                        precision=PRECISIONS[q] if given else "bf16", precision_given=given,
                        tp=pools["decode_tp"], concurrency=c, isl=int(r.isl), osl=int(r.osl),
                        ttft_ms=float(r.silicon_ttft_ms), tpot_ms=float(r.silicon_tpot_ms)), pools))
    return out


def disagg_scenario(row: Row, pools: dict[str, int], **kw: Any) -> dict[str, Any]:
    doc = scenario(row, **kw)
    base = doc["replica"]
    block: dict[str, Any] = {"kv_link": "auto"}
    for pool in ("prefill", "decode"):
        rep = copy.deepcopy(base)
        rep["tp"], rep["max_num_seqs"] = pools[f"{pool}_tp"], pools[f"{pool}_batch"]
        if row.engine == "trtllm":
            rep["max_batched_tokens"] = pools[f"{pool}_batch"] + row.isl + 1500
        block[pool] = {"replica": rep, "cluster": {"replicas": pools[f"{pool}_workers"]}}
    doc["disaggregation"] = block
    doc["cluster"] = {"replicas": pools["prefill_workers"] + pools["decode_workers"]}
    return doc


def simulate(row: Row, pools: dict[str, int]) -> dict[str, Any]:
    from simulator import parse_scenario, simulate_serving
    from simulator.errors import CapsimError

    try:
        r = simulate_serving(parse_scenario(disagg_scenario(row, pools)))
    except CapsimError as e:
        return {"error": str(e).splitlines()[0]}
    if r.ttft_s.mean is None or r.tpot_s.mean is None or r.rejected:
        return {"error": f"{r.rejected} rejected" if r.rejected else "no request completed"}
    return {"ttft_ms": 1e3 * r.ttft_s.mean, "tpot_ms": 1e3 * r.tpot_s.mean}


def main() -> int:
    import warnings
    warnings.simplefilter("ignore")
    lines = []
    for row, pools in disagg_rows():
        s = simulate(row, pools)
        where = (f"{row.checkpoint} {row.hardware} {row.engine} {row.version} {row.isl}/{row.osl} "
                 f"{pools['prefill_workers']}xTP{pools['prefill_tp']}P {pools['decode_workers']}xTP{pools['decode_tp']}D "
                 f"b{pools['decode_batch']} c{row.concurrency}")
        if "error" in s:
            lines.append(f"{where}: {s['error']}")
            continue
        e_ttft = 100 * (s["ttft_ms"] / row.ttft_ms - 1)
        e_tpot = 100 * (s["tpot_ms"] / row.tpot_ms - 1)
        lines.append(f"{where}: TTFT {s['ttft_ms']:.0f} vs {row.ttft_ms:.0f} ms ({e_ttft:+.0f}%), "
                     f"TPOT {s['tpot_ms']:.1f} vs {row.tpot_ms:.1f} ms ({e_tpot:+.0f}%)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
