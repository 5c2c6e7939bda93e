"""Which of a transformer layer's small kernels an inference engine fuses away.

A decode step of a large model is a few hundred kernels, most of them tiny: at 16 tokens a norm
or residual add moves a quarter of a megabyte and costs its launch floor, not its bytes, so how
many of them an engine runs matters as much as how fast its GEMMs are. The engines differ:

- **Residual add inside the norm** (every engine): the layer's residual add is fused into the
  next RMSNorm, one kernel reading the sum's inputs and writing the residual and the normed
  activations. vLLM ``RMSNorm.forward_cuda(x, residual)`` → ``fused_add_rms_norm``
  (vllm/model_executor/layers/layernorm.py, called by models/llama.py ``LlamaDecoderLayer``);
  SGLang the same through sgl-kernel (python/sglang/srt/layers/layernorm.py); TensorRT-LLM's
  PyTorch backend ``RMSNorm(hidden_states, residual)`` (tensorrt_llm/_torch/models/modeling_llama.py).
- **All-reduce, residual add and norm in one kernel** (TensorRT-LLM at TP > 1): its decoder
  layers call ``AllReduce`` with ``AllReduceFusionOp.RESIDUAL_RMS_NORM`` (the same file and
  modeling_qwen3.py), so the add-norm after each tensor-parallel all-reduce is not a kernel of
  its own; capsim charges the all-reduce table's time for the fused kernel.
- **RoPE inside attention** (TensorRT-LLM): its attention op applies the rotary embedding in the
  fused QKV-preprocessing of the attention kernel (tensorrt_llm/_torch/attention_backend/trtllm.py),
  where vLLM and SGLang launch ``rotary_embedding`` as a kernel of its own.

Training keeps every kernel (Megatron's and PyTorch's eager forward; costmodel.transformer).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Fusion:
    """The kernel fusions an inference engine applies to each layer (module docstring)."""

    add_norm: bool = False          # residual add fused into the following RMSNorm
    allreduce_norm: bool = False    # TP all-reduce + residual add + RMSNorm as one kernel
    rope_in_attention: bool = False  # rotary embedding applied inside the attention kernel


UNFUSED = Fusion()
_VLLM = Fusion(add_norm=True)
_TRTLLM = Fusion(add_norm=True, allreduce_norm=True, rope_in_attention=True)
ENGINE_FUSION: dict[str, Fusion] = {"vllm": _VLLM, "sglang": _VLLM, "trtllm": _TRTLLM, "trtllm-bench": _TRTLLM}


def engine_fusion(engine: str | None) -> Fusion:
    """The fusions of ``engine`` (``replica.engine``); none for an unknown or absent engine."""
    return ENGINE_FUSION.get(engine or "", UNFUSED)
