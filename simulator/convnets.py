"""Convolutional networks as a list of layers: their shapes, parameters and multiply-adds.

A convolution of ``c_in → c_out`` channels, a ``k × k`` kernel, stride ``s`` and ``g`` groups on an
``h × h`` input ("same" padding, output ``ceil(h/s)``) is, as cuDNN and TensorRT run it, an implicit
GEMM: ``M = batch · h_out²`` output pixels, ``N = c_out / g`` filters, ``K = (c_in / g) · k²`` taps,
``g`` times; ``M·N·K·g`` multiply-adds. Inference engines fold batch norm into the convolution
and fuse the activation (ReLU, SiLU) into its epilogue, so those cost nothing of their own; a
residual add, pooling and squeeze-and-excitation's scaling are memory-bound elementwise kernels.

Two families, each built from its paper's table (``ConvNetSpec``):

- ``resnet``: He et al. 2016, "Deep Residual Learning for Image Recognition", Table 1: a 7×7/2
  stem of 64 channels, a 3×3/2 max pool, four stages of bottleneck blocks (1×1, 3×3, 1×1 with 4×
  expansion; ResNet-50: 3, 4, 6, 3 blocks of widths 64, 128, 256, 512), global average pooling and a
  1000-way fully connected layer. ``stride_in_3x3`` (default true) puts a stage's stride on the 3×3
  convolution, as torchvision and NVIDIA's "ResNet-50 v1.5" (the MLPerf model) do: 4.09 G
  multiply-adds; on the first 1×1, as the paper, 3.8 G (its "3.8 × 10⁹ FLOPs").
- ``efficientnet``: Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for CNNs", Table 1 (B0):
  a 3×3/2 stem of 32 channels, seven stages of MBConv blocks (expansion 1 then 6; kernels 3, 3, 5, 3,
  5, 5, 3; channels 16, 24, 40, 80, 112, 192, 320; 1, 2, 2, 3, 3, 4, 1 blocks; strides 1, 2, 2, 2, 1,
  2, 1), squeeze-and-excitation with a quarter of the block's input channels, a 1×1 head of 1280
  channels, pooling and the classifier; width and depth multipliers scale B0 (channels rounded to
  multiples of 8, block counts rounded up), as the reference implementation does.

Parameter counts include batch norm's scale and shift (2 per channel; the running statistics are
buffers, not parameters), as ``torchvision.models`` counts them: ResNet-50 25,557,032, EfficientNet-B0
5,288,548.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ConvNetSpec(BaseModel):
    """Which convolutional family and how it is sized (see the module docstring for each table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    family: Literal["resnet", "efficientnet"]
    blocks: tuple[int, ...] = Field(default=(3, 4, 6, 3), description="resnet: bottleneck blocks per stage")
    widths: tuple[int, ...] = Field(default=(64, 128, 256, 512), description="resnet: bottleneck width per stage")
    stride_in_3x3: bool = Field(default=True, description="resnet: a stage's stride on the 3x3 convolution (v1.5)")
    width_mult: float = Field(default=1.0, gt=0, description="efficientnet: channel multiplier (B0: 1.0)")
    depth_mult: float = Field(default=1.0, gt=0, description="efficientnet: block-count multiplier (B0: 1.0)")


@dataclass(frozen=True, slots=True)
class ConvLayer:
    """One convolution (``k = 1``, ``h_in = 1``: a fully connected layer) on a square input."""

    name: str
    c_in: int
    c_out: int
    k: int
    stride: int
    h_in: int
    groups: int = 1
    bias: bool = False
    bn: bool = True

    @property
    def h_out(self) -> int:
        return -(-self.h_in // self.stride)

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.c_in

    def params(self) -> int:
        return (self.c_out * (self.c_in // self.groups) * self.k * self.k + (self.c_out if self.bias else 0)
                + (2 * self.c_out if self.bn else 0))

    def macs(self) -> int:
        """Multiply-adds of one image."""
        return self.h_out**2 * self.c_out * (self.c_in // self.groups) * self.k * self.k

    def gemm(self, batch: int) -> tuple[int, int, int, int]:
        """The implicit GEMM of ``batch`` images: ``(M, N, K, groups)``."""
        return batch * self.h_out**2, self.c_out // self.groups, (self.c_in // self.groups) * self.k**2, self.groups


@dataclass(frozen=True, slots=True)
class Elementwise:
    """A memory-bound kernel over activations: ``reads`` and ``writes`` elements per image."""

    name: str
    reads: int
    writes: int


ConvOp = ConvLayer | Elementwise


def _resnet(spec: ConvNetSpec, image: int, channels: int, classes: int) -> tuple[ConvOp, ...]:
    ops: list[ConvOp] = [ConvLayer("stem", channels, 64, 7, 2, image)]
    h = ops[0].h_out  # type: ignore[union-attr]
    ops.append(Elementwise("maxpool", 64 * h * h, 64 * (-(-h // 2)) ** 2))
    h = -(-h // 2)
    c = 64
    for stage, (n, w) in enumerate(zip(spec.blocks, spec.widths, strict=True)):
        for b in range(n):
            s = 2 if b == 0 and stage > 0 else 1
            out = 4 * w
            pre = f"layer{stage + 1}.{b}."
            s1, s3 = (1, s) if spec.stride_in_3x3 else (s, 1)
            c1 = ConvLayer(pre + "conv1", c, w, 1, s1, h)
            c2 = ConvLayer(pre + "conv2", w, w, 3, s3, c1.h_out)
            c3 = ConvLayer(pre + "conv3", w, out, 1, 1, c2.h_out)
            ops += [c1, c2, c3]
            if b == 0:
                ops.append(ConvLayer(pre + "downsample", c, out, 1, s, h))
            h, c = c3.h_out, out
            ops.append(Elementwise(pre + "residual_add", 2 * c * h * h, c * h * h))
    ops.append(Elementwise("avgpool", c * h * h, c))
    ops.append(ConvLayer("fc", c, classes, 1, 1, 1, bias=True, bn=False))
    return tuple(ops)


# EfficientNet-B0, Tan & Le 2019 Table 1: (expansion, kernel, stride, channels, blocks) per MBConv stage
B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
             (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


def _round8(c: float) -> int:
    """Channels scaled and rounded to a multiple of 8, never below 90% of the scaled value (the
    reference implementation's ``round_filters``/``_make_divisible``)."""
    r = max(8, int(c + 4) // 8 * 8)
    return r + 8 if r < 0.9 * c else r


def _efficientnet(spec: ConvNetSpec, image: int, channels: int, classes: int) -> tuple[ConvOp, ...]:
    wm = spec.width_mult
    c = _round8(32 * wm)
    stem = ConvLayer("stem", channels, c, 3, 2, image)
    ops: list[ConvOp] = [stem]
    h = stem.h_out
    for si, (e, k, s, ch, n) in enumerate(B0_STAGES):
        out = _round8(ch * wm)
        for b in range(math.ceil(n * spec.depth_mult)):
            stride = s if b == 0 else 1
            pre = f"stage{si + 1}.{b}."
            mid = c * e
            if e != 1:
                ops.append(ConvLayer(pre + "expand", c, mid, 1, 1, h))
            dw = ConvLayer(pre + "depthwise", mid, mid, k, stride, h, groups=mid)
            ops.append(dw)
            h2 = dw.h_out
            se = max(1, c // 4)
            ops += [Elementwise(pre + "se_pool", mid * h2 * h2, mid),
                    ConvLayer(pre + "se_reduce", mid, se, 1, 1, 1, bias=True, bn=False),
                    ConvLayer(pre + "se_expand", se, mid, 1, 1, 1, bias=True, bn=False),
                    Elementwise(pre + "se_scale", mid * h2 * h2, mid * h2 * h2),
                    ConvLayer(pre + "project", mid, out, 1, 1, h2)]
            if stride == 1 and c == out:
                ops.append(Elementwise(pre + "residual_add", 2 * out * h2 * h2, out * h2 * h2))
            h, c = h2, out
    head = _round8(1280 * wm) if wm > 1 else 1280
    ops += [ConvLayer("head", c, head, 1, 1, h), Elementwise("avgpool", head * h * h, head),
            ConvLayer("fc", head, classes, 1, 1, 1, bias=True, bn=False)]
    return tuple(ops)


@lru_cache(maxsize=64)
def conv_layers(spec: ConvNetSpec, image: int, channels: int, classes: int) -> tuple[ConvOp, ...]:
    """Every kernel of one forward, in order."""
    build = _resnet if spec.family == "resnet" else _efficientnet
    return build(spec, image, channels, classes)


def conv_params(ops: tuple[ConvOp, ...]) -> int:
    return sum(o.params() for o in ops if isinstance(o, ConvLayer))


def conv_macs(ops: tuple[ConvOp, ...]) -> int:
    """Multiply-adds of one image (convolutions and the classifier; elementwise kernels do none)."""
    return sum(o.macs() for o in ops if isinstance(o, ConvLayer))
