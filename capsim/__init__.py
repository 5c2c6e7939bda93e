"""capsim, the application: the ``capsim`` command line (``capsim.cli``) wires the simulator
(``simulator``), the torch microbenchmarks (``calibrate``) and the terminal UI (``tui``).

The library is ``simulator``; this package is the composition root that may import all three.
``capsim.calibrate`` measures the local device (it needs torch; the simulator never imports it).
"""

from __future__ import annotations

from typing import Any


def calibrate(**kwargs: Any) -> dict[str, Any]:
    """Measure this device with torch microbenchmarks and return a calibrated profile document
    (see ``calibrate.run.calibrate``). Needs torch: ``pip install 'capsim[calibrate]'``."""
    from calibrate.run import calibrate as _calibrate

    return _calibrate(**kwargs)


__all__ = ["calibrate"]
