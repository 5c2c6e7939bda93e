"""A catalog model built in torch from its shapes (random weights, no hub download), and its
measured forward, forward+backward and decode-step times and peak memory."""

from __future__ import annotations

import importlib
import resource
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .timing import measure


class Block(nn.Module):
    def __init__(self, s: dict[str, Any], dtype: torch.dtype) -> None:
        super().__init__()
        h, hd = s["hidden"], s["head_dim"]
        self.heads, self.kvh, self.hd = s["heads"], s["kv_heads"], hd
        norm = nn.RMSNorm if s.get("norm") == "rmsnorm" else nn.LayerNorm
        self.n1, self.n2 = norm(h, dtype=dtype), norm(h, dtype=dtype)
        bias = s.get("linear_bias", s.get("architecture") != "decoder" or s.get("norm") != "rmsnorm")
        self.qkv = nn.Linear(h, (self.heads + 2 * self.kvh) * hd, bias=bias, dtype=dtype)
        self.out = nn.Linear(self.heads * hd, h, bias=bias, dtype=dtype)
        self.swiglu = s.get("activation") == "swiglu"
        f = s["ffn_hidden"]
        self.fc1 = nn.Linear(h, f * (2 if self.swiglu else 1), bias=bias, dtype=dtype)
        self.fc2 = nn.Linear(f, h, bias=bias, dtype=dtype)
        self.causal = s.get("architecture", "decoder") == "decoder"

    def attend(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split([self.heads * self.hd, self.kvh * self.hd, self.kvh * self.hd], dim=-1)
        q = q.view(b, t, self.heads, self.hd).transpose(1, 2)
        k = k.view(b, t, self.kvh, self.hd).transpose(1, 2)
        v = v.view(b, t, self.kvh, self.hd).transpose(1, 2)
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            cache[:] = [k, v]
        rep = self.heads // self.kvh
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal and t > 1)
        return self.out(o.transpose(1, 2).reshape(b, t, -1))

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        x = x + self.attend(self.n1(x), cache)
        y = self.fc1(self.n2(x))
        if self.swiglu:
            a, g = y.chunk(2, dim=-1)
            y = F.silu(g) * a
        else:
            y = F.gelu(y)
        return x + self.fc2(y)


class Model(nn.Module):
    def __init__(self, s: dict[str, Any], dtype: torch.dtype) -> None:
        super().__init__()
        h = s["hidden"]
        self.emb = nn.Embedding(s["vocab"], h, dtype=dtype)
        self.pos = nn.Embedding(s["max_positions"], h, dtype=dtype) if s.get("position", "learned") == "learned" else None
        self.blocks = nn.ModuleList(Block(s, dtype) for _ in range(s["layers"]))
        self.norm = (nn.RMSNorm if s.get("norm") == "rmsnorm" else nn.LayerNorm)(h, dtype=dtype)
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
        if train:
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
        caches: list = [[] for _ in range(shapes["layers"])]
        model(torch.randint(0, vocab, (batch, context), device=device), caches, 0)
        nxt = torch.randint(0, vocab, (batch, 1), device=device)

        def one() -> None:
            saved = [list(c) for c in caches]
            model(nxt, caches, context)
            for c, s in zip(caches, saved, strict=True):
                c[:] = s

        t = measure(one, device, warmup=2, trials=5, min_time_s=0.0)
    return {"batch": batch, "context": context, "seconds": t.median_s, "spread": t.spread}
