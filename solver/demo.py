"""``polycrack demo``: the built-in default case end to end.

Until the coupled solver lands (coupled-run issue) the demo validates the default case and plots the
material laws it would use: OCP and lattice strains versus x, with the MODEL.md landmarks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import materials as mat
from .config import load_case
from .summary import material_summary

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def demo_case_path() -> Path:
    """The demo case file shipped in ``examples/``."""
    return EXAMPLES_DIR / "demo.yaml"


def plot_materials(rc, out: Path) -> Path:
    """OCP U(x) and eps_a, eps_c(x) of a resolved case -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = rc.params
    lat = mat.LatticeStrains.from_params(p, rc.lattice_table_path)
    x = np.linspace(0.1, 1.0, 901)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    a1.plot(x, mat.ocp_V(x), "k-")
    a1.axhline(4.5, color="grey", ls=":")
    a1.axvline(mat.x_at_voltage(4.5), color="grey", ls=":")
    a1.set(xlabel="x = c/c_max", ylabel="U (V vs Li/Li+)", title="OCP (Chen 2020)")
    a1.invert_xaxis()
    a2.plot(x, lat.eps_a(x), label="ε_a")
    a2.plot(x, lat.eps_c(x), label="ε_c")
    a2.plot(lat.x_data, lat.eps_c_data, "k.", ms=3, label="Märker 2019 (c)")
    a2.set(xlabel="x = c/c_max", ylabel="lattice strain", title=f"mapping: {lat.mapping}")
    a2.invert_xaxis()
    a2.legend()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "materials.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_demo(out: Path) -> int:
    """Validate the demo case, print its summary and write the material figure."""
    rc = load_case(demo_case_path())
    print(material_summary(rc))
    path = plot_materials(rc, out)
    print(f"demo: wrote {path}")
    print("demo: the coupled charge simulation joins this command with the coupled-run issue.")
    return 0
