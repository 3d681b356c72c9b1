"""What P1 elements do to the AT2 crack area Γ: the discrete Γ of a fully developed crack against
h/l, for a crack on a mesh node (a crack along mesh faces, as on a grain-boundary facet) and a
crack through a cell (phi = 1 on both nodes of one element: a crack across the mesh).

    python benchmarks/convergence/gamma_discretisation.py

One dimension, unit cross-section, l = 1, a domain of 20 l on each side. Γ_h is the minimum of
the discrete crack-surface functional Γ(phi) = ∫ (phi²/(2l) + (l/2) phi'²) dx with phi = 1 on the
crack's node(s) (consistent P1 mass and stiffness, the forms polycrack assembles); the exact
value is 1 (µm² per µm² of crack, i.e. the crack's area). Closed forms: a crack on a node is
second order (Γ_h/Γ − 1 = O((h/l)²)); a crack through a cell adds that cell's
∫ phi²/(2l) dx = h/(2l), so Γ_h/Γ = 1 + h/(2l) + O((h/l)²): first order in h/l. This is the
error model behind the convergence study's Γ (docs/convergence.md). Writes
benchmarks/results/gamma_discretisation.json.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
from scipy.sparse import diags
from scipy.sparse.linalg import spsolve

REPO = Path(__file__).resolve().parents[2]
RATIOS = (2.0, 1.0, 0.5, 0.25, 0.125, 0.0625)  # h/l


def half_profile(h: float, l: float = 1.0, length: float = 20.0) -> tuple[float, float]:
    """The discrete minimiser of Γ on [0, length·l] with phi(0) = 1 and its Γ (per unit area).

    Returns (Γ_h of the half profile, phi at the first free node)."""
    n = int(round(length * l / h))
    # P1 on a uniform grid: consistent mass (h/6)[2 1; 1 2], stiffness (1/h)[1 -1; -1 1]
    main_m = np.full(n + 1, 4 * h / 6)
    main_m[[0, -1]] = 2 * h / 6
    main_k = np.full(n + 1, 2 / h)
    main_k[[0, -1]] = 1 / h
    a = diags(
        [main_m / (2 * l) + l / 2 * main_k, np.full(n, h / 6 / (2 * l) - l / 2 / h)],
        [0, 1],
        format="csr",
    )
    a = a + diags([a.diagonal(1)], [-1])
    phi = np.zeros(n + 1)
    phi[0] = 1.0
    phi[1:] = spsolve(a[1:, 1:].tocsc(), -a[1:, 0].toarray().ravel())
    return float(phi @ (a @ phi)), float(phi[1])


def main() -> None:
    rows = []
    for r in RATIOS:
        g_half, _ = half_profile(r)
        node = 2 * g_half  # a crack on a node: two half profiles
        cell = 2 * g_half + r / 2  # phi = 1 on both nodes of one cell: plus ∫ phi²/(2l) = h/(2l)
        rows.append(
            {
                "h_over_l": r,
                "gamma_ratio_crack_on_node": node,
                "gamma_ratio_crack_through_cell": cell,
                "first_order_model_1_plus_h_over_2l": 1 + r / 2,
            }
        )
        print(f"h/l = {r:<7g} crack on a node {node:.4f}   through a cell {cell:.4f}")
    # observed orders between successive levels
    for a, b in zip(rows, rows[1:], strict=False):
        for key in ("gamma_ratio_crack_on_node", "gamma_ratio_crack_through_cell"):
            b[f"{key}_order"] = float(np.log2((a[key] - 1) / (b[key] - 1)))
    out = REPO / "benchmarks" / "results" / "gamma_discretisation.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "gamma_discretisation",
                "machine": {"node": platform.node()},
                "what": "discrete AT2 crack area of a fully developed 1D crack / exact, P1",
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
