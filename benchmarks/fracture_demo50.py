"""3D demonstration: 50-grain sphere (R_p = 7 µm) in the binder shell, uniform x swept from x0 to
0.18, quasi-static mechanics + AT2 fracture (hybrid split, staggered), baseline Gc_GB < Gc_bulk
and two controls with Gc_GB = Gc_bulk: 50 J/m^2 (same bulk) and both equal to the baseline's G_eff
(same effective GB strength, weaker bulk). Writes benchmarks/results/fracture_demo50.json.

Coarse mesh (h ~ ``--h`` µm in the particle) with a correspondingly larger l = 2h (and l_gamma = l);
Gc_bulk = 50 J/m^2, Gc_GB = 5 J/m^2 as in the baseline set. The mesh comes from the meshing
package's bundle when available (``meshing.build_bundle``); otherwise a voxelised Voronoi
tessellation on a gmsh sphere-in-shell mesh (polycrack.verification.mech_meshes).

Run: python benchmarks/fracture_demo50.py [--h 0.6] [--dx 0.025]   (also under mpirun)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
from mpi4py import MPI

ROOT = Path(__file__).resolve().parent.parent

from polycrack import config  # noqa: E402
from polycrack.physics import materials as mat  # noqa: E402
from polycrack.physics import mechanics as M  # noqa: E402
from polycrack.physics.fracture import effective_gb_toughness  # noqa: E402
from polycrack.problems.quasistatic import FractureSettings, QuasiStaticFracture  # noqa: E402


def build_domain(h: float, seed: int, comm) -> tuple[M.ParticleDomain, str]:
    """Bundle-based domain if the meshing package provides it, else the test fallback."""
    try:
        from polycrack.meshing import build_bundle  # type: ignore[attr-defined]  # noqa: F401
        from polycrack.physics.domain import load_bundle  # type: ignore[import-not-found]  # noqa: F401

        have_bundle = True
    except ImportError:
        have_bundle = False
    if have_bundle and os.environ.get("POLYCRACK_DEMO50_FALLBACK") != "1":
        from polycrack.meshing import build_bundle
        from polycrack.physics.domain import load_bundle

        geometry = config.GeometryConfig.model_validate(
            {
                "particle": {"source": "sphere", "diameter_um": 14.0},
                "grains": {"count": 50, "seed": seed},
                "binder_outer_diameter_um": 20.0,
                "mesh": {"particle_size_um": h, "binder_size_um": 2.0},
            }
        )
        out = ROOT / "benchmarks" / "results" / "_demo50_bundle"
        path = build_bundle(geometry, out) if comm.rank == 0 else None
        path = comm.bcast(path, root=0)
        return M.ParticleDomain.from_domain(load_bundle(path, comm)), "mesh bundle"
    from polycrack.verification.mech_meshes import voronoi_sphere

    msh, ct, ft, axes = voronoi_sphere(50, 7.0, 10.0, h, 2.0, seed=seed, comm=comm)
    return M.ParticleDomain.build(msh, ct, ft, axes), "voxelised Voronoi fallback"


def _clean(obj):
    """NaN -> None so the JSON is strict (jq, JavaScript)."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def first_damage(rows: list[dict]) -> dict:
    """x where phi_max first reaches 0.95 (at a node) and where the damaged volume (phi >= 0.95
    at quadrature points) first becomes positive, with its GB share then."""
    x_node = next((r["x"] for r in rows if r["phi_max"] >= 0.95), None)
    first = next((r for r in rows if r["damage_fraction"] > 0), None)
    return {
        "x_first_phi_0p95": x_node,
        "x_first_damaged_volume": first["x"] if first else None,
        "damage_gb_share_at_first_damage": first["damage_gb_share"] if first else None,
        "damage_gb_share_phi_weighted_at_first_damage": (
            first["damage_gb_share_phi_weighted"] if first else None
        ),
    }


def run(dom, Gc_bulk, Gc_gb, l, xs, log) -> dict:
    p, _ = config.load_parameters(config.find_parameter_set("nmc811_parks2023"))
    lat = mat.LatticeStrains.from_params(p, config._params.PARAMS_DIR / p.mechanics.lattice_table)
    model = M.MechanicsModel(
        M.ElasticModuli(150.0, 0.3),
        M.ElasticModuli(0.3, 0.3),
        M.StrainLawUFL(lat),
        0.9084,
        "hybrid",
        1e-7,
    )
    t0 = time.perf_counter()
    qs = QuasiStaticFracture(
        dom, model, FractureSettings(Gc_bulk, Gc_gb, l, l), tol=1e-3, prefix=f"demo{Gc_gb}_"
    )
    setup = time.perf_counter() - t0
    rows = []
    for x in xs:
        qs.set_x(float(x))
        r = qs.solve_step()
        s1 = qs.sigma1_max_GPa()
        row = {
            "x": float(x),
            "eps_a": float(lat.eps_a(x)),
            "eps_c": float(lat.eps_c(x)),
            "damage_fraction": r["damage_fraction"],
            "damage_gb_share": r["damage_gb_share"],
            "damage_gb_share_phi_weighted": r["damage_gb_share_phi_weighted"],
            "phi_mean": r["phi_mean"],
            "phi_max": r["phi_max"],
            "sigma1_max_GPa": s1,
            "radial_damage_fraction": r["radial_damage_fraction"],
            "staggered_iterations": r["iterations"],
            "step_time_s": r["time_s"],
        }
        rows.append(row)
        log(
            f"  x={x:.4f} it={r['iterations']:3d} D={r['damage_fraction']:.4f} "
            f"gb={r['damage_gb_share']:.3f} gb_w={r['damage_gb_share_phi_weighted']:.3f} phimax={r['phi_max']:.3f} s1={s1:.3f} GPa "
            f"({r['time_s']:.1f} s)"
        )
    return {
        "Gc_bulk_J_m2": Gc_bulk * 1e3,
        "Gc_GB_J_m2": Gc_gb * 1e3,
        "G_eff_GB_J_m2": effective_gb_toughness(Gc_bulk * 1e3, Gc_gb * 1e3, l, l),
        "sigma_c_bulk_GPa": float(mat.at2_strength_Pa(150e9, Gc_bulk * 1e3, l * 1e-6) / 1e9),
        "sigma_c_GB_effective_GPa": float(
            mat.at2_strength_Pa(150e9, effective_gb_toughness(Gc_bulk, Gc_gb, l, l) * 1e3, l * 1e-6)
            / 1e9
        ),
        **first_damage(rows),
        "final": rows[-1],
        "setup_s": setup,
        "solve_s": sum(r["step_time_s"] for r in rows),
        "steps": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--h", type=float, default=0.6, help="particle mesh size, µm")
    ap.add_argument("--dx", type=float, default=0.025, help="x decrement per step")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fracture_demo50.json"))
    ap.add_argument("--runs", default="", help="comma list of run names to do (default: all)")
    ap.add_argument("--resummarise", action="store_true", help="recompute summary fields of --out")
    a = ap.parse_args()
    comm = MPI.COMM_WORLD
    if a.resummarise:
        if comm.rank == 0:
            res = json.loads(Path(a.out).read_text())
            for r in res["runs"].values():
                r.update(first_damage(r["steps"]))
            Path(a.out).write_text(json.dumps(_clean(res), indent=1, allow_nan=False))
        return

    def log(msg):
        if comm.rank == 0:
            print(msg, flush=True)

    t0 = time.perf_counter()
    dom, source = build_domain(a.h, a.seed, comm)
    ncell = dom.mesh.topology.index_map(3).size_global
    npart = dom.submesh.topology.index_map(3).size_global
    log(
        f"mesh ({source}): {ncell} cells, {npart} in the particle, {time.perf_counter() - t0:.1f} s"
    )
    l = 2.0 * a.h
    xs = np.arange(0.9084 - a.dx, 0.18 - 1e-9, -a.dx)
    xs = np.append(xs, 0.18) if xs[-1] > 0.18 + 1e-9 else xs
    result = {
        "description": __doc__.split("\n\n")[0],
        "mesh_source": source,
        "cells": ncell,
        "particle_cells": npart,
        "h_particle_um": a.h,
        "l_um": l,
        "l_gamma_um": l,
        "split": "hybrid",
        "mpi_ranks": comm.size,
        "loadavg_start": os.getloadavg(),
        "runs": {},
    }
    g_eff = effective_gb_toughness(0.05, 0.005, l, l)  # GPa µm
    for name, bulk, gb in (
        ("baseline_GcGB_5", 0.05, 0.005),
        ("control_GcGB_eq_bulk", 0.05, 0.05),
        ("control_uniform_Gc_eq_Geff", g_eff, g_eff),
    ):
        if a.runs and name not in a.runs.split(","):
            continue
        log(f"run {name}: Gc_bulk = {bulk * 1e3:g} J/m^2, Gc_GB = {gb * 1e3:g} J/m^2, l = {l:g} µm")
        result["runs"][name] = run(dom, bulk, gb, l, xs, log)
    result["loadavg_end"] = os.getloadavg()
    result["wall_s"] = time.perf_counter() - t0
    result["peak_rss_MB_rank0"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if comm.rank == 0:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(_clean(result), indent=1, allow_nan=False))
        for name, r in result["runs"].items():
            f = r["final"]
            print(
                f"{name}: phi_max >= 0.95 first at x = {r['x_first_phi_0p95']}, damaged volume "
                f"first at x = {r['x_first_damaged_volume']} (GB share "
                f"{r['damage_gb_share_at_first_damage']}); at x = 0.18 damage {f['damage_fraction']:.4f}, "
                f"GB share {f['damage_gb_share']:.3f} (phi-weighted "
                f"{f['damage_gb_share_phi_weighted']:.3f})"
            )
        print(f"wall {result['wall_s']:.0f} s -> {a.out}")


if __name__ == "__main__":
    main()
