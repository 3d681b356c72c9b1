"""Fit the high-voltage branch of the ``chen2020_maerker2019`` OCP (writes the constants' JSON).

Why: the Chen 2020 OCP was fitted up to 4.2 V only; extrapolated, it reaches 4.5 V at x = 0.183,
while Märker et al. 2019's first charge (the lattice data we use) reaches 4.5 V at
q = 242.40 mA h/g, x = 1 - q/275.506 = 0.120. This script keeps Chen 2020 unchanged where it
was fitted (U <= 4.2 V) and replaces it below the join x_j = U_chen^-1(4.2 V) by the quadratic

    U(x) = 4.2 V + s_j (x - x_j) + k (x - x_j)^2,      x < x_j,

with s_j = U_chen'(x_j) (C1 at the join) and k fitted so that U(x_e) = 4.5 V at Märker's end
of first charge. One published number constrains one coefficient; the shape of the branch
(quadratic, convex) is our choice. Overpotential of the galvanostatic charge (C/10-C/20 in
operando cells, a few tens of mV) is neglected: the branch reaches 4.5 V at most ~0.01 in x too
late.

Run: ``.venv/bin/python tools/fit_ocp_first_charge.py`` (prints the constants for
polycrack/physics/materials.py (solver/physics/materials.py) and writes benchmarks/results/ocp_first_charge_fit.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from polycrack.physics import materials as mat
from scipy.optimize import brentq

REPO = Path(__file__).resolve().parent.parent

#: Chen 2020 fitted 2.5-4.2 V (params/nmc811_parks2023.yaml, electrochemistry.ocp)
JOIN_V = 4.2
#: end of Märker et al. 2019's operando first charge (last row of
#: params/data/nmc811_lattice_maerker2019.tsv), taken as the 4.5 V cut-off
END_Q_MAH_G = 242.40
END_V = 4.5


def fit() -> dict:
    """The join point, slope and curvature of the high-voltage branch (V and Li fraction)."""
    x_j = brentq(lambda x: float(mat.ocp_V(x, model="chen2020")) - JOIN_V, 0.2, 0.5, xtol=1e-15)
    s_j = float(mat.docp_dx_V(x_j, model="chen2020"))
    x_e = 1.0 - END_Q_MAH_G / mat.THEORETICAL_CAPACITY_MAH_G
    d = x_e - x_j
    k = (END_V - JOIN_V - s_j * d) / d**2
    return {
        "x_join": x_j,
        "U_join_V": JOIN_V,
        "slope_join_V": s_j,
        "curvature_V": k,
        "x_end": x_e,
        "U_end_V": END_V,
        "end_q_mAh_g": END_Q_MAH_G,
        "theoretical_capacity_mAh_g": mat.THEORETICAL_CAPACITY_MAH_G,
    }


def main() -> None:
    f = fit()
    x = np.linspace(0.0, 1.0, 100001)
    u = mat.ocp_V(x, model="chen2020_maerker2019")
    f["check"] = {
        "monotone_decreasing": bool(np.all(np.diff(u) < 0)),
        "U_at_x0_V": float(mat.ocp_V(0.9084, model="chen2020_maerker2019")),
        "x_at_4p5V": mat.x_at_voltage(4.5, "chen2020_maerker2019"),
        "x_at_4p5V_chen2020": mat.x_at_voltage(4.5, "chen2020"),
        "U_range_V": list(mat.ocp_range_V("chen2020_maerker2019")),
    }
    out = REPO / "benchmarks" / "results" / "ocp_first_charge_fit.json"
    out.write_text(json.dumps(f, indent=2) + "\n")
    print(json.dumps(f, indent=2))
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
