"""Software-stack constants: costs that belong to the framework and host, not the GPU.

``DISPATCH_US``: host time to issue one modelled kernel in eager PyTorch + Megatron/DeepSpeed
(Python, autograd, framework hooks; each modelled op stands for ~2-3 real kernels such as casts,
transposes and bias adds). Small layers become host-bound: the vTrain single-node measurements
(A100, Megatron-DeepSpeed) show ~3.5 ms per layer and micro-batch for hidden 1024 whatever the
tensor-parallel degree, far above the GPU work. The value is the best of a grid fitted jointly with
``efficiency.elementwise`` on the MAPE over all 1,440 single-node rows (``python bench/fit_stack.py``;
at elementwise 0.7 with A100's measured norm/activation/RoPE shares: 65 us -> 9.9%, 70 -> 8.3%,
75 -> 9.3%); the multi-node
and Korthikanti sets are held out. It is a default: scenarios override ``training.dispatch_us``,
and calibration measures it on the user's host.
"""

DISPATCH_US = 70.0
# Megatron's default gradient bucket for overlapped data-parallel reduction (40M parameters).
GRAD_BUCKET_PARAMS = 40e6
# CUDA context, cuBLAS workspace and NCCL buffers held outside the tensors the model accounts for.
RUNTIME_RESERVE_GIB = 1.0
# HBM traffic of one mixed-precision Adam step per parameter, summed over the passes Megatron-LM's
# optimizer makes over its fp32 main gradients (bytes read + written):
#   unscale by the loss scale and check for inf/nan (fp16 only)  4 + 4
#   gradient L2 norm for clipping                                 4
#   Adam: read master weight, grad, m, v; write master, m, v      16 + 12
#   copy fp32 master weights into the 16-bit model weights         4 + 2
#   zero the main-gradient buffer for the next iteration               4
# DeepSpeed's FP16 optimizer makes the same passes over a flattened copy (within a few bytes).
OPTIMIZER_BYTES_PER_PARAM = {"fp16": 50.0, "bf16": 42.0, "fp32": 42.0}
