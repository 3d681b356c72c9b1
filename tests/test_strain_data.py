"""Strain-data registry, anchor mapping, the chen2020_maerker2019 OCP and the strain-path tool.

docs/strain-data.md. NumPy only except the UFL checks (ufl is pure Python).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import ufl
from polycrack import params
from polycrack.config import InputError, load_parameters
from polycrack.physics import materials as mat
from polycrack.physics import strain_data as sd
from polycrack.physics.mechanics import StrainLawUFL
from polycrack.workflow import strain_path as spath

REPO = Path(__file__).resolve().parent.parent
PSET = params.PARAMS_DIR / "nmc811_parks2023.yaml"
MAERKER = params.DATA_DIR / "nmc811_lattice_maerker2019.tsv"
FC = "chen2020_maerker2019"


# --- registry ----------------------------------------------------------------------------------


def test_registry_has_the_three_tables_with_provenance():
    assert sd.available() == ["kondrakov2017", "li2019", "maerker2019"]
    for key in sd.available():
        ds = sd.get(key)
        assert ds.table.is_file(), key
        for field in ("citation", "doi", "how_obtained", "digitisation_error", "published"):
            assert ds.meta.get(field), (key, field)
        assert "interpolated" in ds.meta, key
        assert ds.doi.startswith("10."), key
        assert ds.landmarks, key
    assert sd.key_for_table(MAERKER) == "maerker2019"
    assert sd.key_for_table(REPO / "pyproject.toml") is None


def test_unknown_key_names_the_available_ones():
    with pytest.raises(ValueError, match=r"did you mean 'li2019'.*available: kondrakov2017"):
        sd.get("li2018")


LANDMARKS = [(key, i, lm) for key in sd.available() for i, lm in enumerate(sd.get(key).landmarks)]


@pytest.mark.parametrize(("key", "i", "lm"), LANDMARKS, ids=[f"{k}-{i}" for k, i, _ in LANDMARKS])
def test_table_reproduces_published_landmark(key, i, lm):
    """Each table gives its sidecar's landmarks to the stated error (direct mapping)."""
    ds = sd.get(key)
    lat = mat.LatticeStrains(ds.table, interpolation=ds.meta.get("interpolation", "linear"))
    value, x = sd.evaluate_landmark(lat, lm)
    assert abs(value - lm["value"]) <= lm["tol"], (lm, value)
    if "x_expected" in lm:
        assert abs(x - lm["x_expected"]) <= lm["tol_x"], (lm, x)
    # a landmark's tolerance is never looser than the sidecar's stated error for that quantity
    err = ds.meta["digitisation_error"]
    if lm["quantity"] in err:
        assert lm["tol"] <= err[lm["quantity"]] + 1e-15


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_built_tables_match_their_build_script():
    """The shipped Kondrakov and Li tables are what tools/build_strain_tables.py writes."""
    tool = _load_tool("build_strain_tables")
    for key, rows in (("kondrakov2017", tool.kondrakov_rows()), ("li2019", tool.li_rows())):
        d = np.loadtxt(sd.get(key).table, comments="#", ndmin=2)
        x = 1.0 - d[:, 0] / mat.THEORETICAL_CAPACITY_MAH_G
        got = sorted(zip(x, d[:, 2], d[:, 4], strict=True), key=lambda r: -r[0])
        want = sorted(rows, key=lambda r: -r[0])
        np.testing.assert_allclose(np.array(got), np.array(want), atol=6e-6)
    # published Kondrakov knots verbatim, the interpolated a at x = 0.6 halfway-ish between
    k = dict((round(x, 6), (a, c)) for x, a, c in tool.kondrakov_rows())
    assert k[0.25] == (2.8153, 13.732) and k[1.0] == (2.8661, 14.249)
    assert k[0.6][0] == pytest.approx(2.8421 + 0.6 * (2.8221 - 2.8421), abs=1e-12)


def test_li2019_keeps_maerker_above_the_c_peak():
    li = mat.LatticeStrains(sd.get("li2019").table)
    mk = mat.LatticeStrains(MAERKER)
    x = np.linspace(0.3571, 1.0, 400)
    np.testing.assert_allclose(li.eps_c(x), mk.eps_c(x), atol=5e-7)
    x = np.linspace(0.2, 1.0, 400)
    np.testing.assert_allclose(li.eps_a(x), mk.eps_a(x), atol=5e-6)
    assert li.eps_c(0.25) < mk.eps_c(0.25) - 0.005  # a deeper collapse below the peak


def test_case_selects_table_by_key():
    p, _ = load_parameters(PSET, {"mechanics.lattice_data": "kondrakov2017"})
    assert p.mechanics.lattice_data == "kondrakov2017"
    with pytest.raises(InputError, match=r"mechanics\.lattice_data: unknown lattice data"):
        load_parameters(PSET, {"mechanics.lattice_data": "nosuch"})
    with pytest.raises(InputError, match="not both"):
        load_parameters(PSET, {"mechanics.lattice_data": "li2019", "mechanics.lattice_table": "x"})


# --- default unchanged -------------------------------------------------------------------------


def _chen_reference(x):
    """The Chen 2020 OCP exactly as docs/model.md states it (operation order of the original code)."""
    u = -0.8090 * x + 4.4875
    for b, c, d in (
        (-0.0428, 18.5138, 0.5542),
        (-17.7326, 15.7890, 0.3117),
        (17.5842, 15.9308, 0.3120),
    ):
        u = u + b * np.tanh(c * (x - d))
    return u


def test_default_case_materials_unchanged():
    """New keys unset: the Märker table read directly and Chen 2020, bit for bit."""
    p, _ = load_parameters(PSET)
    m = p.mechanics
    assert m.lattice_data is None and m.strain_mapping == "direct" and m.strain_map_anchors == []
    assert p.electrochemistry.ocp == "chen2020"
    lat = mat.LatticeStrains.from_params(p, MAERKER)
    d = np.loadtxt(MAERKER, comments="#", ndmin=2)
    xd = 1.0 - d[:, 0] / 275.506
    order = np.argsort(xd)
    x = np.linspace(0.0, 1.0, 2001)
    assert np.array_equal(lat.eps_a(x), np.interp(x, xd[order], (d[:, 2] / d[0, 2] - 1)[order]))
    assert np.array_equal(lat.eps_c(x), np.interp(x, xd[order], (d[:, 4] / d[0, 4] - 1)[order]))
    assert lat.affine is None and np.array_equal(lat.data_x(x), x)
    assert np.array_equal(mat.ocp_V(x), _chen_reference(x))
    assert StrainLawUFL(lat)._affine == (0.0, 1.0)


def test_default_lattice_path_is_the_maerker_table(tmp_path):
    from polycrack.config import resolve_case

    case = {"protocol": [{"type": "cc", "c_rate": 0.02, "until_voltage_V": 4.5}]}
    rc = resolve_case(case, None)
    assert rc.lattice_table_path.resolve() == MAERKER.resolve()
    rc = resolve_case(case, None, ["mechanics.lattice_data=li2019"])
    assert rc.lattice_table_path == sd.get("li2019").table


# --- anchor mapping ----------------------------------------------------------------------------


def test_two_anchors_put_c_peak_and_collapse_end_on_voltages():
    anchors = [
        {"landmark": "c_peak", "voltage_V": 4.0},
        {"landmark": "collapse_end", "voltage_V": 4.5},
    ]
    p, _ = load_parameters(
        PSET, {"mechanics.strain_mapping": "anchors", "mechanics.strain_map_anchors": anchors}
    )
    lat = mat.LatticeStrains.from_params(p, MAERKER)
    x4, x45 = mat.x_at_voltage(4.0), mat.x_at_voltage(4.5)
    assert lat.data_x(x4) == pytest.approx(lat.landmarks["c_peak"], abs=1e-12)
    assert lat.data_x(x45) == pytest.approx(lat.landmarks["collapse_end"], abs=1e-12)
    assert lat.model_x(lat.data_x(0.5)) == pytest.approx(0.5, abs=1e-14)
    # the UFL strain law applies the same affine map
    law = StrainLawUFL(lat)
    x = np.linspace(0.15, 0.95, 301)
    np.testing.assert_allclose(law.eps_c_np(x), lat.eps_c(x), atol=1e-12)
    np.testing.assert_allclose(law.eps_a_np(x), lat.eps_a(x), atol=1e-12)


def test_one_anchor_shifts_and_bad_anchors_fail():
    lat = mat.LatticeStrains(MAERKER, mapping="anchors", anchors=[(0.5, 0.4)])
    assert lat.affine == pytest.approx((0.1, 1.0))
    assert lat.eps_c(0.4) == pytest.approx(mat.LatticeStrains(MAERKER).eps_c(0.5), abs=1e-15)
    with pytest.raises(ValueError, match="reverse the order"):
        mat.LatticeStrains(
            MAERKER, mapping="anchors", anchors=[("c_peak", 0.2), ("collapse_end", 0.5)]
        )
    with pytest.raises(ValueError, match="unknown strain landmark"):
        mat.LatticeStrains(MAERKER, mapping="anchors", anchors=[("peak", 0.2)])
    with pytest.raises(InputError, match="one or two strain_map_anchors"):
        load_parameters(PSET, {"mechanics.strain_mapping": "anchors"})
    with pytest.raises(InputError, match="exactly one of 'voltage_V' and 'model_x'"):
        load_parameters(
            PSET,
            {
                "mechanics.strain_mapping": "anchors",
                "mechanics.strain_map_anchors": [
                    {"landmark": 0.3, "voltage_V": 4.1, "model_x": 0.3}
                ],
            },
        )


# --- the first-charge OCP ----------------------------------------------------------------------


def test_first_charge_ocp_landmarks():
    """4.5 V at the end of Märker's first charge (242.4 of 275.5 mA h/g), Chen 2020 below 4.2 V,
    monotone, C1 at the join, UFL = NumPy."""
    x45 = mat.x_at_voltage(4.5, FC)
    assert 0.12 <= x45 <= 0.15
    assert (1.0 - x45) * mat.THEORETICAL_CAPACITY_MAH_G == pytest.approx(242.40, abs=0.01)
    assert mat.x_at_voltage(4.5) == pytest.approx(0.1826, abs=1e-4)  # chen2020 for comparison
    xj = mat._FC_X_JOIN
    assert float(mat.ocp_V(xj, model="chen2020")) == pytest.approx(4.2, abs=1e-12)
    x = np.linspace(xj, 1.0, 3001)
    assert np.array_equal(mat.ocp_V(x, model=FC), mat.ocp_V(x))  # unchanged where Chen was fitted
    x = np.linspace(0.0, 1.0, 200001)
    assert np.all(np.diff(mat.ocp_V(x, model=FC)) < 0.0)
    assert np.all(mat.docp_dx_V(x, model=FC) < 0.0)
    h = 1e-9
    for f in (mat.ocp_V, mat.docp_dx_V):
        lo, hi = float(f(xj - h, model=FC)), float(f(xj + h, model=FC))
        assert abs(hi - lo) < 1e-7, f.__name__  # C1: value and slope continuous at the join
    xt = np.array([0.05, 0.15, 0.25, 0.3, 0.31, 0.6])
    fd = (mat.ocp_V(xt + 1e-6, model=FC) - mat.ocp_V(xt - 1e-6, model=FC)) / 2e-6
    np.testing.assert_allclose(mat.docp_dx_V(xt, model=FC), fd, rtol=1e-6, atol=1e-6)
    u0 = mat.ocp_range_V(FC)
    assert u0[0] == pytest.approx(mat.ocp_range_V()[0]) and u0[1] > 4.7


@pytest.mark.mpi
def test_first_charge_ocp_ufl_equals_numpy():
    """The UFL form (used in the weak form) interpolated on a mesh equals the NumPy law."""
    import dolfinx_solver  # noqa: F401
    from dolfinx import fem
    from dolfinx import mesh as dmesh
    from mpi4py import MPI

    m = dmesh.create_unit_interval(MPI.COMM_WORLD, 64)
    V = fem.functionspace(m, ("Lagrange", 1))
    x = ufl.SpatialCoordinate(m)[0]
    xd = V.tabulate_dof_coordinates()[:, 0]
    for law in (mat.ocp_V, mat.docp_dx_V):
        f = fem.Function(V)
        f.interpolate(fem.Expression(law(x, xp=ufl, model=FC), V.element.interpolation_points))
        np.testing.assert_allclose(f.x.array, law(xd, model=FC), rtol=1e-13, atol=1e-13)


def test_first_charge_fit_record():
    rec = json.loads((REPO / "benchmarks/results/ocp_first_charge_fit.json").read_text())
    assert rec["x_join"] == mat._FC_X_JOIN and rec["slope_join_V"] == mat._FC_SLOPE_V
    assert rec["curvature_V"] == mat._FC_CURVATURE_V and rec["U_join_V"] == mat._FC_U_JOIN_V
    tool = _load_tool("fit_ocp_first_charge")
    f = tool.fit()
    for k in ("x_join", "slope_join_V", "curvature_V"):
        assert f[k] == pytest.approx(rec[k], rel=1e-12), k


def test_first_charge_ocp_selectable():
    p, _ = load_parameters(PSET, {"electrochemistry.ocp": FC})
    assert p.electrochemistry.ocp == FC
    with pytest.raises(InputError, match="electrochemistry.ocp"):
        load_parameters(PSET, {"electrochemistry.ocp": "chen2021"})
    with pytest.raises(ValueError, match="unknown OCP model"):
        mat.ocp_V(0.5, model="chen2021")


# --- strain path -------------------------------------------------------------------------------


def _path(key: str, ocp: str = "chen2020", v_end: float = 4.5) -> dict:
    lat = mat.LatticeStrains(sd.get(key).table)
    return spath.strain_path(lat, ocp, 0.9084, v_end, 150.0, 0.3)


def test_v_star_maerker_on_chen_is_418():
    """Issue 22: the running maximum of Δε′ is at x = 0.334, 4.18 V; at 4.5 V ψ⁺ is 0.39 of it."""
    r = _path("maerker2019")
    assert r["v_star"]["V"] == pytest.approx(4.18, abs=0.02)
    assert r["v_star"]["x"] == pytest.approx(0.334, abs=0.001)
    assert r["v_star"]["d_eps_prime"] == pytest.approx(0.0360, abs=1e-4)
    assert r["end"]["psi_ratio"] == pytest.approx(0.39, abs=0.01)
    assert "negative" not in r["branches"] and r["sign_change"] is None
    g = r["grid"]
    assert g["V_V"][0] == pytest.approx(r["U_x0_V"]) and g["V_V"][-1] == 4.5
    assert g["d_eps_prime"][0] == 0.0 and g["eps_v"][0] == 0.0
    # ψ⁺ never exceeds its running maximum; after V* |Δε′| stays at or below its maximum
    assert max(g["psi_over_running_max"]) <= 1.0 + 1e-12
    after = [
        abs(d) for v, d in zip(g["V_V"], g["d_eps_prime"], strict=True) if v > r["v_star"]["V"]
    ]
    assert after and max(after) <= abs(r["v_star"]["d_eps_prime"]) + 1e-12
    assert g["running_extreme"][-1] == pytest.approx(abs(r["v_star"]["d_eps_prime"]), abs=1e-15)


def test_v_star_takes_the_later_extreme_of_either_sign():
    """Kondrakov: Δε′ peaks at x = 0.5 (+0.0236), changes sign and reaches −0.0252 at x = 0.25,
    the end of the published data: V* is there (tension along c afterwards is a new load)."""
    r = _path("kondrakov2017")
    b = r["branches"]
    assert b["positive"]["x"] == pytest.approx(0.5, abs=1e-9)
    assert b["negative"]["x"] == pytest.approx(0.25, abs=1e-9)
    # hand check from the published knots (x0 = 0.9084 lies between x = 1 and 0.75)
    s = (1.0 - 0.9084) / 0.25
    a0, c0 = 2.8661 + s * (2.8421 - 2.8661), 14.249 + s * (14.386 - 14.249)
    de0 = c0 / 14.249 - a0 / 2.8661
    assert b["negative"]["d_eps_prime"] == pytest.approx(
        13.732 / 14.249 - 2.8153 / 2.8661 - de0, abs=1e-12
    )
    assert r["v_star"] == b["negative"] and r["sign_change"] is not None
    assert r["v_star"]["V"] == pytest.approx(float(mat.ocp_V(0.25)), abs=1e-9)


def test_eshelby_sigma1_against_the_full_tensor_solution():
    """σ = C:(S:e* − e*) with the Eshelby tensor of a sphere, e* = Δε′ (n⊗n − I/3)."""
    E, nu = 150.0, 0.3
    lam, mu = E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))
    I = np.eye(3)
    d = np.einsum("ij,kl->ijkl", I, I)
    sym = 0.5 * (np.einsum("ik,jl->ijkl", I, I) + np.einsum("il,jk->ijkl", I, I))
    C = lam * d + 2 * mu * sym
    # Mura (11.21): S_ijkl = [(5ν−1) δij δkl + (4−5ν)(δik δjl + δil δjk)] / (15 (1−ν))
    S = ((5 * nu - 1) * d + (4 - 5 * nu) * 2 * sym) / (15 * (1 - nu))
    n = np.array([0.3, -0.5, 0.81])
    n /= np.linalg.norm(n)
    for dp in (0.03, -0.02):
        e = dp * (np.outer(n, n) - I / 3)
        sig = np.einsum("ijkl,kl->ij", C, np.einsum("ijkl,kl->ij", S, e) - e)
        s1 = np.linalg.eigvalsh(sig).max()
        assert spath.eshelby_sigma1_GPa(dp, E, nu) == pytest.approx(s1, rel=1e-12)
