"""``polycrack demo``: the built-in default case end to end.

Meshes the demo particle (the shipped case ``demo``, linked from examples/demo.yaml: synthetic CT-like particle, ~50 grains, binder
shell), runs the full C/50 CCCV charge with fracture, and writes the run directory and figures:
voltage vs capacity, damaged fraction vs voltage, radial damage, and mid-plane renders of φ.
Also plots the material laws (OCP, lattice strains) of the parameter set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cases import case_path
from ..config import load_case
from ..physics import materials as mat
from .summary import material_summary


def demo_case_path() -> Path:
    """The demo case file shipped with the package (``examples/demo.yaml`` links to it)."""
    return case_path("demo")


def plot_materials(rc, out: Path) -> Path:
    """OCP U(x) and eps_a, eps_c(x) of a resolved case -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = rc.params
    lat = mat.LatticeStrains.from_params(p, rc.lattice_table_path)
    x = np.linspace(0.1, 1.0, 901)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ocp = p.electrochemistry.ocp
    a1.plot(x, mat.ocp_V(x, model=ocp), "k-")
    a1.axhline(4.5, color="grey", ls=":")
    a1.axvline(mat.x_at_voltage(4.5, ocp), color="grey", ls=":")
    a1.set(xlabel="x = c/c_max", ylabel="U (V vs Li/Li+)", title=f"OCP ({ocp})")
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


def demo_caption(run_dir: Path) -> str:
    """The numbers of a finished demo run, as the README's figure caption quotes them.

    Args:
        run_dir: the demo's run directory (``demo_out/run``).

    Returns:
        One sentence: tets of the bundle, accepted steps, voltage of the first φ ≥ 0.95 and the
        damaged volume (%) and crack area Γ_l (µm², when recorded) at the end.
    """
    import json

    from ..post.plots import read_table
    from ..post.timeseries import damage_onset

    ts = read_table(run_dir / "timeseries.csv")
    mesh = json.loads((run_dir / "mesh" / "mesh.json").read_text())
    tets = mesh["tets"]
    first = damage_onset(ts)["first_step_voltage_V"]
    onset = f"{first:.3f} V" if first is not None else "never"
    text = (
        f"{tets} tets, {len(ts['step'])} steps, damage onset (first φ ≥ 0.95) at {onset}, "
        f"damaged volume at the end {100 * ts['damage_fraction'][-1]:.2f} %"
    )
    if "crack_area_um2" in ts:
        text += f", crack area Γ_l {ts['crack_area_um2'][-1]:.1f} µm²"
    return text


def run_demo(out: Path, sets: list[str] | None = None) -> int:
    """Run the demo case into ``out/run`` and write its figures; exit code."""
    from mpi4py import MPI

    from ..post.plots import plot_run, summary_figure
    from .run import Run

    comm = MPI.COMM_WORLD
    rc = load_case(demo_case_path(), sets)
    if comm.rank == 0:
        print(material_summary(rc))
        plot_materials(rc, out)
    rec = Run(rc, out / "run", comm, overwrite=True).run()  # the demo owns its folder
    if comm.rank == 0:
        paths = plot_run(out / "run", out / "run" / "figures")
        render = out / "run" / "figures" / "phi_4.50V.png"
        paths.append(summary_figure(out / "run", out / "demo.png", render))
        st = rec["steps"]
        print(
            f"demo {rec['status']}: {st['accepted']} steps in {rec['wall_time_s']['total_s']:.0f} s "
            f"({rec['mesh']['unknowns']} unknowns on {comm.size} rank(s))"
        )
        print(f"caption: {demo_caption(out / 'run')}")
        print("figures:")
        for p in sorted({*paths, *(out / "run" / "figures").glob("phi_*.png")}):
            print(f"  {p}")
    return int(rec.get("exit_code", 0))
