"""Time of a convolutional network's forward on one GPU: each convolution as an implicit GEMM.

cuDNN's and TensorRT's convolution kernels for tensor cores are implicit GEMMs (the im2col matrix
is formed tile by tile in shared memory, never in HBM): ``M = batch · h_out²``, ``N = c_out/g``,
``K = (c_in/g) · k²`` per group (:meth:`simulator.convnets.ConvLayer.gemm`). Each takes the roofline
of the GEMM cost model: compute at the GEMM maximum with tile and wave quantization (as
:func:`simulator.costmodel.ops.gemm`), memory for the input, weights and output once (not the im2col
matrix: that is the point of the implicit GEMM). A depthwise convolution (one filter per channel,
``N = 1``) gives a tensor core nothing to do: it runs on the CUDA cores at the non-tensor FP32 rate
and is bound by its memory traffic. Batch norm is folded into the weights and the activation fused
into the epilogue at inference, as TensorRT does; residual adds, pooling and squeeze-and-excitation
scaling are elementwise kernels at the profile's streaming bandwidth.
"""

from __future__ import annotations

from ..convnets import ConvLayer, ConvOp, Elementwise
from ..hardware import HardwareProfile
from ..precision import get_format
from .ops import Op, memory_bound_time, memory_op, wave_efficiency

ACT_BYTES = 2.0   # 16-bit activations


def conv_op(hw: HardwareProfile, layer: ConvLayer, batch: int, precision: str) -> Op:
    """One convolution (or the classifier, a 1×1 on a 1×1 input) over ``batch`` images."""
    m, n, k, g = layer.gemm(batch)
    flops = 2.0 * m * n * k * g
    wb = get_format(precision).weight_bytes
    traffic = (batch * layer.h_in**2 * layer.c_in + batch * layer.h_out**2 * layer.c_out) * ACT_BYTES \
        + layer.c_out * (layer.c_in // layer.groups) * layer.k**2 * wb
    latency = hw.efficiency.kernel_latency_us * 1e-6
    if layer.depthwise:
        rate = hw.peak_flops("fp32") * hw.gemm_max("fp32")
    else:
        rate = hw.peak_flops(precision) * hw.gemm_max(precision) * wave_efficiency(hw, m, n, g)
    t = max(flops / rate + latency, memory_bound_time(hw, traffic))
    return Op(layer.name, "gemm", t, flops)


def conv_forward_ops(hw: HardwareProfile, ops: tuple[ConvOp, ...], batch: int, precision: str) -> list[Op]:
    """Every kernel of a CNN's forward over ``batch`` images."""
    out: list[Op] = []
    for o in ops:
        if isinstance(o, ConvLayer):
            out.append(conv_op(hw, o, batch, precision))
        elif isinstance(o, Elementwise):
            out.append(memory_op(hw, o.name, batch * (o.reads + o.writes) * ACT_BYTES))
    return out


def conv_forward_time(hw: HardwareProfile, ops: tuple[ConvOp, ...], batch: int, precision: str) -> float:
    """Seconds of one forward over ``batch`` images (kernels back to back)."""
    return sum(o.time for o in conv_forward_ops(hw, ops, batch, precision))
