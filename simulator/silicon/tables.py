"""Measured kernel tables at run time: load a measured profile, bind it to an engine, answer queries.

A :class:`MeasuredProfile` is a folder in the measured-profile format (``format.py``). Binding it
to a serving engine (``vllm``, ``trtllm``, ``sglang``; ``trtllm-bench`` reads TensorRT-LLM's
tables) and version gives a :class:`KernelBasis`, which the cost model asks for kernel times. A
query the tables cannot answer returns ``None`` and is counted in the basis' :class:`Coverage`,
so a user can see which numbers came from the roofline instead (``capsim cost --coverage``).

Training has no serving engine: its basis (engine ``None``) takes the user's own calibration
(engine ``torch``) where there is one, else the vLLM tables' plain-PyTorch GEMMs (vLLM measures
``torch.nn.functional.linear`` for bf16, the cuBLAS call a training framework makes) and NCCL.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .cache import cached_grid
from .format import COLUMNS, KEYS, read_manifest, read_rows
from .grid import Grid, Method
from .in_model import in_model_factor
from .versions import choose, version_key

ENGINE_TABLES = {"vllm": "vllm", "trtllm": "trtllm", "trtllm-bench": "trtllm", "sglang": "sglang"}
# the table kinds a training step reads, and which engine's tables stand in without calibration
TRAINING_ENGINES = ("torch", "vllm", "trtllm", "sglang")
# Training's GEMMs of one dtype from another engine's tables, where that engine's kernel is the library
# training runs: Transformer Engine's FP8 GEMMs are cuBLASLt's, as TensorRT-LLM's per-tensor FP8 linear
# (its cublas_scaled_mm op), while vLLM's FP8 linear runs CUTLASS scaled_mm (on B200 its rows are slower
# than its own bf16 ones at training shapes). bf16 stays with vLLM's torch.nn.functional.linear (cuBLAS).
TRAINING_GEMM_DTYPE_ENGINE = {"fp8": "trtllm"}
# GEMM formats an engine autotunes at start-up whose table was collected without its autotuner, so it
# timed the fallback tactic. TensorRT-LLM: its NVFP4 linear calls trtllm::nvfp4_gemm, which asks
# AutoTuner.choose_one for a tactic (tensorrt_llm/_torch/custom_ops/torch_custom_ops.py); outside tuning
# mode and with no cached result that is tactic -1, "the fallback kernel which should be able to
# implement any shapes" (tensorrt_llm/_torch/autotuner.py). Serving tunes every op first
# (_torch/pyexecutor/model_engine.py warmup: "with autotune(): ... Run autotuning warmup"); aiconfigurator's
# collector/trtllm/collect_gemm.py times Linear.forward with no autotune() (its MoE collector does tune).
# The tuned choice is estimated as the fastest NVFP4 GEMM measured for the shape on this GPU, the
# engine's own fallback or another engine's table (vLLM's and SGLang's CUTLASS and FlashInfer FP4
# kernels, the families TensorRT-LLM tunes over): never slower than the table it replaces.
AUTOTUNED_GEMMS: dict[str, frozenset[str]] = {"trtllm": frozenset({"nvfp4"})}
# vLLM captures CUDA graphs for batches up to 512 tokens (CompilationConfig.max_cudagraph_capture_size
# default 512, vllm/config/compilation.py); larger iterations run eager, so their all-reduce is the eager one
CUDA_GRAPH_MAX_TOKENS = 512
# How each kind of table is interpolated (simulator/silicon/grid.py explains the two methods).
# Chosen on the held-out check of bench/validate_kernels.py (every 5th interior grid line left out
# and predicted from the rest), made on the H100, A100, B200 and L40S tables and confirmed on the
# other five GPUs: the monotone cubic removes the +2..+7% bias of straight lines on the smooth
# floor-to-power-law curves of attention and collectives; GEMM and MoE times are staircases in
# their sizes, where straight lines do better. Kinds not listed: "linear".
INTERPOLATION: dict[str, Method] = {"context_attention": "pchip", "generation_attention": "pchip",
                                    "context_mla": "pchip", "generation_mla": "pchip", "collective": "pchip"}
# Where a table's times are made non-decreasing in its row axis (grid.nondecreasing): GEMMs over up to
# CUDA_GRAPH_MAX_TOKENS rows, the decode batches, where one kernel covers a bucket of m and reads the
# same weights for every m in it. Timing noise only ever adds time (clocks, a neighbour's traffic), so
# a point slower than a larger m's is noise: the tables hold such spikes, e.g. B200 vLLM 0.24.0 FP8
# n=2560 k=8192 at m = 1, 2, 4: 27-33 us beside 12.6-13.1 us at m = 3 and 5-16. Beyond the decode range
# a slower smaller m can be a real kernel choice (cuBLAS's split-K and tile heuristics), and stays.
MONOTONE: dict[str, dict[str, float]] = {"gemm": {"m": CUDA_GRAPH_MAX_TOKENS}}


class TablesWarning(UserWarning):
    """An asked-for engine version had no tables and another one was used."""


@dataclass(frozen=True)
class TableRef:
    kind: str
    engine: str
    engine_version: str
    path: Path
    entry: dict[str, Any]


class MeasuredProfile:
    """The manifest of one measured profile and its tables, each read on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest = read_manifest(folder)
        self.tables = [TableRef(t["kind"], str(t["engine"]), str(t["engine_version"]), folder / t["file"], t)
                       for t in self.manifest.get("tables") or []]

    @property
    def source(self) -> dict[str, Any]:
        return dict(self.manifest.get("source") or {})

    def engines(self) -> dict[str, list[str]]:
        """Engine -> its measured versions (any kind), oldest first."""
        out: dict[str, set[str]] = {}
        for t in self.tables:
            out.setdefault(t.engine, set()).add(t.engine_version)
        return {e: sorted(v, key=version_key) for e, v in sorted(out.items())}

    def find(self, kind: str, engine: str) -> list[TableRef]:
        return [t for t in self.tables if t.kind == kind and t.engine == engine]

    def grid(self, ref: TableRef) -> Grid:
        return _grid(str(ref.path), ref.kind)


def table_grid(columns: Mapping[str, Sequence[Any]], kind: str) -> Grid:
    """The interpolator of a ``kind`` table with these columns, as the cost model builds it."""
    names = COLUMNS[kind]
    k = KEYS[kind]
    return Grid(columns, keys=names[:k], axes=names[k:-1], method=INTERPOLATION.get(kind, "linear"),
                monotone=MONOTONE.get(kind))


@cache
def _grid(path: str, kind: str) -> Grid:
    return cached_grid(Path(path), kind=kind, method=INTERPOLATION.get(kind, "linear"), columns=COLUMNS[kind],
                       build=lambda: table_grid(read_rows(Path(path), kind), kind), monotone=MONOTONE.get(kind))


@cache
def load_measured(folder: str) -> MeasuredProfile:
    return MeasuredProfile(Path(folder))


@dataclass
class Coverage:
    """Kernel shapes no table covered (the roofline answered them), with how often each was asked."""

    misses: Counter[tuple[str, str]] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)

    def miss(self, kind: str, shape: str) -> None:
        self.misses[(kind, shape)] += 1

    def hit(self, kind: str) -> None:
        self.hits[kind] += 1

    def rows(self) -> list[dict[str, Any]]:
        return [{"kind": k, "shape": s, "count": n} for (k, s), n in sorted(self.misses.items())]


class KernelBasis:
    """Kernel times from one measured profile's tables for one engine (``None``: training)."""

    def __init__(self, measured: MeasuredProfile, *, engine: str | None, version: str | None = None) -> None:
        self.measured = measured
        self.engine = engine
        self.coverage = Coverage()
        self.chosen: dict[str, TableRef] = {}
        self.warnings: list[str] = []
        if engine is not None and engine not in ENGINE_TABLES:
            raise ValueError(f"unknown engine {engine!r}; engines: {', '.join(ENGINE_TABLES)}")
        for kind in COLUMNS:
            ref = self._select(kind, engine, version)
            if ref is not None:
                self.chosen[kind] = ref
        self.nccl = self._select_nccl()
        # an autotuned format: every other engine's newest GEMM table of it on this GPU (AUTOTUNED_GEMMS)
        self.gemm_alternatives: dict[str, list[TableRef]] = {}
        own = ENGINE_TABLES.get(engine or "")
        for dtype in AUTOTUNED_GEMMS.get(own or "", frozenset()):
            others = sorted({r.engine for r in self.measured.tables if r.kind == "gemm"} - {own})
            alts = [ref for ref in (self._newest_gemm(other, dtype) for other in others) if ref is not None]
            if alts:
                self.gemm_alternatives[dtype] = alts
        # training: a dtype whose GEMMs another engine's tables time (TRAINING_GEMM_DTYPE_ENGINE)
        self.gemm_by_dtype: dict[str, TableRef] = {}
        self.quantize_by_dtype: dict[str, TableRef] = {}
        if engine is None:
            for dtype, eng in TRAINING_GEMM_DTYPE_ENGINE.items():
                ref = self._newest_gemm(eng, dtype)
                if ref is not None:
                    self.gemm_by_dtype[dtype] = ref
                    quant = self.measured.find("quantize", eng)   # its scale kernels go with its GEMMs
                    if quant:
                        self.quantize_by_dtype[dtype] = max(quant, key=lambda r: version_key(r.engine_version))

    def _newest_gemm(self, engine: str, dtype: str) -> TableRef | None:
        """``engine``'s newest GEMM table that measured ``dtype`` on this GPU, or None."""
        refs = [r for r in self.measured.find("gemm", engine) if self.measured.grid(r).has((dtype,))]
        return max(refs, key=lambda r: version_key(r.engine_version)) if refs else None

    def _select(self, kind: str, engine: str | None, version: str | None) -> TableRef | None:
        if kind == "collective":
            if engine is None:
                return None      # training: NCCL only (self.nccl)
            refs = [r for r in self.measured.find(kind, ENGINE_TABLES[engine])]
        elif engine is None:
            for e in TRAINING_ENGINES:
                refs = self.measured.find(kind, e)
                if refs:
                    break
            else:
                return None
            return max(refs, key=lambda r: version_key(r.engine_version))
        else:
            refs = self.measured.find(kind, ENGINE_TABLES[engine])
        if not refs:
            # a calibrated profile has the user's own torch tables only: they stand in for any engine
            torch = self.measured.find(kind, "torch")
            return max(torch, key=lambda r: version_key(r.engine_version)) if torch else None
        pick, warning = choose([r.engine_version for r in refs], version)
        if warning and warning not in self.warnings:
            self.warnings.append(f"{kind} tables of {engine}: {warning}")
        return next(r for r in refs if r.engine_version == pick)

    def _select_nccl(self) -> TableRef | None:
        refs = self.measured.find("collective", "nccl")
        return max(refs, key=lambda r: version_key(r.engine_version)) if refs else None

    def describe(self) -> dict[str, str]:
        """kind -> 'engine version' of the table answering it."""
        out = {k: f"{r.engine} {r.engine_version}" for k, r in self.chosen.items()}
        out.update({f"gemm {d}": f"{r.engine} {r.engine_version}" for d, r in self.gemm_by_dtype.items()})
        out.update({f"gemm {d}": "fastest of " + ", ".join(f"{r.engine} {r.engine_version}" for r in
                                                            [self.chosen["gemm"], *alts])
                    for d, alts in self.gemm_alternatives.items() if "gemm" in self.chosen})
        if self.nccl is not None:
            out["nccl"] = f"nccl {self.nccl.engine_version}"
        return out

    # ---- queries: seconds, or None (counted) when no table covers the shape ----------------------
    def _lookup(self, kind: str, ref: TableRef | None, key: tuple[Any, ...], point: tuple[float, ...],
                shape: str, count: bool = True) -> float | None:
        t = None if ref is None else self.measured.grid(ref)(key, point)
        if not count:          # a probe (e.g. points of a fit), not a kernel the model runs
            return None if t is None else t * 1e-6
        if t is None:
            self.coverage.miss(kind, shape)
            return None
        self.coverage.hit(kind)
        return t * 1e-6

    def gemm(self, dtype: str, m: float, n: float, k: float) -> float | None:
        """A GEMM ``[m, k] x [k, n]``. One wider (n) or taller (m) than the grid is timed as the
        ``c`` equal blocks of rows or columns it splits into exactly (c launches of a measured
        shape, an upper bound that is tight at these sizes); a larger k is not split (that needs
        a reduction) and falls back."""
        t = self._gemm_in(self.gemm_by_dtype.get(dtype) or self.chosen.get("gemm"), dtype, m, n, k, count=True)
        if t is not None:          # an autotuned format: the fastest measured kernel (AUTOTUNED_GEMMS)
            for alt in self.gemm_alternatives.get(dtype, ()):
                other = self._gemm_in(alt, dtype, m, n, k, count=False)
                t = t if other is None else min(t, other)
        return None if t is None else t * in_model_factor("gemm")

    def _gemm_in(self, ref: TableRef | None, dtype: str, m: float, n: float, k: float, *, count: bool) -> float | None:
        blocks = 1
        if ref is not None:
            axes = self.measured.grid(ref).axis_values((dtype,))
            if axes is not None:
                m_max, n_max = float(axes[0][-1]), float(axes[1][-1])
                cm, cn = max(1, math.ceil(m / m_max)), max(1, math.ceil(n / n_max))
                m, n, blocks = m / cm, n / cn, cm * cn
        shape = f"{dtype} m={m * 1:g} n={n:g} k={k:g}" + (f" (x{blocks} blocks)" if blocks > 1 else "")
        t = self._lookup("gemm", ref, (dtype,), (m, n, k), shape, count)
        return None if t is None else blocks * t

    def context_attention(self, *, dtype: str, kv_dtype: str, heads: int, kv_heads: int, head_dim: int, batch: float,
                          seq: float, window: int = 0, count: bool = True) -> float | None:
        return self._lookup("context_attention", self.chosen.get("context_attention"),
                            (dtype, kv_dtype, heads, kv_heads, head_dim, window), (batch, seq),
                            f"{dtype}/{kv_dtype} heads={heads} kv_heads={kv_heads} d={head_dim} b={batch:g} s={seq:g}",
                            count)

    def generation_attention(self, *, dtype: str, kv_dtype: str, heads: int, kv_heads: int, head_dim: int,
                             batch: float, kv_len: float, window: int = 0, count: bool = True) -> float | None:
        return self._lookup("generation_attention", self.chosen.get("generation_attention"),
                            (dtype, kv_dtype, heads, kv_heads, head_dim, window), (batch, kv_len),
                            f"{dtype}/{kv_dtype} heads={heads} kv_heads={kv_heads} d={head_dim} b={batch:g} "
                            f"kv={kv_len:g}", count)

    def context_mla(self, *, dtype: str, kv_dtype: str, heads: int, batch: float, seq: float,
                    count: bool = True) -> float | None:
        return self._lookup("context_mla", self.chosen.get("context_mla"), (dtype, kv_dtype, heads), (batch, seq),
                            f"{dtype}/{kv_dtype} MLA heads={heads} b={batch:g} s={seq:g}", count)

    def generation_mla(self, *, dtype: str, kv_dtype: str, heads: int, batch: float, kv_len: float,
                       count: bool = True) -> float | None:
        return self._lookup("generation_mla", self.chosen.get("generation_mla"), (dtype, kv_dtype, heads),
                            (batch, kv_len), f"{dtype}/{kv_dtype} MLA heads={heads} b={batch:g} kv={kv_len:g}",
                            count)

    def quantize(self, op: str, dtype: str, m: float, k: float) -> float | None:
        """An activation-quantization kernel of a GEMM input [m, k] (``compute_scale``: the dynamic
        per-tensor scale; ``scale_matrix``: the cast), from the engine's table; None (not counted:
        it is a correction, not a kernel the model runs) where there is none."""
        ref = self.quantize_by_dtype.get(dtype) or self.chosen.get("quantize")
        if ref is None:
            return None
        t = self.measured.grid(ref)((op, dtype), (m, k))
        return None if t is None else t * 1e-6

    def keys(self, kind: str) -> list[tuple[Any, ...]]:
        """The shapes (keys) the chosen ``kind`` table measured."""
        ref = self.chosen.get(kind)
        return [] if ref is None else self.measured.grid(ref).keys_present()

    def sizes(self, kind: str, key: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The measured values of each size axis of the chosen ``kind`` table at ``key`` (context
        attention: batches, sequence lengths), or None where it did not measure ``key``."""
        ref = self.chosen.get(kind)
        return None if ref is None else self.measured.grid(ref).axis_values(key)

    def has(self, kind: str, key: tuple[Any, ...]) -> bool:
        """Whether the chosen ``kind`` table measured ``key`` at all (any size)."""
        ref = self.chosen.get(kind)
        if kind == "gemm" and key and key[0] in self.gemm_by_dtype:
            ref = self.gemm_by_dtype[key[0]]
        return ref is not None and self.measured.grid(ref).has(key)

    def collective(self, op: str, *, ranks: int, nbytes: float, tokens: float | None = None,
                   count: bool = True) -> float | None:
        """A single-node collective: the engine's own all-reduce where it has one (CUDA-graph or eager
        kernel by iteration size), else NCCL. Multi-node groups are the caller's (tables are one node).
        ``count=False``: a probe, not counted in the coverage."""
        ref = self.chosen.get("collective")
        shape = f"{op} ranks={ranks} bytes={nbytes:.0f}"
        if ref is not None and op == "all_reduce":
            grid = self.measured.grid(ref)
            for impl in _implementations(grid, ref.engine, tokens):
                t = grid((op, impl, "bf16", ranks, ranks), (nbytes,))
                if t is not None:
                    if count:
                        self.coverage.hit("collective")
                    return t * 1e-6
        return self._lookup("collective", self.nccl, (op, "nccl", "fp16", ranks, ranks), (nbytes,), shape, count)

    def moe(self, *, dtype: str, tokens: float, hidden: int, inter: int, topk: int, experts: int, tp: int,
            ep: int) -> float | None:
        return self._lookup("moe", self.chosen.get("moe"), (dtype, hidden, inter, topk, experts, tp, ep, "balanced"),
                            (tokens,), f"{dtype} tokens={tokens:g} hidden={hidden} inter={inter} topk={topk} "
                            f"experts={experts} tp={tp} ep={ep}")

    def memory(self, op: str, nbytes: float) -> float | None:
        ref = self.chosen.get("memory")
        if ref is None:
            return None       # imported profiles have no memory tables: the roofline is the model, not a miss
        if op != "copy" and not self.measured.grid(ref).has((op,)):
            op = "elementwise"    # a class the calibration did not time (activation, rope; softmax before it was)
        return self._lookup("memory", ref, (op,), (nbytes,), f"{op} bytes={nbytes:.0f}")


def _implementations(grid: Grid, engine: str, tokens: float | None) -> list[str]:
    present = {k[1] for k in grid.keys_present()}
    graph = tokens is not None and tokens <= CUDA_GRAPH_MAX_TOKENS
    order = [f"{engine}_graph", f"{engine}_eager"] if graph else [f"{engine}_eager", f"{engine}_graph"]
    return [i for i in [*order, engine] if i in present] or sorted(present)


def bind(measured: MeasuredProfile, engine: str | None, version: str | None = None, *, warn: bool = True) -> KernelBasis:
    basis = KernelBasis(measured, engine=engine, version=version)
    if warn:
        for w in basis.warnings:
            warnings.warn(w, TablesWarning, stacklevel=3)
    return basis
