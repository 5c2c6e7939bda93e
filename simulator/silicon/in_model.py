"""How much slower a kernel runs inside a model than the same kernel timed alone.

Isolated-kernel tables (aiconfigurator's collectors time one kernel in a loop) see warm caches, no
launch gaps and no concurrent communication; inside a model's forward the same GEMM is slower. The
factor per kernel class is measured, not fitted to an end-to-end data set: Vidur's in-model operator
times (``shared/reference/vidur_mlp_op_profiles_a100_h100.csv.gz``, CUDA-timed inside real models)
divided by the isolated table's time for the same shape, median over the A100 rows, and checked on
the H100 rows. ``bench/validate_kernels.py --derive`` recomputes it and prints both.
"""

from __future__ import annotations

# kernel class -> in-model time / isolated time (1.0: no measured gap)
IN_MODEL: dict[str, float] = {"gemm": 1.0}


def in_model_factor(kind: str) -> float:
    return IN_MODEL.get(kind, 1.0)
