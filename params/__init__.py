"""Shipped parameter sets (YAML) and material data tables.

Every parameter is stored as ``key_with_unit: {value: ..., source: ...}``; see
``params/nmc811_parks2023.yaml``. Tables live under ``params/data/``.
"""

from pathlib import Path

PARAMS_DIR: Path = Path(__file__).resolve().parent
DATA_DIR: Path = PARAMS_DIR / "data"


def available() -> list[str]:
    """Names of the shipped parameter sets (file stems)."""
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
