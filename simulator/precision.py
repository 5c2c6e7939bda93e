"""One precision vocabulary for serving and training: what each number format stores, where it runs,
and which datasheet peak it runs at.

A scenario's ``precision`` (serving) or ``training.precision`` names one :class:`Format`; the
scenario models, the hardware profile, the inference cost model and training's memory model all
read their bytes and peaks here, so a format is described once.

What a format stores, per element:

- **weights** (:attr:`Format.weight_bytes`): the quantized linear layers' bytes per parameter,
  block scales included. Embeddings, the output head and norms stay 16-bit in every engine's
  quantized checkpoints (:attr:`Format.unquantized_weight_bytes`; vLLM's ``VocabParallelEmbedding``
  is never quantized, and FP8/NVFP4/AWQ checkpoints list ``lm_head`` among the ignored modules).
- **activations** (:attr:`Format.activation_bytes`): what engines keep between kernels, the residual
  stream and norm outputs, which stays bf16 in every format here (fp32 runs everything in fp32).
  The 8- and 4-bit formats quantize activations only at GEMM inputs, inside the GEMM's prologue or
  a fused norm-and-quantize kernel (:attr:`Format.gemm_input_bytes`); nothing else is stored low.
- **KV cache** (:attr:`Format.kv_default`): bf16 unless ``replica.kv_cache_precision`` says
  otherwise (vLLM's ``kv_cache_dtype: auto`` uses the model's activation dtype; fp8 KV is opt-in).

Block sizes and their sources:

- ``fp8-block``: one fp32 scale per 128×128 weight block (DeepSeek-V3 technical report, 2024,
  §3.3, FP8 training, fine-grained quantization: 1×128 activation tiles, 128×128 weight blocks;
  the checkpoints' and vLLM's ``weight_block_size: [128, 128]``): ``1 + 4/16384`` bytes per weight, ``1 + 4/128`` per activation.
- ``mxfp8``: one 8-bit E8M0 scale per 32 elements (OCP Microscaling Formats (MX) Specification
  v1.0, 2023, concrete MX formats: MXFP8 E4M3/E5M2, block size 32, shared scale E8M0): ``1 + 1/32``.
- ``nvfp4``: one FP8 E4M3 scale per 16 FP4 E2M1 elements plus one fp32 scale per tensor, negligible
  (NVIDIA, "Introducing NVFP4 for efficient and accurate low-precision inference", 2025; Transformer
  Engine's ``NVFP4BlockScaling`` recipe): ``0.5 + 1/16``.
- ``w4a16``: 4-bit weights with one fp16 scale per group of 128 along the input dimension (the
  group size AWQ and GPTQ default to, and vLLM's Marlin kernels' default): ``0.5 + 2/128``; the
  zero points of asymmetric AWQ add another 4 bits per group, ignored here (0.002 bytes/weight).
- ``w8a8-int8``: int8 weights with one scale per output channel and int8 activations with one per
  token (SmoothQuant, Xiao et al. 2023; TensorRT-LLM's ``sq``): ``1`` (the scales are negligible).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

Precision = Literal["fp32", "bf16", "fp16", "fp8", "fp8-block", "mxfp8", "nvfp4", "w4a16", "w8a8-int8"]
KVFormat = Literal["fp32", "bf16", "fp16", "fp8"]
# datasheet peak keys a hardware profile's peak_tflops may list
PeakKey = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "fp4", "int8"]

KV_BYTES: dict[str, float] = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0}


@dataclass(frozen=True, slots=True)
class Format:
    """One number format: bytes per element of what it stores, the peak it runs at, where it runs."""

    name: str
    summary: str
    weight_bytes: float
    """bytes per parameter of the quantized linear layers, block scales included"""
    gemm_input_bytes: float
    """bytes per activation element as a GEMM reads it (quantized at its input), scales included"""
    activation_bytes: float
    """bytes per element of the activations stored between kernels (residual stream, norm outputs)"""
    unquantized_weight_bytes: float
    """bytes per parameter of what stays unquantized: embeddings, output head, norms"""
    kv_default: str
    """the KV-cache format when replica.kv_cache_precision is auto"""
    peak: str
    """the datasheet peak (peak_tflops key) the GEMMs run at"""
    peak_fallback: tuple[str, ...]
    """keys tried next when a GPU lists no ``peak`` (each one the format may run at)"""
    kernel_dtype: str | None
    """the dtype name of its rows in the measured GEMM tables; None: no table, the roofline answers"""
    needs: tuple[tuple[str, ...], ...]
    """peak keys a GPU must list to run it natively: every group, each by any one of its keys"""
    training: bool
    """whether a training recipe exists (on a GPU that runs it natively)"""
    why_not_training: str = ""

    @property
    def kv_bytes(self) -> float:
        """Bytes per KV-cache element by default (replica.kv_cache_precision auto)."""
        return KV_BYTES[self.kv_default]

    def peak_keys(self) -> tuple[str, ...]:
        return (self.peak, *self.peak_fallback)

    def missing(self, peaks: Iterable[str]) -> list[str]:
        """The ``needs`` groups a GPU listing ``peaks`` does not meet (empty: it runs natively)."""
        have = set(peaks)
        return [" or ".join(g) for g in self.needs if not have.intersection(g)]

    def runs_on(self, peaks: Iterable[str]) -> bool:
        return not self.missing(peaks)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("fp32", "32-bit floats throughout (no tensor-core math)", 4.0, 4.0, 4.0, 4.0, "fp32", "fp32", (),
           None, (("fp32",),), True),
    Format("bf16", "bfloat16 weights and activations (the default)", 2.0, 2.0, 2.0, 2.0, "bf16", "bf16",
           # a GPU listing only fp16 (T4, Turing) serves a bf16 checkpoint in fp16: vLLM's dtype auto
           # picks float16 below compute capability 8.0; the fp16 peak is the rate it runs at
           ("fp16",), "bf16", (("bf16", "fp16"),), True),
    Format("fp16", "float16 weights and activations", 2.0, 2.0, 2.0, 2.0, "fp16", "fp16", (), "fp16",
           (("fp16",),), True),
    Format("fp8", "FP8 E4M3 weights and GEMM inputs with per-tensor scales", 1.0, 1.0, 2.0, 2.0, "bf16", "fp8", (),
           "fp8", (("fp8",),), True),
    Format("fp8-block", "FP8 with one fp32 scale per 128x128 weight block and per 1x128 activation tile "
           "(DeepSeek-V3)", 1.0 + 4 / (128 * 128), 1.0 + 4 / 128, 2.0, 2.0, "bf16", "fp8", (), "fp8-block",
           (("fp8",),), True),
    Format("mxfp8", "OCP MXFP8: FP8 E4M3 with one E8M0 scale per 32 elements (Blackwell)", 1.0 + 1 / 32,
           1.0 + 1 / 32, 2.0, 2.0, "bf16", "fp8", (), None, (("fp8",), ("fp4",)), True),
    Format("nvfp4", "NVIDIA NVFP4: FP4 E2M1 with one FP8 E4M3 scale per 16 elements (Blackwell)", 0.5 + 1 / 16,
           0.5 + 1 / 16, 2.0, 2.0, "bf16", "fp4", (), "nvfp4", (("fp4",),), True),
    Format("w4a16", "4-bit weights, one fp16 scale per 128 (AWQ/GPTQ), dequantized to bf16 tensor-core math",
           0.5 + 2 / 128, 2.0, 2.0, 2.0, "bf16", "bf16", ("fp16",), "w4a16", (("bf16", "fp16"),), False,
           "w4a16 is an inference-only format: AWQ and GPTQ quantize a trained checkpoint, no training "
           "recipe updates 4-bit weights"),
    Format("w8a8-int8", "int8 weights (per-channel scales) and int8 activations (per-token scales), SmoothQuant",
           1.0, 1.0, 2.0, 2.0, "bf16", "int8",
           # the spec-sheet profiles list no int8 peak; Hopper's and Ada's dense int8 rate equals their fp8
           # rate (H100 SXM datasheet: 1,979 TOPS int8, 1,979 TFLOPS fp8), so fp8 stands in for it
           ("fp8",), "w8a8-int8", (("int8", "fp8"),), False,
           "w8a8-int8 is an inference-only format: SmoothQuant calibrates a trained checkpoint's int8 "
           "scales, there is no int8 training recipe"),
)}
PRECISIONS: tuple[str, ...] = get_args(Precision)
KV_FORMATS: tuple[str, ...] = get_args(KVFormat)


def get_format(name: str) -> Format:
    """The format ``name`` (one of :data:`Precision`)."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown precision {name!r}; precisions: {', '.join(FORMATS)}") from None


def kv_bytes(name: str) -> float:
    """Bytes per KV-cache element of the KV format ``name`` (fp32, bf16, fp16, fp8)."""
    try:
        return KV_BYTES[name]
    except KeyError:
        raise ValueError(f"unknown KV-cache precision {name!r}; KV formats: {', '.join(KV_BYTES)}") from None


def peak_chain(name: str) -> tuple[str, ...]:
    """The peak_tflops keys to try for ``name``, a format or a datasheet key itself (tf32, fp4, int8)."""
    fmt = FORMATS.get(name)
    return fmt.peak_keys() if fmt is not None else (name,)


def formats_on(peaks: Iterable[str], *, training: bool = False) -> list[str]:
    """The formats a GPU listing ``peaks`` runs natively (and, with ``training``, can train in)."""
    have = list(peaks)
    return [n for n, f in FORMATS.items() if f.runs_on(have) and (f.training or not training)]


def problem(name: str, peaks: Iterable[str], *, training: bool = False) -> str | None:
    """Why format ``name`` cannot run on a GPU listing ``peaks`` (for training, with ``training``);
    None when it can. The caller adds the key, the GPU and what would work."""
    fmt = get_format(name)
    if training and not fmt.training:
        return fmt.why_not_training
    missing = fmt.missing(peaks)
    if not missing:
        return None
    if any("fp4" in m for m in missing):
        why = f"{name} needs Blackwell tensor cores (an fp4 entry in the profile's peak_tflops)"
    elif name == "w8a8-int8":
        why = ("w8a8-int8 runs at the profile's int8 peak, or at its fp8 peak where it lists no int8 (Hopper's "
               "and Ada's dense int8 rate equals their fp8 rate), and this profile lists neither; a GPU with int8 "
               "tensor cores (A100) needs peak_tflops.int8 from its datasheet in a calibrated profile")
    else:
        why = f"{name} needs {' and '.join(missing)} tensor cores (an {missing[0]} entry in the profile's peak_tflops)"
    if fmt.peak == "fp8" and not training:
        why += ("; vLLM runs FP8 checkpoints on older GPUs as weight-only W8A16 (Marlin) kernels, which capsim "
                "does not model")
    return why


def model_weight_bytes(total_params: float, unquantized_params: float, name: str) -> float:
    """Bytes of a model's weights in format ``name``: its linear layers at the format's bytes (block
    scales included) and the ``unquantized_params`` (embeddings, output head) at 16 bits."""
    fmt = get_format(name)
    return (total_params - unquantized_params) * fmt.weight_bytes + unquantized_params * fmt.unquantized_weight_bytes


# ---- training's model states ---------------------------------------------------------------------
# Mixed-precision Adam (ZeRO, Rajbhandari et al. 2020): fp32 master weights and both moments, 12 B.
MASTER_AND_MOMENTS_BYTES = 12.0
# fp32 training keeps no master copy: the weights are fp32 already; Adam's two moments, 8 B.
MOMENTS_BYTES = 8.0


def training_state_bytes(name: str) -> tuple[float, float]:
    """(weight, optimizer) bytes per parameter a training rank holds in format ``name``, before ZeRO.

    fp32: 4-byte weights and Adam's two fp32 moments (8 B). bf16/fp16: 16-bit weights and 12 B of fp32
    master weights and moments. The 8- and 4-bit recipes (Transformer Engine) keep the parameters in
    bf16 too and cache their quantized copies for the micro-batches of a step (``is_first_microbatch``),
    row-wise for the forward and column-wise for the backward (Hopper's FP8 GEMMs take one layout only
    and block scales run along the reduction dimension; TE's "Handling transposes"): 2 + 2 × the
    format's weight bytes. Megatron's ``--fp8-param-gather`` (no bf16 copy) is not modelled."""
    fmt = get_format(name)
    if name == "fp32":
        return 4.0, MOMENTS_BYTES
    if fmt.weight_bytes >= 2.0:
        return fmt.weight_bytes, MASTER_AND_MOMENTS_BYTES
    return 2.0 + 2 * fmt.weight_bytes, MASTER_AND_MOMENTS_BYTES


def describe_formats(names: Iterable[str] | None = None) -> str:
    """``name (summary)`` for each format, for help texts."""
    return "; ".join(f"{n}: {FORMATS[n].summary}" for n in (names or FORMATS))


def peaks_of(peak_tflops: Mapping[str, float]) -> list[str]:
    """The keys a profile lists with a positive peak."""
    return [k for k, v in peak_tflops.items() if v and v > 0]
