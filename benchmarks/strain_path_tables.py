"""Δε′ landmarks and V* of every registry table on every OCP (uniform x, NumPy only, seconds).

Why: issue 22 — with near-uniform x, ψ⁺ ∝ Δε′², so the lattice data and the OCP alone decide
when damage can still grow. This script runs polycrack.workflow.strain_path for each strain-data
table (direct mapping) on each OCP model, plus the Märker table with the anchor mapping
c-peak -> 4.0 V, end of collapse -> 4.5 V, from x0 = 0.9084 to 4.5 V, E = 150 GPa, ν = 0.3, and
writes benchmarks/results/strain_path_tables.json (summarised in benchmarks/README.md and
docs/strain-data.md).

Run: ``.venv/bin/python benchmarks/strain_path_tables.py``
"""

from __future__ import annotations

import json
from pathlib import Path

from polycrack.physics import materials as mat
from polycrack.physics import strain_data as sd
from polycrack.workflow.strain_path import strain_path

OUT = Path(__file__).resolve().parent / "results" / "strain_path_tables.json"
X0, V_END, E_GPA, NU = 0.9084, 4.5, 150.0, 0.3


def _row(label: str, lat: mat.LatticeStrains, ocp: str) -> dict:
    r = strain_path(lat, ocp, X0, V_END, E_GPA, NU)
    out = {
        "table": label,
        "mapping": lat.mapping,
        "ocp": ocp,
        "x_at_4p5V": r["x_end"],
        "branches": r["branches"],
        "v_star": r["v_star"],
        "sign_change": r["sign_change"],
        "end": {k: r["end"][k] for k in ("d_eps_prime", "psi_ratio", "eps_v", "sigma1_GPa")},
        "landmarks": r["landmarks"],
    }
    return out


def main() -> None:
    rows = []
    for ocp in mat.OCP_MODELS:
        for key in sd.available():
            rows.append(_row(key, mat.LatticeStrains(sd.get(key).table), ocp))
        anchors = [
            ("c_peak", mat.x_at_voltage(4.0, ocp)),
            ("collapse_end", mat.x_at_voltage(4.5, ocp)),
        ]
        lat = mat.LatticeStrains(sd.get("maerker2019").table, mapping="anchors", anchors=anchors)
        rows.append(_row("maerker2019 (c_peak->4.0 V, collapse_end->4.5 V)", lat, ocp))
    OUT.write_text(
        json.dumps({"x0": X0, "v_end_V": V_END, "E_GPa": E_GPA, "nu": NU, "rows": rows}, indent=1)
        + "\n"
    )
    print(
        f"{'table':<50} {'OCP':<21} {'max Δε′ (V)':<18} {'min Δε′ (V)':<18} {'V*':>6} "
        f"{'Δε′(4.5)':>9} {'ψ⁺/max':>6}"
    )
    for r in rows:
        b = r["branches"]
        pos = (
            f"{b['positive']['d_eps_prime']:+.4f} ({b['positive']['V']:.3f})"
            if "positive" in b
            else "-"
        )
        neg = (
            f"{b['negative']['d_eps_prime']:+.4f} ({b['negative']['V']:.3f})"
            if "negative" in b
            else "-"
        )
        print(
            f"{r['table']:<50} {r['ocp']:<21} {pos:<18} {neg:<18} {r['v_star']['V']:6.3f} "
            f"{r['end']['d_eps_prime']:+9.4f} {r['end']['psi_ratio']:6.2f}"
        )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
