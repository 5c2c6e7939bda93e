"""Microbenchmarks: GEMM over an m × n × k grid holding the model's own projection shapes, attention,
memory bandwidth, normalisation kernels, the fixed cost of one tiny kernel, and collectives when
several GPUs are visible."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from simulator.layers import AttentionSpec, LayerSpec

from .timing import measure

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp8": torch.bfloat16}


def timed_dtype(dtype: str, device: torch.device) -> str:
    """The precision a ``--dtype`` is actually timed in, in capsim's vocabulary: fp8 runs as bf16
    (``DTYPES``: torch.matmul has no fp8 GEMM), and fp32 on a GPU that lets cuBLAS use TF32 is tf32."""
    if dtype == "fp8":
        return "bf16"
    if dtype == "fp32" and device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return dtype


def gemm_axes(layers: Sequence[LayerSpec], quick: bool, device: torch.device) -> tuple[list[int], list[int], list[int]]:
    """The m, n and k values of the GEMM grid. n and k: the projections of every kind of layer
    (QKV, output, MLP or expert and shared-expert up/down) and a few powers of two around them (the
    size curve, and the narrower shards of tensor parallelism); m: token counts from one decode
    token to a long prefill."""
    ns: set[int] = set()
    ks: set[int] = set()
    for layer in dict.fromkeys(layers):
        a, m, h = layer.attention, layer.mlp, layer.hidden
        nk = [(a.q_dim + 2 * a.kv_dim, h), (h, a.q_dim), (m.up, h), (h, m.ffn_hidden)]
        if m.shared_experts:
            width = m.shared_experts * m.shared_hidden
            nk += [(width * (m.up // m.ffn_hidden), h), (h, width)]
        for n, k in nk:
            ns.add(n)
            ks.add(k)
    big = device.type == "cuda"
    tokens = ([1, 128, 1024 if big else 512] if quick
              else [1, 16, 128, 1024] + ([4096, 16384] if big else []))
    span = [256, 512, 1024, 2048, 4096, 8192] if big else [64, 128, 256, 512, 1024]
    if quick:
        span = [span[0], span[-1]]
    return tokens, sorted(ns | set(span)), sorted(ks | set(span))


def gemm_shapes(layers: Sequence[LayerSpec], quick: bool, device: torch.device) -> list[tuple[int, int, int]]:
    """Every (m, n, k) of the grid ``gemm_axes`` (so the log-space interpolation of
    ``simulator.silicon.grid`` has all the corners of each cell), smallest work first: when the time
    budget runs out, the biggest GEMMs are the ones left out."""
    ms, ns, ks = gemm_axes(layers, quick, device)
    return sorted(((m, n, k) for m in ms for n in ns for k in ks), key=lambda s: (s[0] * s[1] * s[2], s))


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
    rows: list[dict[str, float]] = []
    for nbytes in _memory_sizes(device, quick):
        x = torch.empty(nbytes // 4, device=device, dtype=torch.float32)
        y = torch.empty_like(x)
        t = measure(functools.partial(y.copy_, x), device)
        rows.append({"bytes": 2 * nbytes, "seconds": t.median_s, "gb_s": 2 * nbytes / t.median_s / 1e9, "spread": t.spread})
        if step:
            step(f"copy {nbytes >> 10} KiB")
    return rows


def _memory_sizes(device: torch.device, quick: bool) -> list[int]:
    top = 30 if device.type == "cuda" else 27          # 1 GiB on GPU, 128 MiB on CPU
    return [2**e for e in range(12, top + 1, 3 if quick else 2)]


def bench_add(device: torch.device, dtype: torch.dtype, quick: bool,
              step: Callable[[str], None] | None = None) -> list[dict[str, float]]:
    """An elementwise kernel over sizes: the residual add ``z = x + y`` (bytes: two reads, one write)."""
    rows: list[dict[str, float]] = []
    for nbytes in _memory_sizes(device, quick):
        x = torch.randn(nbytes // torch.finfo(dtype).bits * 8, device=device, dtype=dtype)
        y, z = torch.randn_like(x), torch.empty_like(x)
        t = measure(functools.partial(torch.add, x, y, out=z), device)
        moved = 3 * x.numel() * x.element_size()
        rows.append({"bytes": moved, "seconds": t.median_s, "gb_s": moved / t.median_s / 1e9, "spread": t.spread})
        if step:
            step(f"add {nbytes >> 10} KiB")
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


def bench_elementwise(device: torch.device, dtype: torch.dtype, hidden: int, quick: bool) -> list[dict[str, float]]:
    """LayerNorm over [tokens, hidden] for a few token counts: the achieved bandwidth of a typical
    normalisation kernel (bytes: the input read and the output written)."""
    tokens = [128, 1024, 8192] if device.type == "cuda" else [16, 128, 1024]
    if quick:
        tokens = [tokens[0], tokens[-1]]
    ln = torch.nn.LayerNorm(hidden, device=device, dtype=dtype)
    rows: list[dict[str, float]] = []
    for n in tokens:
        x = torch.randn(n, hidden, device=device, dtype=dtype)
        with torch.no_grad():
            t = measure(functools.partial(ln, x), device)
        nbytes = 2 * x.numel() * x.element_size()
        rows.append({"tokens": n, "hidden": hidden, "bytes": nbytes, "seconds": t.median_s,
                     "gb_s": nbytes / t.median_s / 1e9, "spread": t.spread})
    return rows


def bench_softmax(device: torch.device, dtype: torch.dtype, heads: int, quick: bool) -> list[dict[str, float]]:
    """Softmax over the last axis of ``[heads, seq, seq]`` scores for a few sequence lengths: the
    achieved bandwidth of unfused attention's score kernels, which reduce each row of ``seq`` scores
    (bytes: the scores read + the probabilities written). Megatron fuses the causal mask and scale
    into this one kernel (scaled_upper_triang_masked_softmax); a plain softmax moves the same bytes."""
    seqs = [256, 1024, 2048] if device.type == "cuda" else [64, 256, 512]
    if quick:
        seqs = [seqs[0], seqs[-1]]
    rows: list[dict[str, float]] = []
    for n in seqs:
        x = torch.randn(heads, n, n, device=device, dtype=dtype)
        with torch.no_grad():
            t = measure(functools.partial(torch.softmax, x, -1), device)
        nbytes = 2 * x.numel() * x.element_size()
        rows.append({"seq": n, "heads": heads, "bytes": nbytes, "seconds": t.median_s,
                     "gb_s": nbytes / t.median_s / 1e9, "spread": t.spread})
    return rows


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """Scaled dot-product attention with grouped KV heads read as they are (``enable_gqa``)."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=k.shape[1] != q.shape[1])


def bench_attention(attn: AttentionSpec, max_positions: int, dtype: torch.dtype, device: torch.device, quick: bool,
                    memory_bytes: float, step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Causal prefill (batch × sequence length; forward, and backward at batch 1) and decode (one
    query per sequence, batch × KV length) of one attention shape, with torch's SDPA. K and V have
    the model's own KV heads (GQA read in place), so the rows are that shape's. A decode point
    whose K and V would take over a quarter of the device's memory is left out."""
    heads, kvh, hd = attn.heads, attn.kv_heads, attn.head_dim
    seqs = [128, 512, 2048, 8192] if device.type == "cuda" else [16, 64, 256, 1024]
    seqs = [s for s in seqs if s <= max(max_positions, seqs[1])]
    if quick:
        seqs = sorted({seqs[0], seqs[-1]})
    prefill = []
    for b in ([1, 4] if quick else [1, 4, 16]):
        for s in seqs:
            q = torch.randn(b, heads, s, hd, device=device, dtype=dtype)
            k = torch.randn(b, kvh, s, hd, device=device, dtype=dtype)
            v = torch.randn_like(k)
            with torch.no_grad():
                fwd = measure(functools.partial(_sdpa, q, k, v, True), device)
            flops = 4 * b * heads * s * s * hd / 2
            row = {"batch": b, "seq": s, "fwd_s": fwd.median_s, "fwd_tflops": flops / fwd.median_s / 1e12,
                   "spread": fwd.spread}
            if b == 1:            # training's backward: one sequence is enough for its efficiency
                q.requires_grad_(True)
                k.requires_grad_(True)
                v.requires_grad_(True)
                o = _sdpa(q, k, v, True)
                g = torch.ones_like(o)
                bwd = measure(functools.partial(torch.autograd.grad, o, (q, k, v), g, retain_graph=True), device)
                row.update({"bwd_s": bwd.median_s, "bwd_tflops": 2.5 * flops / bwd.median_s / 1e12})
            prefill.append(row)
            if step:
                step(f"attention batch {b} seq {s}")
    decode = []
    lens = ([1024, 8192, 32768] if device.type == "cuda" else [256, 2048])[: 2 if quick else 3]
    for b in ([1, 8] if quick else [1, 8, 32]):
        for L in lens:
            kv_bytes = 2 * b * kvh * L * hd * torch.finfo(dtype).bits // 8
            if kv_bytes > memory_bytes / 4:
                continue
            q = torch.randn(b, heads, 1, hd, device=device, dtype=dtype)
            k = torch.randn(b, kvh, L, hd, device=device, dtype=dtype)
            v = torch.randn_like(k)
            with torch.no_grad():
                t = measure(functools.partial(_sdpa, q, k, v, False), device)
            decode.append({"batch": b, "kv_len": L, "seconds": t.median_s, "kv_gb_s": kv_bytes / t.median_s / 1e9,
                           "spread": t.spread})
    return {"heads": heads, "kv_heads": kvh, "head_dim": hd, "prefill": prefill, "decode": decode}


def bench_collectives(device: torch.device) -> dict[str, Any]:
    """All-reduce time and bus bandwidth over buffer sizes; needs torch.distributed with >1 GPU.

    fp16 buffers: NCCL's reduction moves the same bytes for fp16 and bf16, and fp16 is the dtype the
    measured-profile reader looks NCCL times up under (``KernelBasis.collective``)."""
    import os

    import torch.distributed as dist

    if device.type != "cuda" or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return {"skipped": "one device visible (or torch.distributed not initialised): collectives not measured; "
                           "launch with torchrun --nproc-per-node N python -m calibrate ... to measure them"}
    n = dist.get_world_size()
    rows: list[dict[str, float | str]] = []
    for nbytes in [2**e for e in range(20, 31, 2)]:
        x = torch.empty(nbytes // 2, device=device, dtype=torch.float16)
        t = measure(functools.partial(dist.all_reduce, x), device)
        rows.append({"op": "all_reduce", "dtype": "fp16", "bytes": nbytes, "seconds": t.median_s,
                     "busbw_gb_s": 2 * (n - 1) / n * nbytes / t.median_s / 1e9})
    nccl = torch.cuda.nccl.version()
    return {"world_size": n, "gpus_per_node": int(os.environ.get("LOCAL_WORLD_SIZE", n)),
            "nccl": ".".join(str(x) for x in nccl) if isinstance(nccl, tuple) else str(nccl), "rows": rows}
