"""Microbenchmarks: GEMM over the model's own shapes and a size grid, attention, memory bandwidth,
elementwise kernels, the fixed cost of one tiny kernel, and collectives when several GPUs are visible."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from simulator.layers import LayerSpec

from .timing import measure

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp8": torch.bfloat16}


def gemm_shapes(layers: Sequence[LayerSpec], quick: bool, device: torch.device) -> list[tuple[int, int, int]]:
    """[m, n, k]: the projections of every kind of layer (QKV, output, MLP or expert and shared-
    expert up/down) at several token counts, plus squares for the size curve."""
    nk: list[tuple[int, int]] = []
    for layer in dict.fromkeys(layers):
        a, m, h = layer.attention, layer.mlp, layer.hidden
        nk += [(a.q_dim + 2 * a.kv_dim, h), (h, a.q_dim), (m.up, h), (h, m.ffn_hidden)]
        if m.shared_experts:
            width = m.shared_experts * m.shared_hidden
            nk += [(width * (m.up // m.ffn_hidden), h), (h, width)]
    big = device.type == "cuda"
    tokens = [1, 16, 128, 1024] + ([4096, 16384] if big else []) if not quick else [1, 128, 1024 if big else 512]
    squares = [256, 512, 1024, 2048, 4096, 8192] if big else [64, 128, 256, 512, 1024]
    if quick:
        squares = squares[::2] + squares[-1:]
    out = [(m, n, k) for m in tokens for n, k in nk] + [(s, s, s) for s in squares]
    return sorted(set(out))


def bench_gemm(shapes: list[tuple[int, int, int]], dtype: torch.dtype, device: torch.device,
               step: Callable[[str], None] | None = None,
               stop: Callable[[], bool] | None = None) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    for m, n, k in shapes:
        if stop is not None and rows and stop():
            break
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        t = measure(functools.partial(torch.matmul, a, b), device)
        rows.append({"m": m, "n": n, "k": k, "seconds": t.median_s, "tflops": 2 * m * n * k / t.median_s / 1e12,
                     "spread": t.spread})
        if step:
            step(f"gemm {m}x{n}x{k}")
    return rows


def bench_memory(device: torch.device, quick: bool, step: Callable[[str], None] | None = None) -> list[dict[str, float]]:
    """Copy bandwidth (bytes read + written per second) over sizes."""
    top = 30 if device.type == "cuda" else 27          # 1 GiB on GPU, 128 MiB on CPU
    sizes = [2**e for e in range(12, top + 1, 3 if quick else 2)]
    rows: list[dict[str, float]] = []
    for nbytes in sizes:
        x = torch.empty(nbytes // 4, device=device, dtype=torch.float32)
        y = torch.empty_like(x)
        t = measure(functools.partial(y.copy_, x), device)
        rows.append({"bytes": 2 * nbytes, "seconds": t.median_s, "gb_s": 2 * nbytes / t.median_s / 1e9, "spread": t.spread})
        if step:
            step(f"copy {nbytes >> 10} KiB")
    return rows


def bench_latency(device: torch.device) -> dict[str, float]:
    """The fixed cost of one tiny kernel (GPU) or one tiny op through PyTorch's dispatcher (host)."""
    x = torch.zeros(1, device=device)
    t = measure(lambda: x.add_(1.0), device, trials=7, min_time_s=0.01)
    return {"kernel_us": t.median_s * 1e6, "spread": t.spread}


def bench_dispatch(device: torch.device) -> dict[str, float]:
    """Host cost of one modelled training kernel in eager PyTorch: a chain of tiny linear layers run
    forward and backward (each is 3 modelled kernels: forward, data gradient, weight gradient), so
    autograd's bookkeeping is included, divided by the kernels it stands for."""
    layers = [torch.nn.Linear(8, 8, device=device) for _ in range(8)]
    x = torch.randn(4, 8, device=device)

    def step() -> None:
        y = x
        for lin in layers:
            y = lin(y)
        y.sum().backward()

    t = measure(step, device, trials=7, min_time_s=0.02)
    return {"per_kernel_us": t.median_s / (3 * len(layers)) * 1e6, "spread": t.spread}


def bench_optimizer(device: torch.device) -> dict[str, float]:
    """Host cost per parameter tensor of an eager AdamW step (tiny tensors, so it is all overhead)."""
    params = [torch.nn.Parameter(torch.randn(8, device=device)) for _ in range(64)]
    for q in params:
        q.grad = torch.randn_like(q)
    opt = torch.optim.AdamW(params, lr=1e-4)
    t = measure(opt.step, device, trials=7, min_time_s=0.02)
    return {"per_tensor_us": t.median_s / len(params) * 1e6, "spread": t.spread}


def bench_elementwise(device: torch.device, dtype: torch.dtype, hidden: int) -> dict[str, float]:
    """LayerNorm over [tokens, hidden]: achieved bandwidth of a typical normalisation kernel."""
    tokens = 8192 if device.type == "cuda" else 1024
    x = torch.randn(tokens, hidden, device=device, dtype=dtype)
    ln = torch.nn.LayerNorm(hidden, device=device, dtype=dtype)
    with torch.no_grad():
        t = measure(lambda: ln(x), device)
    nbytes = 2 * x.numel() * x.element_size()
    return {"tokens": tokens, "hidden": hidden, "seconds": t.median_s, "gb_s": nbytes / t.median_s / 1e9}


def bench_attention(shapes: dict[str, Any], dtype: torch.dtype, device: torch.device, quick: bool,
                    step: Callable[[str], None] | None = None) -> dict[str, list[dict[str, float]]]:
    """Prefill (causal SDPA, forward and backward) over sequence lengths; decode (one query) over KV lengths."""
    heads, hd = shapes["heads"], shapes["head_dim"]
    cap = shapes.get("max_positions", 2048)
    seqs = [s for s in ([512, 2048, 8192] if device.type == "cuda" else [128, 512]) if s <= max(cap, 128)]
    if quick:
        seqs = seqs[-1:]
    prefill = []
    for s in seqs:
        q = torch.randn(1, heads, s, hd, device=device, dtype=dtype, requires_grad=True)
        k = torch.randn_like(q, requires_grad=True)
        v = torch.randn_like(q, requires_grad=True)
        fwd = measure(functools.partial(F.scaled_dot_product_attention, q, k, v, is_causal=True), device)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        g = torch.ones_like(o)
        bwd = measure(functools.partial(torch.autograd.grad, o, (q, k, v), g, retain_graph=True), device)
        flops = 4 * heads * s * s * hd / 2
        prefill.append({"seq": s, "fwd_s": fwd.median_s, "bwd_s": bwd.median_s, "fwd_tflops": flops / fwd.median_s / 1e12,
                        "bwd_tflops": 2.5 * flops / bwd.median_s / 1e12})
        if step:
            step(f"attention seq {s}")
    decode = []
    kvh = shapes["kv_heads"]
    for L in ([1024, 8192, 32768] if device.type == "cuda" else [256, 2048])[: 2 if quick else 3]:
        q = torch.randn(8, heads, 1, hd, device=device, dtype=dtype)
        k = torch.randn(8, heads, L, hd, device=device, dtype=dtype)   # GQA expanded, as eager kernels read it
        v = torch.randn_like(k)
        t = measure(functools.partial(F.scaled_dot_product_attention, q, k, v), device)
        kv_bytes = 2 * 8 * kvh * L * hd * k.element_size()
        decode.append({"kv_len": L, "batch": 8, "seconds": t.median_s, "kv_gb_s": kv_bytes / t.median_s / 1e9})
    return {"prefill": prefill, "decode": decode}


def bench_collectives(device: torch.device) -> dict[str, Any]:
    """All-reduce / all-gather / reduce-scatter bus bandwidth; needs torch.distributed with >1 GPU."""
    import torch.distributed as dist

    if device.type != "cuda" or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return {"skipped": "one device visible (or torch.distributed not initialised): collectives not measured; "
                           "launch with torchrun --nproc-per-node N python -m calibrate ... to measure them"}
    n = dist.get_world_size()
    rows: list[dict[str, float | str]] = []
    for nbytes in [2**e for e in range(20, 31, 2)]:
        x = torch.empty(nbytes // 2, device=device, dtype=torch.bfloat16)
        t = measure(functools.partial(dist.all_reduce, x), device)
        rows.append({"op": "all_reduce", "bytes": nbytes, "busbw_gb_s": 2 * (n - 1) / n * nbytes / t.median_s / 1e9})
    return {"world_size": n, "rows": rows}
