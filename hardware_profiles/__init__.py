"""Data package: spec-sheet GPU profiles, cloud prices, and calibrated profiles (``calibrated/``)."""

from pathlib import Path

PROFILE_DIR = Path(__file__).parent
