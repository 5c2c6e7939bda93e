"""Hardware profiles and the cloud price catalog.

A profile carries datasheet peaks plus the *achieved* efficiency the cost model uses. Defaults are
documented below; a calibrated profile (written by ``capsim calibrate``) replaces them with
measured efficiencies and host costs, and names its measured kernel tables (``measured:``, the
format of ``hardware_profiles/MEASURED.md``), as imported profiles have theirs.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from hardware_profiles import PROFILE_DIR

from .errors import CapsimError, unknown
from .files import parse_yaml, read_yaml
from .precision import PeakKey, Precision, formats_on, get_format, peak_chain, peaks_of, problem
from .silicon.tables import KernelBasis, MeasuredProfile, bind, load_measured

MEASURED_DIR = PROFILE_DIR / "measured"

__all__ = ["HardwareProfile", "PeakKey", "Precision", "find_instance", "get_profile", "resolve_price", "unpriced_reasons"]


# kernel classes of costmodel.ops.memory_kind with a bandwidth share of their own
MemoryKernel = Literal["norm", "softmax", "activation", "rope"]

class Link(BaseModel):
    """One tier of the network as collectives see it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    link: str
    busbw_gb_s: float = Field(gt=0, description="measured NCCL bus bandwidth for large messages")
    link_gb_s_per_direction: float | None = Field(default=None, gt=0)
    # Per-step latency of a ring collective. Default derived from shared/reference/README.md:
    # A100 NVLink all-reduce reaches ~20 GB/s busbw at 1 MiB vs 230 GB/s at large sizes; with an
    # alpha-beta ring (14 steps for 8 GPUs) that is (1.75 MiB/20 - 1.75 MiB/230)/14 = 6.0 us/step.
    step_latency_us: float = Field(default=6.0, ge=0)


class Efficiency(BaseModel):
    """Achieved fraction of peak, and the fixed costs that make small ops inefficient."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _old_tables(cls, data: Any) -> Any:
        old = sorted({"gemm_table", "gemm_table_precision", "memory_table"} & set(data or {}))
        if old:
            raise ValueError(f"efficiency.{old[0]} is the old calibration format (tables inside the profile); "
                             "re-run `capsim calibrate`, which writes kernel tables beside the profile "
                             "(hardware_profiles/MEASURED.md)")
        return data

    gemm_max: dict[str, Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=dict)
    # Fraction of HBM bandwidth reached by streaming kernels (copy/elementwise). Assumed: STREAM-like
    # copies reach 85-92% on HBM2e/HBM3; 0.85 until calibrated.
    memory: float = Field(default=0.85, gt=0, le=1)
    # Fraction of HBM bandwidth reached by the memory-bound kernels no measurement covers (bias-
    # dropout-add with its random mask, residual adds, unfused attention's softmax, casts): the
    # classes with their own source are in ``memory_kernels``. Fitted with dispatch_us on the vTrain
    # single-node A100 set with A100's measured norm/activation/RoPE shares (bench/fit_stack.py: 0.7,
    # 8.3% MAPE; 0.6 8.5%, 0.8 8.4%) and checked on the held-out multi-node and Korthikanti sets.
    # Calibration measures it as a residual add's achieved bandwidth.
    elementwise: float = Field(default=0.7, gt=0, le=1)
    # Per kernel class, the share of HBM bandwidth where it has its own source (costmodel.ops.memory_kind:
    # norm, softmax — unfused attention's masked softmax and its dropout —, activation, rope); a class
    # not given runs at ``elementwise``. Spec profiles take them from in-model measurements (their
    # comments cite which); calibration measures norm (LayerNorm) and softmax.
    memory_kernels: dict[MemoryKernel, Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=dict)
    # Flash-attention throughput relative to the GEMM maximum. FlashAttention-2 (Dao 2023) reaches
    # ~73% of A100 peak forward and ~63% forward+backward vs ~87% for GEMM -> 0.84 / 0.72.
    attention_fwd: float = Field(default=0.84, gt=0, le=1)
    attention_bwd: float = Field(default=0.72, gt=0, le=1)
    # Minimum GPU time of one kernel (launch, ramp-up, tail). Assumed 4 us, typical of CUDA kernels.
    kernel_latency_us: float = Field(default=4.0, ge=0)
    # SMs a collective's kernels occupy while it runs (NCCL runs one thread block per channel and
    # uses 8-32 channels on NVLink/InfiniBand systems; 16 assumed). Compute overlapped with a
    # collective loses this share of the GPU (costmodel.ops.overlap_slowdown).
    comm_sms: int = Field(default=16, ge=0)
    # Host time to issue one op in eager PyTorch, measured by calibration (None: the training
    # stack's fitted default, simulator/training/stack.py). A scenario's training.dispatch_us wins.
    dispatch_us: float | None = Field(default=None, ge=0)
    # Host time per parameter tensor of an eager (for-each) optimizer step, measured by calibration.
    # None: 0, as fused/multi-tensor optimizers (Megatron, DeepSpeed) on GPUs make it negligible.
    optimizer_us_per_tensor: float | None = Field(default=None, ge=0)
    # Measured GEMM, attention and memory times live in kernel tables beside the profile
    # (HardwareProfile.measured, simulator/silicon), not here.


class HardwareProfile(BaseModel):
    """One accelerator type (per-GPU numbers) and its links."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str
    gpu: str
    memory_gib: float = Field(gt=0)
    memory_bandwidth_tbps: float = Field(gt=0)
    peak_tflops: dict[str, Annotated[float, Field(gt=0)]]
    num_sms: int = Field(default=100, ge=1)
    tdp_w: float | None = Field(default=None, gt=0)
    idle_w: float | None = Field(default=None, ge=0)
    intra_node: Link
    inter_node: Link
    efficiency: Efficiency = Field(default_factory=Efficiency)
    # GPUs that share one NVLink (or Infinity Fabric) domain: 8 in an HGX/DGX node, 72 in a GB200 NVL72 rack
    nvlink_domain_gpus: int = Field(default=8, ge=1)
    # folder of measured kernel tables (simulator/silicon/format.py); relative paths are relative to this
    # file's folder. None: hardware_profiles/measured/<name>/ when it exists, else spec-sheet only
    measured: str | None = None
    # HBM bandwidth of the GPU the measured tables ran on, when ``measured`` names a sibling of the same
    # silicon with faster memory (the A100 40 GB reads the 80 GB's tables: same GA100, 108 SMs, clocks
    # and NVLink, 1.555 vs 2.039 TB/s). The memory-bound share of a table's GEMM time then stretches by the
    # bandwidth ratio (costmodel.ops), and decode attention (bound by reading the KV cache) by all of it.
    measured_bandwidth_tbps: float | None = Field(default=None, gt=0)
    source: dict[str, str] = Field(default_factory=dict)
    calibrated: dict | None = None
    _kernels: KernelBasis | None = PrivateAttr(default=None)
    _measured: MeasuredProfile | None = PrivateAttr(default=None)
    # training's basis (engine None) is bound on first use: a serving run binds its engine's tables
    # instead (with_engine) and never reads the ones training would (TensorRT-LLM's FP8 GEMMs, ...)
    _training_basis_due: bool = PrivateAttr(default=False)

    # ---- measured tables -----------------------------------------------------------------------
    @property
    def kernels(self) -> KernelBasis | None:
        """The measured tables the cost model reads first (None: spec sheet and roofline only)."""
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]  # read directly: hot
        if private["_training_basis_due"]:
            private["_training_basis_due"] = False
            if private["_measured"] is not None:
                private["_kernels"] = bind(private["_measured"], None)
        kernels: KernelBasis | None = private["_kernels"]
        return kernels

    @property
    def table_bandwidth_ratio(self) -> float:
        """How much faster the memory of the GPU the tables ran on is (1: they ran on this GPU)."""
        if self.measured_bandwidth_tbps is None:
            return 1.0
        return max(1.0, self.measured_bandwidth_tbps / self.memory_bandwidth_tbps)

    @property
    def measured_profile(self) -> MeasuredProfile | None:
        return self._measured

    def with_engine(self, engine: str | None, version: str | None = None) -> HardwareProfile:
        """This GPU with its tables bound to a serving ``engine`` (None: training's tables); a fresh
        coverage count each time. A spec-only profile comes back unchanged (still spec-only)."""
        out = self.model_copy()
        out._measured = self._measured
        out._kernels = None if self._measured is None else bind(self._measured, engine, version)
        out._training_basis_due = False
        return out

    def spec_only(self) -> HardwareProfile:
        """This GPU without its measured tables: datasheet peaks × efficiency (the roofline)."""
        out = self.model_copy()
        out._measured = out._kernels = None
        out._training_basis_due = False
        return out

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * 2**30

    def peak_flops(self, precision: str) -> float:
        """Peak FLOP/s of ``precision``: a format (simulator.precision: the datasheet key it runs at,
        e.g. fp4 for nvfp4, bf16 for w4a16) or a datasheet key itself. Where the GPU lists none of the
        format's keys, its bf16 (then fp16) peak answers, as before formats were checked; scenarios
        check support first (:meth:`check_precision`), so only direct callers of the cost model reach it."""
        for p in (*peak_chain(precision), "bf16", "fp16"):
            if p in self.peak_tflops:
                return self.peak_tflops[p] * 1e12
        raise CapsimError(f"hardware {self.name!r} has no peak for precision {precision!r}")

    def supports(self, precision: str, *, training: bool = False) -> bool:
        """Whether this GPU runs format ``precision`` natively (and, with ``training``, trains in it)."""
        return problem(precision, peaks_of(self.peak_tflops), training=training) is None

    def check_precision(self, precision: str, *, key: str, training: bool = False) -> None:
        """Raise a :class:`CapsimError` naming ``key``, the format, this GPU and what would work when
        this GPU cannot run ``precision`` (for training, with ``training``)."""
        peaks = peaks_of(self.peak_tflops)
        why = problem(precision, peaks, training=training)
        if why is None:
            return
        here = formats_on(peaks, training=training)
        msg = (f"{key}: {precision!r} cannot {'train' if training else 'run'} on {self.name} "
               f"(peak_tflops lists {', '.join(peaks)}): {why}. On {self.name} use {', '.join(here)}")
        inference_only = training and not get_format(precision).training
        elsewhere = [] if inference_only else _profiles_running(precision, training=training)
        if elsewhere:
            msg += f"; {precision} runs on {', '.join(elsewhere)}"
        raise CapsimError(msg)

    def gemm_max(self, precision: str) -> float:
        """Achieved fraction of peak of the largest GEMMs, by the datasheet key ``precision`` runs at."""
        g = self.efficiency.gemm_max
        for p in (*peak_chain(precision), precision):
            if g.get(p):
                return g[p]
        return g.get("bf16") or g.get("fp16") or 0.75


# ---- loading ------------------------------------------------------------------------------------
def profile_paths() -> dict[str, Path]:
    out = {p.stem: p for p in sorted(PROFILE_DIR.glob("*.yaml")) if p.stem not in ("prices", "unpriced")}
    for p in sorted((PROFILE_DIR / "calibrated").glob("*.yaml")):
        out[f"calibrated/{p.stem}"] = p
    return out


@cache
def _load_path(path: str) -> HardwareProfile:
    doc = read_yaml(path, "hardware profile")
    if not isinstance(doc, dict):
        raise CapsimError(f"hardware profile {path!r} must be a mapping of keys, not a {type(doc).__name__}")
    try:
        hw = HardwareProfile(**doc)
    except ValidationError as e:
        from .scenario.loading import format_validation_error

        raise CapsimError(format_validation_error(e, HardwareProfile, f"hardware profile {path!r}")) from None
    folder = _measured_folder(hw, Path(path).parent)
    if folder is not None:
        hw._measured = load_measured(str(folder))
        hw._training_basis_due = True      # bound by the first read of hw.kernels
    return hw


def _measured_folder(hw: HardwareProfile, base: Path) -> Path | None:
    if hw.measured is not None:
        folder = (base / hw.measured).resolve()
        if not (folder / "tables.yaml").exists():
            raise CapsimError(f"hardware profile {hw.name!r}: measured: {hw.measured!r} has no tables.yaml "
                              f"(looked in {folder}); re-run the calibration or the importer that wrote it")
        return folder
    conventional = MEASURED_DIR / hw.name
    return conventional if (conventional / "tables.yaml").exists() else None


def _profiles_running(precision: str, *, training: bool) -> list[str]:
    """The spec-sheet profiles whose GPU runs ``precision`` natively (for error messages)."""
    out = []
    for name, path in profile_paths().items():
        if name.startswith("calibrated/"):
            continue
        try:
            peaks = peaks_of(_load_path(str(path)).peak_tflops)
        except CapsimError:
            continue
        if problem(precision, peaks, training=training) is None:
            out.append(name)
    return out


def get_profile(ref: str | HardwareProfile) -> HardwareProfile:
    """A profile by name (``h100-sxm``, ``calibrated/NAME``) or by path to a YAML file."""
    if isinstance(ref, HardwareProfile):
        return ref
    paths = profile_paths()
    key = str(ref).strip()
    if key.lower() in paths:
        return _load_path(str(paths[key.lower()]))
    p = Path(key).expanduser()
    if p.suffix in (".yaml", ".yml") or p.exists():
        return _load_path(str(p.resolve()))
    raise unknown("hardware profile", key, paths)


class Instance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str
    instance: str
    gpu: str
    gpus: int
    region: str | None = None
    on_demand_usd_per_hour: float | None = None
    spot_usd_per_hour: float | None = None
    source: str = ""
    notes: str | None = None

    @property
    def gpu_part_only(self) -> bool:
        """The row prices the accelerators and not the host VM (GCP's accelerator rows: cloud_prices.csv
        notes "host VM part not read"), so it under-states what the instance costs."""
        n = (self.notes or "").lower()
        return "host vm" in n and "not read" in n

    @property
    def unverified(self) -> bool:
        """A third-party page's price (cloud_prices.csv marks these UNVERIFIED), or a row its notes call
        ANOMALOUS (a catalog GPU price below its own spot price)."""
        n = (self.notes or "").lower()
        return "unverified" in self.source.lower() or "unverified" in n or n.startswith("anomalous")

    def price(self, market: str) -> float | None:
        return self.spot_usd_per_hour if market == "spot" else self.on_demand_usd_per_hour

    def usd_per_gpu_hour(self, market: str) -> float:
        price = self.price(market)
        if price is None:
            raise CapsimError(
                f"instance {self.instance!r} ({self.provider}) has no {market} price in the catalog; "
                "set pricing.usd_per_gpu_hour in the scenario"
            )
        return price / self.gpus


@cache
def price_catalog() -> tuple[Instance, ...]:
    doc = parse_yaml((PROFILE_DIR / "prices.yaml").read_text())
    return tuple(Instance(**r) for r in doc["instances"])


@cache
def unpriced_reasons() -> dict[str, str]:
    """Why a GPU profile has no row in the price catalog (hardware_profiles/unpriced.yaml)."""
    doc = parse_yaml((PROFILE_DIR / "unpriced.yaml").read_text())
    return {str(k): str(v) for k, v in (doc.get("unpriced") or {}).items()}


def _base_gpu(gpu: str) -> str:
    return gpu.removeprefix("calibrated/").split("-cal")[0]


def find_instance(*, gpu: str, provider: str | None = None, instance: str | None = None,
                  gpus_per_node: int | None = None, market: str | None = None) -> Instance:
    """The catalog instance that prices ``gpus_per_node`` GPUs of a profile: by exact instance name,
    else among the provider's rows (every provider's when none is named) those with exactly that many
    GPUs (else the smallest holding more, else the largest), the cheapest per GPU-hour in ``market``
    (on-demand by default). With no provider named, rows pricing only the GPU part of a VM and
    unverified third-party rows are skipped while a complete, verified row exists."""
    cat = price_catalog()
    if instance:
        for i in cat:
            if i.instance == instance and (provider is None or i.provider == provider):
                return i
        raise unknown("instance", instance, {i.instance for i in cat})
    base = _base_gpu(gpu)
    mkt = market or "on_demand"
    rows = [i for i in cat if i.gpu == base]
    cands = [i for i in rows if provider is None or i.provider == provider]
    if not cands:
        have = sorted({i.gpu for i in cat if provider is None or i.provider == provider})
        why = unpriced_reasons().get(base)
        raise CapsimError(
            f"GPU {gpu!r} has no price in the catalog{' for provider ' + provider if provider else ''}"
            + (f" ({why})" if why and provider is None else
               f" (it prices {', '.join(have) or 'nothing there'})")
            + "; set pricing.usd_per_gpu_hour (or pricing.usd_per_gpu_hour_by_gpu) in the scenario")
    if provider is None:
        whole = [i for i in cands if not i.gpu_part_only and not i.unverified]
        cands = whole or cands
    priced = [i for i in cands if i.price(mkt) is not None]
    cands = priced or cands                  # none priced in this market: the caller's error names the row
    need = gpus_per_node or 0
    exact = [i for i in cands if i.gpus == need]
    larger = sorted({i.gpus for i in cands if i.gpus > need})
    pool = exact or ([i for i in cands if i.gpus == larger[0]] if larger else
                     [i for i in cands if i.gpus == max(i.gpus for i in cands)])
    pool.sort(key=lambda i: (i.usd_per_gpu_hour(mkt) if i.price(mkt) is not None else math.inf,
                             i.provider, i.instance))
    return pool[0]


def resolve_price(pricing: Any, hw: HardwareProfile, *, gpus_per_node: int | None = None) -> tuple[float, str]:
    """($ per GPU-hour, where it came from) for a scenario's ``pricing`` block on ``hw``: the scenario's
    own price, else its price for this GPU type, else the catalog instance holding ``gpus_per_node``
    GPUs (a replica's or a node's count) from :func:`find_instance`."""
    if pricing.usd_per_gpu_hour:
        return pricing.usd_per_gpu_hour, "scenario pricing.usd_per_gpu_hour"
    base = (hw.calibrated or {}).get("base_profile") or hw.name     # a calibrated GPU is priced as its model
    by_gpu = getattr(pricing, "usd_per_gpu_hour_by_gpu", None) or {}
    for key in (hw.name, _base_gpu(base)):
        if key in by_gpu:
            return float(by_gpu[key]), f"scenario pricing.usd_per_gpu_hour_by_gpu.{key}"
    inst = find_instance(gpu=base, provider=pricing.provider, instance=pricing.instance, gpus_per_node=gpus_per_node,
                         market=pricing.market)
    return inst.usd_per_gpu_hour(pricing.market), f"{inst.provider}:{inst.instance} {pricing.market} ({inst.source})"
