"""Registry of the lattice-strain tables in ``params/data/`` (docs/strain-data.md).

Each table ``nmc811_lattice_<key>.tsv`` has a sidecar ``nmc811_lattice_<key>.yaml`` with its
provenance (citation, DOI, how the numbers were obtained, their error, which rows are published and
which interpolated) and the published landmarks the table must reproduce. A case selects a table
by ``mechanics.lattice_data: <key>``; unset, ``mechanics.lattice_table`` (Märker 2019) is used as
before. NumPy/YAML only: no DOLFINx.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import polycrack.params as _params
import yaml

#: the table a case uses when ``mechanics.lattice_data`` is unset
#: (``mechanics.lattice_table: data/nmc811_lattice_maerker2019.tsv``)
DEFAULT_KEY = "maerker2019"
#: landmark quantities a sidecar may state (evaluated by :func:`evaluate_landmark`)
QUANTITIES = (
    "a_A",
    "c_A",
    "V_A3",
    "eps_a",
    "eps_c",
    "delta_eps",
    "c_rel_max",
    "V_rel_start",
    "eps_c_max",
    "delta_eps_max",
)


@dataclass(frozen=True)
class StrainDataset:
    """One registry entry: ``key``, the table file and the sidecar's mapping (``meta``)."""

    key: str
    table: Path
    sidecar: Path
    meta: dict = field(compare=False, repr=False)

    @property
    def citation(self) -> str:
        return str(self.meta.get("citation", ""))

    @property
    def doi(self) -> str:
        return str(self.meta.get("doi", ""))

    @property
    def landmarks(self) -> list[dict]:
        return list(self.meta.get("landmarks", []))


def _read_sidecar(path: Path) -> StrainDataset:
    meta = yaml.safe_load(path.read_text())
    if not isinstance(meta, dict) or "key" not in meta or "table" not in meta:
        raise ValueError(f"{path}: a strain-data sidecar needs 'key' and 'table'")
    for lm in meta.get("landmarks", []):
        if lm.get("quantity") not in QUANTITIES:
            raise ValueError(
                f"{path}: landmark quantity {lm.get('quantity')!r} (allowed: {', '.join(QUANTITIES)})"
            )
    return StrainDataset(str(meta["key"]), path.parent / meta["table"], path, meta)


@lru_cache(maxsize=4)
def _registry(data_dir: Path) -> dict[str, StrainDataset]:
    out = {}
    for path in sorted(data_dir.glob("nmc811_lattice_*.yaml")):
        ds = _read_sidecar(path)
        out[ds.key] = ds
    return out


def available(data_dir: Path = _params.DATA_DIR) -> list[str]:
    """The registry keys, sorted."""
    return sorted(_registry(Path(data_dir)))


def get(key: str, data_dir: Path = _params.DATA_DIR) -> StrainDataset:
    """The entry ``key``; ValueError naming the allowed keys (and the closest) otherwise."""
    reg = _registry(Path(data_dir))
    if key not in reg:
        close = difflib.get_close_matches(str(key), list(reg), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(
            f"unknown lattice data {key!r}{hint} (available: {', '.join(sorted(reg))})"
        )
    return reg[key]


def key_for_table(table: Path, data_dir: Path = _params.DATA_DIR) -> str | None:
    """The registry key whose table is ``table`` (same file), or None for a table of one's own."""
    try:
        target = Path(table).resolve()
    except OSError:
        return None
    for ds in _registry(Path(data_dir)).values():
        if ds.table.resolve() == target:
            return ds.key
    return None


def _volume_A3(a, c):
    """Hexagonal cell volume (sqrt(3)/2) a^2 c in Å^3."""
    return np.sqrt(3.0) / 2.0 * a * a * c


def evaluate_landmark(lattice, landmark: dict) -> tuple[float, float | None]:
    """(value, x) of a sidecar landmark on a :class:`polycrack.physics.materials.LatticeStrains` (direct).

    At a given ``x``: ``a_A``, ``c_A`` (Å), ``V_A3`` (Å^3), ``eps_a``, ``eps_c``, ``delta_eps``,
    ``c_rel_max`` (c(x)/max c - 1) and ``V_rel_start`` (V(x)/V(x = 1) - 1). Maxima: ``eps_c_max``
    and ``delta_eps_max`` return the maximum and the largest x where it is attained.
    """
    q = landmark["quantity"]
    xd = lattice.x_data
    if q in ("eps_c_max", "delta_eps_max"):
        grid = np.unique(np.concatenate([xd, np.linspace(xd.min(), xd.max(), 20001)]))
        f = lattice.eps_c(grid) if q == "eps_c_max" else lattice.delta_eps(grid)
        m = f.max()
        return float(m), float(grid[f >= m - 1e-12].max())
    x = float(landmark["x"])
    a = lattice.a_ref_A * (1.0 + lattice.eps_a(x))
    c = lattice.c_ref_A * (1.0 + lattice.eps_c(x))
    if q == "a_A":
        return float(a), x
    if q == "c_A":
        return float(c), x
    if q == "V_A3":
        return float(_volume_A3(a, c)), x
    if q == "eps_a":
        return float(lattice.eps_a(x)), x
    if q == "eps_c":
        return float(lattice.eps_c(x)), x
    if q == "delta_eps":
        return float(lattice.delta_eps(x)), x
    if q == "c_rel_max":
        return float(c / (lattice.c_ref_A * (1.0 + lattice.eps_c_data.max())) - 1.0), x
    # V_rel_start
    a1 = lattice.a_ref_A * (1.0 + lattice.eps_a(1.0))
    c1 = lattice.c_ref_A * (1.0 + lattice.eps_c(1.0))
    return float(_volume_A3(a, c) / _volume_A3(a1, c1) - 1.0), x
