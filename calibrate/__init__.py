"""GPU/CPU microbenchmarks that write calibrated hardware profiles (the only package importing torch).

Not implemented yet: see issue 9. The simulator reads calibrated tables through
``hardware_profiles`` (``efficiency.gemm_table`` / ``memory_table``) already.
"""
