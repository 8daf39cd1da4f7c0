"""Where the checkout's own files are, for the helpers that run from a checkout."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample" / "diabetes.csv"  # the bundled sample: ten features, a target
SETTINGS_FILE = ROOT / "settings.toml"  # the shipped settings
# One row of the sample's ten features, in their order: a valid /predict body's X_test.
ROW = [0.038, 0.05, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]
