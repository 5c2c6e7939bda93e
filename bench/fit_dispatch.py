"""Fit the one software-stack constant, host dispatch time per modelled kernel, on the vTrain
single-node set (where small layers are host-bound), and report it. The multi-node set and
Korthikanti Table 5 are not used for the fit; validate_training.py reports them as held out.

Usage: python bench/fit_dispatch.py [--reference DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

import simulator.training.simulate as sim  # noqa: E402
from bench.validate_training import vtrain  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    ap.add_argument("--grid", default="0,20,40,60,80,100,120")
    a = ap.parse_args()
    rows = []
    for us in [float(x) for x in a.grid.split(",")]:
        sim.DISPATCH_US = us
        d = vtrain(a.reference / "vtrain_a100_single_node.csv", multi=False)
        rows.append({"dispatch_us": us, "mape_pct": d.error_pct.abs().mean(), "bias_pct": d.error_pct.mean()})
        print(rows[-1], flush=True)
    best = min(rows, key=lambda r: r["mape_pct"])
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"best dispatch_us on vTrain single-node: {best['dispatch_us']:.0f} (MAPE {best['mape_pct']:.1f}%)")


if __name__ == "__main__":
    main()
