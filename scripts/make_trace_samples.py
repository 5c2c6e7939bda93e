"""Write small sample traces in each layout ``workload.arrival.format`` reads (tests/data/traces/).

The samples are synthetic (no row is copied from a published trace, nothing is downloaded): the same
40 requests, seeded, written in the four layouts of :mod:`simulator.serving.traces` so that a test
can check that every format replays to the same arrivals and lengths. Arrival times are whole
milliseconds (Mooncake's resolution), so every layout holds them exactly. The BurstGPT sample adds
two failed requests (0 response tokens), as ``BurstGPT_1.csv`` has them.

Run: ``python scripts/make_trace_samples.py [OUT_DIR]`` (default tests/data/traces).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "traces"
N = 40
SEED = 19
# the first request's wall-clock time in the Azure sample (any date-time works; this one is in November
# 2023 as the Azure 2023 trace is)
AZURE_START = datetime(2023, 11, 16, 18, 17, 3, 979960)


def requests() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival ms from 0, prompt tokens, output tokens) of the sample's requests."""
    rng = np.random.default_rng(SEED)
    gaps_ms = np.round(rng.exponential(500.0, size=N)).astype(np.int64)
    gaps_ms[0] = 0
    t_ms = np.cumsum(gaps_ms)
    prompt = np.maximum(np.round(rng.lognormal(np.log(1000), 0.8, size=N)), 1).astype(np.int64)
    output = np.maximum(np.round(rng.lognormal(np.log(200), 0.7, size=N)), 1).astype(np.int64)
    return t_ms, prompt, output


def _csv(header: list[str], rows: list[list[object]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def samples() -> dict[str, str]:
    """File name → text of each sample."""
    t_ms, prompt, output = requests()
    rows = list(zip(t_ms.tolist(), prompt.tolist(), output.tolist(), strict=True))
    capsim = _csv(["timestamp", "prompt_tokens", "output_tokens"], [[f"{t / 1000:.3f}", p, o] for t, p, o in rows])
    # Azure: 7 fractional digits, as AzureLLMInferenceTrace_code.csv writes them
    azure = _csv(["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
                 [[(AZURE_START + timedelta(milliseconds=t)).strftime("%Y-%m-%d %H:%M:%S.%f") + "0", p, o]
                  for t, p, o in rows])
    # BurstGPT: seconds from the day's start (the first request at 5 s), two failures with 0 response tokens
    burst_rows: list[list[object]] = []
    for i, (t, p, o) in enumerate(rows):
        model = "GPT-4" if i % 3 == 0 else "ChatGPT"
        kind = "API log" if i % 4 == 0 else "Conversation log"
        burst_rows.append([f"{5 + t / 1000:.3f}", model, p, o, p + o, kind])
        if i in (3, 17):
            burst_rows.append([f"{5 + t / 1000:.3f}", "ChatGPT", 321, 0, 321, "Conversation log"])
    burstgpt = _csv(["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"],
                    burst_rows)
    # Mooncake: JSON lines, ms since the first request, 512-token block hashes (a shared system prompt: block 0)
    lines, next_hash = [], 1
    for t, p, o in rows:
        blocks = -(-p // 512)
        hashes = [0, *range(next_hash, next_hash + blocks - 1)]
        next_hash += blocks - 1
        lines.append(json.dumps({"timestamp": t, "input_length": p, "output_length": o, "hash_ids": hashes}))
    mooncake = "\n".join(lines) + "\n"
    return {"capsim.csv": capsim, "azure.csv": azure, "burstgpt.csv": burstgpt, "mooncake.jsonl": mooncake}


def main(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in samples().items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
