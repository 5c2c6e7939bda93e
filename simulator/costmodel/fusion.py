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
- **Attention output quantized inside attention, FP8 context FMHA** (TensorRT-LLM): when the output
  projection runs an FP8 (per-tensor, row-wise or block-scaled) or NVFP4 GEMM, the attention module
  hands the attention op that GEMM's input scale (tensorrt_llm/_torch/modules/attention.py:
  ``if self.o_proj.has_fp8_qdq or self.o_proj.has_nvfp4 or self.o_proj.has_fp8_block_scales ...:
  out_scale = self.o_proj.inv_input_scale``), so attention writes FP8/FP4 output, and an FP8/FP4
  output selects the FP8 context FMHA (tensorrt_llm/_torch/attention_backend/trtllm.py: ``fp8_context_fmha
  = is_fp8_out or is_fp4_out or (kv_cache_quant_mode.has_fp8_kv_cache() and use_paged_context_fmha)``;
  the engine-builder path likewise, tensorrt_llm/bench/build/build.py ``use_fp8_context_fmha = True if
  quant_algo == QuantAlgo.FP8``). The prompt's attention then runs at the measured FP8 context-attention
  table's rate (0.70-0.87 of the BF16 table's time at 2k-16k tokens on H100, H200, B200, GB200), and the
  output quantization is not a kernel of its own. vLLM's and SGLang's FlashAttention/FlashInfer prefill
  stays 16-bit.

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
    fp8_context_attention: bool = False  # an FP8/FP4 output projection makes the prompt's attention FP8


UNFUSED = Fusion()
_VLLM = Fusion(add_norm=True)
_TRTLLM = Fusion(add_norm=True, allreduce_norm=True, rope_in_attention=True, fp8_context_attention=True)
ENGINE_FUSION: dict[str, Fusion] = {"vllm": _VLLM, "sglang": _VLLM, "trtllm": _TRTLLM, "trtllm-bench": _TRTLLM}


def engine_fusion(engine: str | None) -> Fusion:
    """The fusions of ``engine`` (``replica.engine``); none for an unknown or absent engine."""
    return ENGINE_FUSION.get(engine or "", UNFUSED)
