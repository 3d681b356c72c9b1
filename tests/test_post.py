"""Post-processing: damaged volume, GB share, radial shells and sigma1 on prescribed fields.

Unit cube, 20^3 x 6 tets, 8 grains, no binder; fields chosen so that the thresholds fall on mesh
planes, which makes the quadrature-point indicators exact.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
from dolfinx import fem
from mpi4py import MPI
from polycrack.physics import mechanics as M
from polycrack.post.metrics import DamageMetrics, field_max, principal_stress_field
from polycrack.verification.mech_meshes import box_grains, random_axes


@pytest.fixture(scope="module")
def cube():
    msh, ct, ft = box_grains(n=20, splits=2)
    return M.ParticleDomain.build(msh, ct, ft, random_axes(8, 0))


@pytest.mark.mpi
def test_damage_fraction_gb_share_and_shells(cube):
    """phi = X (damaged for X >= 0.95, a mesh plane) -> fraction 0.05 (1e-12); gamma linear in Y
    with h = 0.5 at Y = 0.3 (a mesh plane) -> GB share 0.3 (1e-12); shell shares sum to 1."""
    dom = cube
    V = fem.functionspace(dom.submesh, ("Lagrange", 1))
    phi, gamma = fem.Function(V), fem.Function(V)
    phi.interpolate(lambda X: X[0])
    g_at = 1.0 - np.sqrt(0.5)
    gamma.interpolate(lambda X: g_at * X[1] / 0.3)
    m = DamageMetrics(dom, phi, gamma).compute()
    assert abs(m["damage_fraction"] - 0.05) < 1e-12
    assert abs(m["damage_gb_share"] - 0.3) < 1e-12
    assert abs(sum(m["radial_damage_share"]) - 1.0) < 1e-12
    assert abs(m["phi_max"] - 1.0) < 1e-12
    # all ranks hold the same numbers
    allm = MPI.COMM_WORLD.allgather(m["damage_gb_share"])
    assert max(allm) == min(allm)


@pytest.mark.mpi
def test_sigma1_of_uniform_stress(cube):
    """sigma1 of a prescribed uniform stress equals numpy's largest eigenvalue (1e-9 GPa)."""
    dom = cube
    rng = np.random.default_rng(5)
    a = rng.normal(size=(3, 3))
    S = 0.5 * (a + a.T)
    s1 = principal_stress_field(dom, fem.Constant(dom.submesh, S) * 1.0)
    assert abs(field_max(s1) - np.linalg.eigvalsh(S).max()) < 1e-9


def test_radial_cell_stats_and_cell_volumes(cube):
    """Cell volumes sum to the cube volume; shell stats of a value equal to r/R_p: mean inside the
    shell bounds, max <= upper bound, threshold fraction 0 or 1 on either side."""
    from polycrack.post.metrics import cell_radius_and_volume, radial_cell_stats

    comm = cube.submesh.comm
    r, vol = cell_radius_and_volume(cube)
    assert abs(comm.allreduce(vol.sum()) - 1.0) < 1e-12
    st = radial_cell_stats(r.copy(), r, vol, comm, thresholds=(0.5,))
    assert abs(sum(s["volume_um3"] for s in st) - 1.0) < 1e-12
    for s in st[:-1]:
        if s["cells"]:
            lo, hi = s["shell"]
            assert lo <= s["mean"] < hi and s["max"] < hi and lo <= s["p99"] <= s["max"]
            assert s["fraction_ge_0.5"] == (1.0 if lo >= 0.5 else 0.0)


def test_damage_onset_and_value_at_voltage_closed_form():
    """phi_max rising linearly in V crosses 0.95 at a known voltage; values at a voltage are the
    linear interpolation of the rows, None beyond the rows' last voltage."""
    from polycrack.post.timeseries import damage_onset, value_at_voltage

    v = np.array([3.7, 3.8, 3.9, 4.0, 4.1])
    ts = {"voltage_V": v, "phi_max": (v - 3.7) * 2.5, "x_avg": 1.0 - v / 10.0}  # 0.95 at 4.08 V
    o = damage_onset(ts, columns=("voltage_V", "x_avg"))
    assert o["step_index"] == 4 and o["first_step_voltage_V"] == 4.1
    assert o["interpolated_voltage_V"] == pytest.approx(4.08, abs=1e-12)
    assert o["interpolated_x_avg"] == pytest.approx(1.0 - 0.408, abs=1e-12)
    none = damage_onset({"voltage_V": v, "phi_max": 0 * v})
    assert none["step_index"] is None and none["interpolated_voltage_V"] is None
    assert value_at_voltage(ts, "phi_max", 3.85) == pytest.approx(0.375, abs=1e-12)
    assert value_at_voltage(ts, "phi_max", 4.2) is None
    cc = v < 4.05
    assert value_at_voltage(ts, "phi_max", 4.05, cc) is None
