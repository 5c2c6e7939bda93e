"""``python -m calibrate``: calibration on a bare CUDA image (torch, numpy, PyYAML only).

    python -m calibrate --device cuda --shapes model.yaml --dtype bf16 --out h100-cal.yaml

``--shapes`` is a YAML mapping of the model's shapes with ``ModelSpec``'s key names (layers, hidden,
heads, kv_heads, head_dim, ffn_hidden, vocab, max_positions, activation, norm; optionally
sliding_window, layer_types and moe), or with a ``layer_specs`` list (one
``simulator.layers.LayerSpec.to_dict()`` per layer); ``capsim calibrate --model NAME`` fills in both
from the catalog when the simulator is installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from .run import calibrate, write_profile


def _mapping(ap: argparse.ArgumentParser, path: str, flag: str) -> dict:
    """The YAML mapping in ``path``; any problem (missing, a folder, not UTF-8, bad YAML, not a mapping)
    is an argparse error: a one-line message and exit 2 (this module runs without the simulator)."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        ap.error(f"{flag} {path!r}: cannot be read as YAML ({type(e).__name__}: {str(e)[:200]})")
    if not isinstance(doc, dict):
        ap.error(f"{flag} {path!r}: expected a YAML mapping of keys, got {type(doc).__name__}")
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m calibrate")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--shapes", help="YAML file with the model's shapes")
    ap.add_argument("--base", help="spec-sheet profile YAML of this GPU (its peaks are kept)")
    ap.add_argument("--dtype", default="bf16", choices=["fp32", "bf16", "fp16", "fp8"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.device not in ("cuda", "cpu"):
        ap.error(f"--device {a.device!r}: use cuda or cpu")
    out = Path(a.out)
    if out.is_dir() or not (out.parent if str(out.parent) else Path(".")).is_dir():
        ap.error(f"--out {a.out!r}: give a file name in an existing folder")
    shapes = _mapping(ap, a.shapes, "--shapes") if a.shapes else None
    base = _mapping(ap, a.base, "--base") if a.base else None

    def show(what: str, frac: float) -> None:
        print(f"\r[{int(40 * frac) * '#':<40}] {what:<30}", end="", file=sys.stderr, flush=True)

    prof = calibrate(device=a.device, shapes=shapes, dtype=a.dtype, quick=a.quick, base_profile=base, progress=show)
    print(file=sys.stderr)
    print(write_profile(prof, a.out))


if __name__ == "__main__":
    main()
