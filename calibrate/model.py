"""A catalog model built in torch from its layer descriptions (random weights, no hub download),
and its measured forward, forward+backward and decode-step times and peak memory.

Each block is built from a :class:`simulator.layers.LayerSpec`, the same description the
simulator's cost model reads, so dense and MoE layers, sliding-window and full attention, GQA,
q/k norms and RoPE are the ones costed. ``simulator.layers`` is plain stdlib data: importing it
keeps calibration on torch, numpy and PyYAML."""

from __future__ import annotations

import importlib
import resource
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from simulator.layers import AttentionSpec, LayerSpec, MLPSpec, build_stack

from .timing import measure


def layer_specs(shapes: Mapping[str, Any]) -> list[LayerSpec]:
    """The layers to build, from the plain data calibration receives: ``layer_specs`` (one
    ``LayerSpec.to_dict()`` per layer, as ``capsim calibrate --model`` passes them), or else the
    flat model keys of a shapes file (``ModelSpec``'s names), derived by the simulator's own
    :func:`build_stack`. A flat decoder with RMSNorm and no ``linear_bias`` key has no biases (the
    Llama family), every other model has them; ``qkv_bias`` follows ``linear_bias`` unless given."""
    if shapes.get("layer_specs"):
        return [LayerSpec.from_dict(d) for d in shapes["layer_specs"]]
    h, heads = shapes["hidden"], shapes["heads"]
    decoder = shapes.get("architecture", "decoder") == "decoder"
    bias = bool(shapes.get("linear_bias", not decoder or shapes.get("norm") != "rmsnorm"))
    return list(build_stack(
        layers=shapes["layers"], hidden=h, heads=heads, kv_heads=shapes.get("kv_heads") or heads,
        head_dim=shapes.get("head_dim") or h // heads, ffn_hidden=shapes.get("ffn_hidden") or 4 * h,
        activation=shapes.get("activation", "gelu"), norm=shapes.get("norm", "layernorm"),
        qkv_bias=bool(shapes.get("qkv_bias", bias)), linear_bias=bias, qk_norm=bool(shapes.get("qk_norm", False)),
        causal=decoder, rope=shapes.get("position") == "rope", sliding_window=shapes.get("sliding_window"),
        layer_types=shapes.get("layer_types"), moe=shapes.get("moe")))


def _norm(kind: str, n: int, dtype: torch.dtype) -> nn.Module:
    return nn.RMSNorm(n, dtype=dtype) if kind == "rmsnorm" else nn.LayerNorm(n, dtype=dtype)


def _rotate(x: torch.Tensor, start: int) -> torch.Tensor:
    """Rotary position embedding (rotate-half form, base 10000) of [b, heads, t, d] from ``start``."""
    d, t = x.shape[-1], x.shape[-2]
    inv = 1.0 / 10000 ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    ang = torch.arange(start, start + t, device=x.device, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang, ang], dim=-1).cos().to(x.dtype), torch.cat([ang, ang], dim=-1).sin().to(x.dtype)
    a, b = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-b, a], dim=-1) * sin


class Attention(nn.Module):
    """Self-attention of an :class:`AttentionSpec`: fused QKV, GQA, optional per-head q/k RMSNorm,
    RoPE, causal or sliding-window mask (``(i − window, i]``), and a KV cache for decode steps."""

    def __init__(self, a: AttentionSpec, h: int, out_bias: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.a = a
        self.qkv = nn.Linear(h, a.q_dim + 2 * a.kv_dim, bias=a.qkv_bias, dtype=dtype)
        self.out = nn.Linear(a.q_dim, h, bias=out_bias, dtype=dtype)
        self.qn = nn.RMSNorm(a.head_dim, dtype=dtype) if a.qk_norm else None
        self.kn = nn.RMSNorm(a.head_dim, dtype=dtype) if a.qk_norm else None

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        a, (b, t, _) = self.a, x.shape
        q, k, v = self.qkv(x).split([a.q_dim, a.kv_dim, a.kv_dim], dim=-1)
        q = q.view(b, t, a.heads, a.head_dim).transpose(1, 2)
        k = k.view(b, t, a.kv_heads, a.head_dim).transpose(1, 2)
        v = v.view(b, t, a.kv_heads, a.head_dim).transpose(1, 2)
        if self.qn is not None and self.kn is not None:
            q, k = self.qn(q), self.kn(k)
        start = cache[0].shape[2] if cache else 0
        if a.rope:
            q, k = _rotate(q, start), _rotate(k, start)
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            cache[:] = [k, v]
        rep = a.heads // a.kv_heads
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if a.window is None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=a.causal and t > 1)
        else:
            qpos = torch.arange(start, start + t, device=x.device)[:, None]
            kpos = torch.arange(k.shape[2], device=x.device)[None, :]
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=(kpos <= qpos) & (kpos > qpos - a.window))
        return self.out(o.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, h: int, f: int, activation: str, bias: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.activation = activation
        self.fc1 = nn.Linear(h, f * (2 if activation == "swiglu" else 1), bias=bias, dtype=dtype)
        self.fc2 = nn.Linear(f, h, bias=bias, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc1(x)
        if self.activation == "swiglu":
            a, g = y.chunk(2, dim=-1)
            y = F.silu(g) * a
        else:
            y = F.relu(y) if self.activation == "relu" else F.gelu(y)
        return self.fc2(y)


class MoE(nn.Module):
    """Routed experts of an MoE :class:`MLPSpec`: softmax router, top-k experts per token (a plain
    loop over experts), and the shared experts every token passes through."""

    def __init__(self, m: MLPSpec, h: int, bias: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.k = m.top_k
        self.router = nn.Linear(h, m.experts, bias=False, dtype=dtype)
        self.experts = nn.ModuleList(MLP(h, m.ffn_hidden, m.activation, bias, dtype) for _ in range(m.experts))
        self.shared = nn.ModuleList(MLP(h, m.shared_hidden, m.activation, bias, dtype) for _ in range(m.shared_experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        weights, idx = self.router(flat).softmax(dim=-1).topk(self.k, dim=-1)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = (idx == e).nonzero(as_tuple=True)
            if rows.numel():
                out.index_add_(0, rows, expert(flat[rows]) * weights[rows, slot, None])
        for s in self.shared:
            out = out + s(flat)
        return out.view_as(x)


class Block(nn.Module):
    """One pre-norm transformer layer built from its :class:`LayerSpec`, so the block calibration
    times is the layer the simulator costs (the parameter counts agree exactly, a test checks)."""

    def __init__(self, spec: LayerSpec, dtype: torch.dtype) -> None:
        super().__init__()
        m = spec.mlp
        self.n1, self.n2 = _norm(spec.norm, spec.hidden, dtype), _norm(spec.norm, spec.hidden, dtype)
        self.attn = Attention(spec.attention, spec.hidden, spec.linear_bias, dtype)
        self.mlp: nn.Module = (MoE(m, spec.hidden, spec.linear_bias, dtype) if m.is_moe
                               else MLP(spec.hidden, m.ffn_hidden, m.activation, spec.linear_bias, dtype))

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        x = x + self.attn(self.n1(x), cache)
        return x + self.mlp(self.n2(x))


class Model(nn.Module):
    def __init__(self, s: dict[str, Any], dtype: torch.dtype) -> None:
        super().__init__()
        h = s["hidden"]
        self.emb = nn.Embedding(s["vocab"], h, dtype=dtype)
        self.pos = nn.Embedding(s["max_positions"], h, dtype=dtype) if s.get("position", "learned") == "learned" else None
        self.blocks = nn.ModuleList(Block(spec, dtype) for spec in layer_specs(s))
        self.norm = _norm(s.get("norm", "layernorm"), h, dtype)
        self.head = nn.Linear(h, s["vocab"], bias=False, dtype=dtype)

    def forward(self, ids: torch.Tensor, caches: list | None = None, start: int = 0) -> torch.Tensor:
        x = self.emb(ids)
        if self.pos is not None:
            x = x + self.pos(torch.arange(start, start + ids.shape[1], device=ids.device))
        for i, blk in enumerate(self.blocks):
            x = blk(x, caches[i] if caches is not None else None)
        return self.head(self.norm(x))


def build(shapes: dict[str, Any] | None, device: torch.device, dtype: torch.dtype, module: str | None = None) -> nn.Module:
    """The catalog model from its shapes, or ``pkg.mod:factory`` (a callable returning an nn.Module)."""
    if module:
        mod, _, attr = module.partition(":")
        factory = getattr(importlib.import_module(mod), attr or "model")
        return factory().to(device=device, dtype=dtype)
    assert shapes is not None
    return Model(shapes, dtype).to(device)


def _peak_bytes(device: torch.device) -> float | None:
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    return None


def measure_model(model: nn.Module, shapes: dict[str, Any], device: torch.device, *, batch: int, seq: int,
                  train: bool, input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Forward (and forward+backward with an AdamW step when ``train``) time and peak memory."""
    vocab = shapes["vocab"] if shapes else 1000
    x = (torch.randn(*input_shape, device=device) if input_shape
         else torch.randint(0, vocab, (batch, seq), device=device))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4) if train else None
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def step() -> None:
        out = model(x)
        if opt is not None:                       # training: backward and an AdamW step
            out.float().square().mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    if train:
        t = measure(step, device, warmup=2, trials=3, min_time_s=0.0)
    else:
        with torch.no_grad():
            t = measure(step, device, warmup=2, trials=3, min_time_s=0.0)
    peak = _peak_bytes(device)
    row = {"batch": batch, "seq": seq, "mode": "train_step" if train else "forward", "seconds": t.median_s,
           "spread": t.spread, "peak_memory_bytes": peak}
    if peak is None:
        row["rss_growth_bytes"] = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
    return row


def measure_decode(model: nn.Module, shapes: dict[str, Any], device: torch.device, *, batch: int,
                   context: int) -> dict[str, Any]:
    """One decode step of ``batch`` sequences with ``context`` cached tokens."""
    vocab = shapes["vocab"]
    with torch.no_grad():
        caches: list = [[] for _ in range(len(layer_specs(shapes)))]
        model(torch.randint(0, vocab, (batch, context), device=device), caches, 0)
        nxt = torch.randint(0, vocab, (batch, 1), device=device)

        def one() -> None:
            saved = [list(c) for c in caches]
            model(nxt, caches, context)
            for c, s in zip(caches, saved, strict=True):
                c[:] = s

        t = measure(one, device, warmup=2, trials=5, min_time_s=0.0)
    return {"batch": batch, "context": context, "seconds": t.median_s, "spread": t.spread}
