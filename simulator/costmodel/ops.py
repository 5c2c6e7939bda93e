"""Time of one kernel on a hardware profile: measured where a table covers it, else the roofline.

A profile with measured kernel tables (``hw.kernels``, imported or calibrated; see
``simulator/silicon``) answers GEMMs, fused attention and memory-bound kernels from them, scaled by
the measured in-model factor. Outside every table, or on a spec-sheet-only GPU, the roofline
answers: ``compute = FLOPs / achieved FLOP/s`` and ``memory = bytes / achieved bandwidth``, each
plus a fixed kernel latency, so large GEMMs are compute-bound, skinny ones (decode) memory-bound,
and tiny ones latency-bound. Each such fallback on a measured GPU is counted in
``hw.kernels.coverage``, and every :class:`Op` says which basis timed it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..hardware import HardwareProfile
from ..precision import FORMATS, get_format

OpKind = str  # "gemm" | "attention" | "memory" | "tp_comm" | "cp_comm" | "ep_comm" | "dp_comm" | "pp_comm"
COMM_KINDS = frozenset({"tp_comm", "cp_comm", "ep_comm", "dp_comm", "pp_comm"})


@dataclass(frozen=True, slots=True)
class Op:
    """One kernel: its name, kind, GPU time (s) and the useful FLOPs it performs."""

    name: str
    kind: OpKind
    time: float
    flops: float = 0.0
    measured: bool = False       # timed from a measured kernel table (False: the roofline)
    launches: float = 1.0        # host dispatches it costs, in modelled ops (0: replayed from a CUDA graph)

    @property
    def is_comm(self) -> bool:
        return self.kind in COMM_KINDS


def _latency(hw: HardwareProfile) -> float:
    return hw.efficiency.kernel_latency_us * 1e-6


def memory_bound_time(hw: HardwareProfile, nbytes: float) -> float:
    """Streaming ``nbytes`` through HBM (read + write counted by the caller): a calibrated copy
    table where there is one, else the bandwidth roofline."""
    kb = hw.kernels
    if kb is not None and nbytes > 0:
        t = kb.memory("copy", nbytes)
        if t is not None:
            return t
    return nbytes / (hw.memory_bandwidth_tbps * 1e12 * hw.efficiency.memory) + _latency(hw)


# Output tiles of one thread block in cuBLAS/CUTLASS tensor-core GEMMs: large problems use
# 128x256 / 256x128; when those cannot fill every SM, smaller tiles (and split-K) are chosen.
BIG_TILES = ((128, 256), (256, 128))
SMALL_TILES = ((128, 128), (64, 128), (128, 64), (64, 64))


def wave_efficiency(hw: HardwareProfile, m: float, n: float, batch: float = 1) -> float:
    """Fraction of SM slots busy over the GEMM's waves: ``tiles / (ceil(tiles/S)·S)`` for ``S`` SMs.

    This is wave quantization: 288 tiles on 108 SMs run 3 waves, the last one 2/3 full, so 89%.
    """
    S = hw.num_sms

    def eff(tiles: list[tuple[int, int]]) -> tuple[float, float]:
        best, count = 0.0, 0.0
        for a, b in tiles:
            t = batch * float(np.ceil(m / a) * np.ceil(n / b))
            e = t / (np.ceil(t / S) * S)
            if e > best:
                best, count = e, t
        return best, count

    e, tiles = eff(list(BIG_TILES))
    if tiles < S:  # too few big tiles to fill the GPU: the library picks smaller ones
        e = max(e, eff(list(SMALL_TILES))[0])
    return min(1.0, e)


def gemm(hw: HardwareProfile, name: str, m: float, n: float, k: float, precision: str,
         batch: float = 1, bytes_per_element: float = 2.0, static_scales: bool = False) -> Op:
    """A (batched) GEMM ``[m,k] x [k,n]``: the measured table's time for a single GEMM inside its
    grid, else the roofline of compute and operand traffic (the analytic compute time includes
    tile and wave quantization). Batched GEMMs (attention scores without a fused kernel) have no
    table and take the roofline.

    The measured FP8 (per-tensor) tables ran the engines' dynamic-scale path, an amax reduction
    over the input before each GEMM (aiconfigurator collector/trtllm/collect_gemm.py and
    collector/vllm/collect_gemm.py ``activation_scheme='dynamic'``). ``static_scales`` (a checkpoint
    with calibrated input scales) takes the engine's measured ``compute_scale`` kernel off, never
    below the GEMM's roofline, as aiconfigurator's own fp8_static query does."""
    flops = 2.0 * batch * m * n * k
    traffic = batch * (m * k + k * n + m * n) * bytes_per_element
    rate = hw.peak_flops(precision) * hw.gemm_max(precision) * wave_efficiency(hw, m, n, batch)
    kb = hw.kernels
    if kb is not None:
        dtype = table_dtype(hw, precision)
        if dtype is None:
            kb.coverage.miss("gemm", f"{precision} (no measured GEMM of this format) m={m:g} n={n:g} k={k:g}")
        elif batch == 1:
            t_measured = kb.gemm(dtype, m, n, k)
            if t_measured is not None:
                if static_scales and dtype == "fp8":
                    scale = kb.quantize("compute_scale", "fp8", m, k)
                    if scale is not None:
                        roofline = max(flops / (hw.peak_flops(precision) * hw.gemm_max(precision)),
                                       traffic / (hw.memory_bandwidth_tbps * 1e12))
                        t_measured = max(t_measured - scale, roofline)
                if hw.table_bandwidth_ratio > 1:   # tables of a sibling GPU with faster memory
                    t_measured *= _slower_memory(hw, flops, traffic)
                return Op(name, "gemm", t_measured, flops, measured=True)
        else:
            kb.coverage.miss("gemm", f"batched {dtype} {batch:g} x (m={m:g} n={n:g} k={k:g})")
    compute = flops / rate + _latency(hw)
    t = max(compute, memory_bound_time(hw, traffic))
    return Op(name, "gemm", t, flops)


def _slower_memory(hw: HardwareProfile, flops: float, traffic: float) -> float:
    """Factor on a sibling GPU's measured GEMM time for this GPU's slower memory: the ratio of the
    kernel's roofline here to its roofline on the sibling (tensor-core FLOPs against operand traffic
    over HBM), so a compute-bound GEMM keeps its time and a memory-bound one stretches by the
    bandwidth ratio."""
    bw = hw.memory_bandwidth_tbps * 1e12
    t_comp = flops / hw.peak_flops("bf16")
    return max(t_comp, traffic / bw) / max(t_comp, traffic / (bw * hw.table_bandwidth_ratio))


def table_dtype(hw: HardwareProfile, precision: str) -> str | None:
    """The GEMM table dtype that times ``precision`` on ``hw``: the format's own, except that fp16
    reads the bf16 rows when the tables measured no fp16 and the GPU's datasheet gives both the
    same peak (they run on the same tensor cores at the same rate on every GPU capsim models), and
    mxfp8, which no engine's tables measure, reads the per-tensor fp8 rows: Blackwell runs both at
    its dense FP8 rate, and a caller that strips the rows' dynamic amax pass (``static_scales``, as
    the training cost model does for block formats) is left with the cast that MXFP8's block scales
    come out of."""
    dtype = get_format(precision).kernel_dtype if precision in FORMATS else None
    kb = hw.kernels
    if precision == "mxfp8" and kb is not None and kb.has("gemm", ("fp8",)):
        return "fp8"
    if (dtype == "fp16" and kb is not None and not kb.has("gemm", ("fp16",)) and kb.has("gemm", ("bf16",))
            and hw.peak_tflops.get("fp16") == hw.peak_tflops.get("bf16")):
        return "bf16"
    return dtype


def memory_kind(name: str) -> str:
    """The class of a memory-bound kernel, which sets its source: unfused attention's score kernels
    (the masked softmax and its dropout, rows of ``seq`` scores reduced in registers) are
    ``softmax``; LayerNorm/RMSNorm ``norm``; the MLP's activation ``activation``; RoPE ``rope``;
    bias, dropout, residual adds, casts, the embedding and the loss ``elementwise``, and so are the
    serving engines' fused residual-add + norm kernels, which no measurement of a plain norm covers."""
    base = name.removesuffix("_bwd").removeprefix("shared_").removeprefix("expert_")
    if base.startswith(("softmax", "attn_dropout")):
        return "softmax"
    if "norm" in base and not base.startswith("add_norm"):
        return "norm"
    if base in ("activation", "rope"):
        return base
    return "elementwise"


def memory_op(hw: HardwareProfile, name: str, nbytes: float) -> Op:
    """A memory-bound kernel (norm, dropout, softmax, activation, residual add) moving ``nbytes``
    (reads + writes). A calibrated profile times it from its memory table of the kernel's class
    (:func:`memory_kind`; the elementwise table where none measured the class); otherwise it runs
    at its class's share of HBM bandwidth (``efficiency.memory_kernels``, else
    ``efficiency.elementwise``): these kernels reduce across rows and generate random masks, so
    they run slower than a plain copy."""
    kind = memory_kind(name)
    kb = hw.kernels
    if kb is not None and nbytes > 0:
        t = kb.memory(kind, nbytes)          # imported profiles have no memory tables: None
        if t is not None:
            return Op(name, "memory", t, measured=True)
    eff = hw.efficiency
    share = eff.memory_kernels.get(kind, eff.elementwise)      # type: ignore[call-overload]
    return Op(name, "memory", nbytes / (hw.memory_bandwidth_tbps * 1e12 * share) + _latency(hw))


def attention_pairs(seq_q: float, seq_kv: float, causal: bool, window: int | None = None) -> float:
    """Query-key pairs a fused kernel computes: ``sq·skv``, halved when causal and square (the
    continuous ``s²/2`` count). A sliding window of ``w < skv`` keys per query leaves ``s·w − w²/2``
    pairs when causal and square (the triangle of the first ``w`` queries, then ``w`` each; it
    meets ``s²/2`` at ``w = s``), and ``sq·w`` otherwise (a context-parallel rank's queries against
    the whole sequence, an upper bound as the full causal count is there)."""
    if window is not None and window < seq_kv:
        if causal and seq_q == seq_kv:
            return seq_q * window - window * window / 2
        return seq_q * window
    pairs = seq_q * seq_kv
    return pairs / 2 if causal and seq_q == seq_kv else pairs


# FlashAttention-1 and its Triton port (llm-foundry's ``attn_impl: triton`` until 2024): the
# FlashAttention-2 paper (Dao 2023, arXiv:2307.08691, Section 1) measures FlashAttention's forward at
# 30-50% and its backward at 25-35% of the A100's peak, against FlashAttention-2's 50-73%. The
# midpoints, as a fraction of the datasheet peak; the newer kernels' rates come from the tables and
# the profile's attention efficiency.
FLASH1_FRACTION_OF_PEAK = {"fwd": 0.40, "bwd": 0.30}
ATTENTION_KERNELS = ("flash2", "flash1")


def flash_attention(hw: HardwareProfile, name: str, *, batch: float, heads: float, seq_q: float,
                    seq_kv: float, head_dim: float, kv_heads: float, causal: bool, precision: str,
                    backward: bool = False, bytes_per_element: float = 2.0, window: int | None = None,
                    kernel: str = "flash2", cp: int = 1) -> Op:
    """Fused attention (FlashAttention-style): QK^T and PV never touch HBM.

    Forward FLOPs are ``4·b·heads·pairs·d`` over the :func:`attention_pairs` of the (sliding)
    causal mask: masked tiles are skipped, so a window cuts the work. The backward does 2.5× the
    forward matmul work (5 matmuls instead of 2), and its ``Op.flops`` says so; MFU counts the
    backward as twice the forward from the forward ops, so it does not read these. HBM traffic is
    Q, K, V and O once (twice in the backward), window or not. ``kernel``: ``flash2`` (FlashAttention-2
    and newer, cuDNN and Transformer Engine fused attention: the measured tables, else the profile's
    attention efficiency) or ``flash1`` (FlashAttention-1 class, at :data:`FLASH1_FRACTION_OF_PEAK`,
    never faster than ``flash2``).

    ``cp > 1``: the ``seq_q = seq_kv / cp`` queries are one context-parallel rank's load-balanced share
    of the sequence. Megatron-Core splits it into 2·cp chunks and gives rank i chunks i and 2·cp−1−i
    (``get_batch_on_this_cp_rank``); Transformer Engine's ring (``AttnFuncWithCPAndKVP2P``) then runs
    cp kernels, one per KV block received: its own two chunks under the causal mask, then cp − 1
    unmasked half-blocks. Each holds the query-key pairs of a causal attention over ``seq_q`` tokens,
    so the rank costs cp of those, 1/cp of the whole mask's pairs (a causal mask; the unmasked
    and windowed cases count the rank's rows of the mask).
    """
    if kernel not in ATTENTION_KERNELS:
        raise ValueError(f"attention kernel {kernel!r}: expected one of {', '.join(ATTENTION_KERNELS)}")
    if cp > 1 and causal and window is None:
        step = flash_attention(hw, name, batch=batch, heads=heads, seq_q=seq_q, seq_kv=seq_q, head_dim=head_dim,
                               kv_heads=kv_heads, causal=True, precision=precision, backward=backward,
                               bytes_per_element=bytes_per_element, kernel=kernel)
        return Op(name, "attention", step.time * cp, step.flops * cp, measured=step.measured)
    if window is None or window >= seq_kv:
        flops = 4.0 * batch * heads * seq_q * seq_kv * head_dim
        if causal and seq_q == seq_kv:
            flops /= 2
    else:
        flops = 4.0 * batch * heads * attention_pairs(seq_q, seq_kv, causal, window) * head_dim
    def roofline(bwd: bool) -> float:
        eff = hw.efficiency.attention_bwd if bwd else hw.efficiency.attention_fwd
        io = batch * (2 * seq_q * heads + 2 * seq_kv * kv_heads) * head_dim * bytes_per_element * (2 if bwd else 1)
        rate = hw.peak_flops(precision) * hw.gemm_max(precision) * eff
        return max(flops * (2.5 if bwd else 1) / rate + _latency(hw), memory_bound_time(hw, io))

    work = flops * (2.5 if backward else 1)
    floor = work / (hw.peak_flops(precision) * FLASH1_FRACTION_OF_PEAK["bwd" if backward else "fwd"]) \
        if kernel == "flash1" else 0.0
    measured = _measured_prefill(hw, batch=batch, heads=heads, kv_heads=kv_heads, head_dim=head_dim, seq_q=seq_q,
                                 seq_kv=seq_kv, causal=causal, window=window, precision=precision)
    if measured is not None:
        # the tables time the forward kernel; the backward keeps the roofline's backward/forward ratio
        t = measured * (roofline(True) / roofline(False) if backward else 1.0)
        return Op(name, "attention", max(t, floor), work, measured=floor <= t)
    return Op(name, "attention", max(roofline(backward), floor), work)


def _measured_prefill(hw: HardwareProfile, *, batch: float, heads: float, kv_heads: float, head_dim: float,
                      seq_q: float, seq_kv: float, causal: bool, window: int | None, precision: str) -> float | None:
    """The context-attention table's time (s) for a causal prompt with no cached prefix, or None.
    Only that case is measured: non-causal (encoder) and partial-sequence (context-parallel)
    attention take the roofline; a fractional head count per GPU has no table either."""
    kb = hw.kernels
    if kb is None:
        return None
    if not causal or seq_q != seq_kv or heads != int(heads) or kv_heads != int(kv_heads):
        kb.coverage.miss("context_attention", f"{'causal' if causal else 'non-causal'} heads={heads:g} "
                                              f"kv_heads={kv_heads:g} q={seq_q:g} kv={seq_kv:g}")
        return None
    return kb.context_attention(dtype=attention_dtype(precision), kv_dtype="bf16", heads=int(heads),
                                kv_heads=int(kv_heads), head_dim=int(head_dim), batch=batch, seq=seq_q,
                                window=0 if window is None or window >= seq_kv else window)


def attention_dtype(precision: str) -> str:
    """The attention kernel's math precision in the tables: bf16 for every format (fp16 runs at the
    same tensor-core rate), as vLLM and SGLang run FlashAttention in 16 bits whatever the weights
    (TensorRT-LLM's FP8 context FMHA is an option, not the default)."""
    return "bf16"


def decode_attention(hw: HardwareProfile, name: str, *, kv_bytes: float, flops: float,
                     precision: str) -> Op:
    """Attention of one new token per sequence against its KV cache: bound by reading the cache.
    (Roofline; the serving cost model reads the decode-attention tables in ``inference.py``.)"""
    rate = hw.peak_flops(precision) * hw.gemm_max(precision) * hw.efficiency.attention_fwd
    t = max(flops / rate + _latency(hw), memory_bound_time(hw, kv_bytes))
    return Op(name, "attention", t, flops)


def overlap_slowdown(hw: HardwareProfile) -> float:
    """Fraction of compute throughput lost while a collective overlaps it: the collective's kernels
    hold ``comm_sms`` of the GPU's SMs. Overlapped communication is cheap, not free."""
    return min(1.0, hw.efficiency.comm_sms / max(hw.num_sms, 1))


# A host-device synchronisation inside a pass (an Op of this kind, no GPU time): the host waits until the
# GPU has run everything issued so far, so it cannot run ahead of the kernels after it.
HOST_SYNC = "host_sync"


def dispatched_time(blocks: Iterable[tuple[Sequence[Op], int]], dispatch_s: float) -> float:
    """Wall time of kernel blocks (``(ops, n)``: the sequence ``ops`` repeated ``n`` times, e.g. a
    layer per micro-batch) issued in order by one host thread at ``dispatch_s`` per kernel (times
    the op's ``launches``: a grouped GEMM issues one GEMM per expert, a CUDA graph one replay).

    The GPU cannot start a kernel before the host has issued it, so runs of small kernels become
    host-bound while long kernels let the host run ahead: ``finish_i = max(finish_{i-1}, i·dispatch)
    + time_i``. Near the balance point this is longer than ``max(GPU sum, host sum)``. A block's
    first repeats are walked kernel by kernel; the rest advance by the last repeat's increment,
    which is the steady state of this max-plus recurrence. A :data:`HOST_SYNC` op sets the host's clock
    to the GPU's (blocks holding one are walked whole).
    """
    gpu = host = 0.0
    for ops, n in blocks:
        if n <= 0:
            continue
        times = [op.time for op in ops]
        issued = sum(op.launches for op in ops) * dispatch_s
        if dispatch_s <= 0:
            gpu += n * sum(times)
            continue
        syncs = any(op.kind == HOST_SYNC for op in ops)
        walked = n if syncs else min(n, 3)      # a sync ties the host to the GPU: no steady state to skip to
        before = gpu
        for _ in range(walked):
            before = gpu
            for op in ops:
                if op.kind == HOST_SYNC:        # the host waits for the GPU to drain
                    host = max(host, gpu)
                    continue
                host += dispatch_s * op.launches
                gpu = max(gpu, host) + op.time
        if n > walked:
            gpu += (n - walked) * (gpu - before)
            host += (n - walked) * issued
    return gpu
