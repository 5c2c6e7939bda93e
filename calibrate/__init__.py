"""Calibration: torch microbenchmarks on the local GPU (or CPU) that write a calibrated hardware profile.

The only package that imports torch. At import time it needs nothing beyond torch, numpy and PyYAML,
so it runs on a bare CUDA image (``python -m calibrate --shapes model.yaml``); the simulator is
imported only for ``--validate``. Every number it writes is a measurement with its spread.
"""

from .run import calibrate

__all__ = ["calibrate"]
