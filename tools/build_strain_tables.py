"""Write the lattice tables built from published landmarks (params/data/nmc811_lattice_*.tsv).

Why: only Märker et al. 2019 is available as a machine-readable table; Kondrakov et al. 2017 and
Li et al. 2019 publish a few numbers. This script turns exactly those numbers (and, where stated,
interpolations between them or borrowed Märker data) into tables in the Märker column format, so
that the same loader (polycrack.physics.materials.LatticeStrains) reads all of them. What is published and
what is interpolated is listed per row in the sidecar YAML next to each table
(params/data/nmc811_lattice_<key>.yaml) and in docs/strain-data.md.

Run: ``.venv/bin/python tools/build_strain_tables.py`` (rewrites the two .tsv files; the tests
check that the tables still reproduce the sidecars' landmarks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "params" / "data"
Q_TH = (
    275.506  # mA h/g, theoretical capacity of LiNi0.8Mn0.1Co0.1O2 (polycrack/physics/materials.py)
)

# Kondrakov et al., J. Phys. Chem. C 121 (2017) 24381, DOI 10.1021/acs.jpcc.7b06598: operando XRD,
# NCM811/Li pouch cell (precycled), C/20 to 4.6 V + 1 h CV; x(Li) from charge counted, 1.00 at the
# start of that charge. (x, a / Å, c / Å, note)
KONDRAKOV = [
    (1.00, 2.8661, 14.249, "a, c: Table 2 (XRD) and text p. 24383"),
    (0.75, 2.8421, 14.386, "a, c: Table 2 (XRD)"),
    (0.60, None, 14.469, "c: abstract and text (the c maximum); a: interpolated"),
    (0.50, 2.8221, 14.460, "a, c: Table 2 (XRD); the text gives a = 2.8211 A here"),
    (0.25, 2.8153, 13.732, "a, c: Table 2 (XRD) and abstract (end of charge, 4.6 V + 1 h)"),
]

# Li, Asl, Xie, Manthiram, J. Am. Chem. Soc. 141 (2019) 5097, DOI 10.1021/jacs.8b13798 (abstract):
# "With Li removal reaching 80 mol%, very similar c-axis lattice shrinkage of around 5% occurs".
LI_X = 0.20
LI_SHRINK = (
    0.05  # relative to the c maximum (our reading; the abstract does not name the reference)
)

HEADER = """# {title}
# Built by tools/build_strain_tables.py; provenance, published vs interpolated rows and landmarks:
# params/data/{sidecar} and docs/strain-data.md.
# Columns (as nmc811_lattice_maerker2019.tsv): q (mA h/g) = (1 - x) * 275.506, error (unused),
# a (Angstrom), b (= a), c (Angstrom), alpha, beta, gamma (deg). Strains: eps = a/a(q=0) - 1, etc.
"""


def _write(path: Path, title: str, rows: list[tuple[float, float, float]]) -> None:
    lines = [HEADER.format(title=title, sidecar=path.with_suffix(".yaml").name).rstrip("\n")]
    for x, a, c in sorted(rows, key=lambda r: -r[0]):
        q = (1.0 - x) * Q_TH
        lines.append(f"{q:.4f}\t0.00\t{a:.5f}\t{a:.5f}\t{c:.5f}\t90.0\t90.0\t120.0")
    path.write_text("\n".join(lines) + "\n")


def kondrakov_rows() -> list[tuple[float, float, float]]:
    """The published knots; a at x = 0.6 linearly between Table 2's x = 0.75 and 0.5 values
    (the text: a drops "almost linearly" down to x = 0.5)."""
    known = {x: a for x, a, _, _ in KONDRAKOV if a is not None}
    rows = []
    for x, a, c, _ in KONDRAKOV:
        if a is None:
            a = known[0.75] + (x - 0.75) / (0.50 - 0.75) * (known[0.50] - known[0.75])
        rows.append((x, a, c))
    return rows


def maerker() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.loadtxt(DATA / "nmc811_lattice_maerker2019.tsv", comments="#", ndmin=2)
    return 1.0 - d[:, 0] / Q_TH, d[:, 2], d[:, 4]


def li_rows() -> list[tuple[float, float, float]]:
    """Märker's a(x) and c(x) down to x = 0.2; below Märker's c-peak the fall of c is scaled by
    one factor so that c(0.2) = (1 - 0.05) c_max (Li 2019); the table ends at x = 0.2."""
    x, a, c = maerker()
    order = np.argsort(x)
    xs, as_, cs = x[order], a[order], c[order]
    c_max = cs.max()
    x_peak = xs[cs == c_max].max()
    a_end, c_end = np.interp(LI_X, xs, as_), np.interp(LI_X, xs, cs)
    scale = LI_SHRINK * c_max / (c_max - c_end)
    rows = [(LI_X, float(a_end), float(c_max * (1.0 - LI_SHRINK)))]
    for xi, ai, ci in zip(x, a, c, strict=True):
        if xi <= LI_X + 1e-12:
            continue
        c_new = ci if xi >= x_peak else c_max - scale * (c_max - ci)
        rows.append((float(xi), float(ai), float(c_new)))
    return rows


def main() -> None:
    _write(
        DATA / "nmc811_lattice_kondrakov2017.tsv",
        "NMC811 lattice parameters from the published numbers of Kondrakov et al., J. Phys. "
        "Chem. C 121 (2017) 24381, DOI 10.1021/acs.jpcc.7b06598",
        kondrakov_rows(),
    )
    _write(
        DATA / "nmc811_lattice_li2019.tsv",
        "NMC811 lattice: Maerker 2019 data with the c-collapse scaled to the ~5 % c shrinkage at "
        "80 % Li removal of Li et al., J. Am. Chem. Soc. 141 (2019) 5097, DOI 10.1021/jacs.8b13798",
        li_rows(),
    )
    print("wrote params/data/nmc811_lattice_kondrakov2017.tsv, nmc811_lattice_li2019.tsv")


if __name__ == "__main__":
    main()
