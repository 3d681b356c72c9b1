"""Is the damage of the reduced Parks 2023 case really on grain boundaries? (issue 6, REPORT.md §4)

The run's "GB share" counts damaged volume where h = (1 - gamma)^2 >= 0.5. With l_gamma = 1.2 µm
and grains of 3 µm that region is almost the whole particle, so a share of 1.0 says little. This
script repeats the calibrated case as a quasi-static uniform-x sweep along the OCP (as
calibrate.py; it matches the coupled run to ~0.01 in phi_max) up to ``--v-max`` and reports, for
several thresholds t, the particle volume fraction with h >= t, the share of the damaged volume
(phi >= 0.95) with h >= t and their ratio (enrichment > 1: damage concentrates towards GBs).

  .venv/bin/python benchmarks/parks2023/gb_localisation.py [--v-max 4.2]
Writes benchmarks/parks2023/results/gb_localisation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import ufl
from dolfinx import fem
from mpi4py import MPI

HERE = Path(__file__).resolve().parent

from calibrate import CASE, ROOT, load_domain, voltages  # noqa: E402
from polycrack import config  # noqa: E402
from polycrack.physics import materials as mat  # noqa: E402
from polycrack.physics.fracture import gb_indicator  # noqa: E402
from polycrack.physics.mechanics import MechanicsModel  # noqa: E402
from polycrack.post.metrics import DamageMetrics  # noqa: E402
from polycrack.problems.quasistatic import FractureSettings, QuasiStaticFracture  # noqa: E402

THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.99)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--v-max", type=float, default=4.2)
    ap.add_argument("--dv", type=float, default=0.05)
    ap.add_argument("--mesh", type=Path, default=ROOT / "runs" / "parks2023" / "mesh_reduced")
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    load0 = list(os.getloadavg())
    t0 = time.perf_counter()
    dom = load_domain(CASE, args.mesh, comm)
    rc = config.load_case(CASE)
    p = rc.params
    qs = QuasiStaticFracture(
        dom,
        MechanicsModel.from_params(p, rc.lattice_table_path),
        FractureSettings.from_params(p),
        tol=1e-3,
        prefix="gbl_",
    )
    for V in voltages(args.v_max, args.dv):
        qs.set_x(float(mat.x_at_voltage(V)))
        r = qs.solve_step()
        if comm.rank == 0:
            print(
                f"{V:.3f} V phi_max {r['phi_max']:.3f} damage {r['damage_fraction']:.5f}",
                flush=True,
            )
    sm = dom.submesh
    dx = ufl.dx(domain=sm, metadata={"quadrature_degree": 2})
    vol = comm.allreduce(fem.assemble_scalar(fem.form(fem.Constant(sm, 1.0) * dx)), op=MPI.SUM)
    rows = []
    for t in THRESHOLDS:
        ind = ufl.conditional(ufl.ge(gb_indicator(qs.gamma), t), 1.0, 0.0)
        vf = comm.allreduce(fem.assemble_scalar(fem.form(ind * dx)), op=MPI.SUM) / vol
        m = DamageMetrics(dom, qs.phi, qs.gamma, h_threshold=t).compute()
        share = m["damage_gb_share"]
        rows.append(
            {
                "h_threshold": t,
                "particle_volume_fraction": vf,
                "damage_share": share,
                "phi_weighted_share": m["damage_gb_share_phi_weighted"],
                "enrichment": share / vf if vf > 0 else None,
            }
        )
    out = {
        "case": str(CASE.relative_to(ROOT)),
        "v_max": args.v_max,
        "damage_fraction": m["damage_fraction"],
        "radial_damage_fraction": m["radial_damage_fraction"],
        "rows": rows,
        "wall_s": time.perf_counter() - t0,
        "loadavg_start": load0,
        "loadavg_end": list(os.getloadavg()),
    }
    if comm.rank == 0:
        (HERE / "results" / "gb_localisation.json").write_text(json.dumps(out, indent=1))
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
