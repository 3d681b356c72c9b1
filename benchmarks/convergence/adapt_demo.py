"""Adaptive refinement against uniform meshes on the demo particle (issue 24).

The adaptive run starts from the convergence study's base mesh (h = l = 0.8 µm, level 0) and
refines, during the charge, where φ or the local-AT2 predictor marks cells, to the rule's
h = l/2 (``geometry.mesh.adapt``, docs/adaptivity.md); everything else is the study's case
(quasi-static mode, τ = 10 s, Gc 50 / 5 J/m² at l = 0.8 µm; study.py). It is compared with the
study's uniform runs at level 0 (h = l) and level 1 (h = l/2, the reference): onset, Γ and the
φ ≥ 0.95 volume at 4.0 / 4.2 / 4.5 V, cells and unknowns, Newton iterations and wall time.

    mpirun -n 2 python benchmarks/convergence/adapt_demo.py --study /work/conv/study \
        --work /work/adapt_demo [--set solver.linear=mumps_lagged] [--summary-only]

The adaptive run is resumable (an interrupted one continues from its checkpoint). The uniform
runs are read from ``--study`` as far as they got. Writes benchmarks/results/adapt_demo.json and
adapt_demo.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
from mpi4py import MPI
from polycrack.config import load_case
from polycrack.post.plots import read_table
from polycrack.workflow.exports import git_commit
from polycrack.workflow.run import CoupledRun
from study import DEMO, REPO, VOLTAGES, spec, summarise

L_UM, TAU_S = 0.8, 10.0
#: the adaptive settings measured (docs/adaptivity.md), by run label
ADAPT = {
    # mark where φ > 0.8 only
    "adapt_phi0.8_l0.8_tau10_seed1": {
        "phi_threshold": 0.8,
        "predictor_threshold": None,
        "buffer_layers": 1,
        "h_over_l": 0.5,
    },
    # the same with the history moved by the clipped linear fit instead of the parent maximum
    "adapt_phi0.8_fit_l0.8_tau10_seed1": {
        "phi_threshold": 0.8,
        "predictor_threshold": None,
        "buffer_layers": 1,
        "h_over_l": 0.5,
        "history_transfer": "fit",
    },
    # ... or where the local AT2 damage of 1.5 x max(H, ψ⁺) > 0.8 (stopped at 3.81 V: it had
    # refined 87 % of the uniform level-1 mesh's cells)
    "adapt_l0.8_tau10_seed1": {
        "phi_threshold": 0.8,
        "predictor_threshold": 0.8,
        "predictor_growth": 1.5,
        "buffer_layers": 1,
        "h_over_l": 0.5,
    },
    # the same with the predicted damage solved as the AT2 phase field of the drive on the mesh
    # (predictor: phase_field) instead of the pointwise value (stopped at 3.99 V: Γ still the
    # coarse mesh's, 50 % of the level-1 cells; run with --set solver.linear=mumps_lagged)
    "adapt_pf_l0.8_tau10_seed1": {
        "phi_threshold": 0.8,
        "predictor_threshold": 0.8,
        "predictor_growth": 1.5,
        "buffer_layers": 1,
        "h_over_l": 0.5,
        "predictor": "phase_field",
    },
}


def adaptive_sets(label: str) -> list[str]:
    keys = (
        f"geometry.mesh.adapt.{k}={'null' if v is None else v}" for k, v in ADAPT[label].items()
    )
    return [*spec(0, L_UM, TAU_S)[1], *keys]


def run_adaptive(work: Path, label: str, extra: list[str], comm) -> None:
    run_dir = work / label
    if (run_dir / "run.json").is_file():
        status = json.loads((run_dir / "run.json").read_text()).get("status")
        if status in ("finished", "failed"):
            return
    rc = load_case(DEMO, [*adaptive_sets(label), *extra])
    resume = (run_dir / "checkpoint.npz").is_file()
    allow = tuple(kv.split("=")[0] for kv in extra)
    CoupledRun(rc, run_dir, comm, restart=resume, overwrite=not resume, allow_changes=allow).run()


def adapt_columns(run_dir: Path) -> dict:
    """Cells, unknowns and mesh changes of a run (the adaptive one changes its mesh)."""
    rec = json.loads((run_dir / "run.json").read_text())
    ts = read_table(run_dir / "timeseries.csv")
    changes = rec.get("adapt", {}).get("changes", [])
    out = {
        "cells_end": int(ts["cells"][-1]) if "cells" in ts else rec["mesh"]["cells"],
        "unknowns_end": int(ts["unknowns"][-1]) if "unknowns" in ts else rec["mesh"]["unknowns"],
        "mesh_changes": len(changes),
        "mesh_changes_redo": sum(bool(c.get("redo")) for c in changes),
        "mesh_change_s": rec.get("wall_time_s", {}).get("mesh_change_s"),
        "changes": changes,
    }
    upto = ts["voltage_V"] <= 4.0
    out["steps_to_4.0V"] = int(upto.sum())
    out["newton_accepted_to_4.0V"] = int(np.nansum(ts["newton_iterations"][upto]))
    for lo, hi in ((3.8, 3.9), (3.9, 4.0)):
        win = (ts["voltage_V"] > lo) & (ts["voltage_V"] <= hi)
        out[f"steps_{lo}_{hi}V"] = int(win.sum())
        out[f"median_dt_{lo}_{hi}V_s"] = float(np.median(ts["dt_s"][win])) if win.any() else None
    if "cells" in ts:
        out["cells_curve"] = {
            "voltage_V": ts["voltage_V"].tolist(),
            "cells": ts["cells"].tolist(),
            "unknowns": ts["unknowns"].tolist(),
        }
    return out


def compare(rows: dict) -> dict:
    """Relative differences of level 0 and of the adaptive run against level 1."""
    ref = rows.get("uniform_l1")
    out = {}
    if ref is None:
        return out
    for name in ("uniform_l0", *ADAPT):
        r = rows.get(name)
        if r is None:
            continue
        d = {"onset_mV": None}
        a, b = r["onset"].get("interpolated_V"), ref["onset"].get("interpolated_V")
        if a is not None and b is not None:
            d["onset_mV"] = 1e3 * (a - b)
        for v in VOLTAGES:
            for key in ("crack_area_um2", "damage"):
                a, b = r.get(f"{key}_{v:.1f}V"), ref.get(f"{key}_{v:.1f}V")
                ok = a is not None and b is not None and a == a and b == b and b != 0
                d[f"{key}_{v:.1f}V_rel"] = (a - b) / b if ok else None
        d["unknowns_ratio_end"] = r["unknowns_end"] / ref["unknowns_end"]
        out[name] = d
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, (name, r) in enumerate(res["rows"].items()):
        c, col = r["curve"], f"C{i}"
        ax[0].plot(c["voltage_V"], c["crack_area_um2"], color=col, label=name)
        ax[1].plot(c["voltage_V"], 100 * np.asarray(c["damage_fraction"]), color=col, label=name)
        cc = r.get("cells_curve")
        if cc and np.ptp(np.nan_to_num(cc["cells"])) > 0 and name.startswith("adapt"):
            ax[2].plot(cc["voltage_V"], cc["cells"], color=col, label=name)
        else:  # a uniform mesh (older segments lack the column)
            ax[2].axhline(
                r["cells_end"], color=col, ls="--", lw=1, label=f"{name} ({r['cells_end']})"
            )
    ax[0].set(xlabel="voltage (V)", ylabel="crack area Γ (µm²)")
    ax[1].set(xlabel="voltage (V)", ylabel="φ ≥ 0.95 volume (%)")
    ax[2].set(xlabel="voltage (V)", ylabel="cells")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle("demo particle, l = 0.8 µm: adaptive (h = l → l/2 where marked) vs uniform")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--study", type=Path, default=REPO / "runs" / "convergence")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "adapt_demo")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE for the adaptive run")
    ap.add_argument("--run", choices=list(ADAPT), default=next(iter(ADAPT)))
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    t0 = time.perf_counter()
    if not args.summary_only:
        run_adaptive(args.work, args.run, args.set, comm)
    if comm.rank != 0:
        return
    dirs = {
        "uniform_l0": (spec(0, L_UM, TAU_S), args.study),
        "uniform_l1": (spec(1, L_UM, TAU_S), args.study),
        **{label: ((label, adaptive_sets(label)), args.work) for label in ADAPT},
    }
    rows = {}
    for name, ((label, sets), base) in dirs.items():
        d = base / label
        if (d / "timeseries.csv").is_file():
            rows[name] = summarise(label, sets, d) | adapt_columns(d)
    out = REPO / "benchmarks" / "results" / "adapt_demo.json"
    res = {
        "benchmark": "adapt_demo",
        "machine": {"node": platform.node(), "cpus": os.cpu_count()},
        "git_commit": git_commit(),
        "loadavg_end": os.getloadavg(),
        "wall_s_this_call": time.perf_counter() - t0,
        "case": "examples/demo.yaml with the convergence study's overrides (study.py)",
        "adapt": ADAPT,
        "extra_sets": args.set,
        "rows": rows,
        "against_uniform_l1": compare(rows),
    }
    out.write_text(json.dumps(res, indent=1))
    plot(res, out.with_suffix(".png"))
    print(f"wrote {out}")
    print(json.dumps(res["against_uniform_l1"], indent=1))


if __name__ == "__main__":
    main()
