"""Driving-force diagnostics (polycrack.post.drive, timeseries.csv columns): closed forms for the
binder pressure (Lamé sphere in a shell) and the ψ⁺ > H statistics, and the columns of a short
quasi-static run against the lattice table."""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from dolfinx.fem.petsc import NonlinearProblem
from mpi4py import MPI
from polycrack.config import resolve_case
from polycrack.physics import mechanics as M
from polycrack.physics.fracture import HistoryField
from polycrack.post.drive import DRIVE_COLUMNS, DriveDiagnostics
from polycrack.post.plots import read_table
from polycrack.verification.mech_meshes import (
    sphere8_case,
    sphere8_domain,
    sphere_in_shell,
)
from polycrack.workflow.exports import TIMESERIES_COLUMNS
from polycrack.workflow.run import CoupledRun

pytestmark = pytest.mark.mpi

LU = {"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps"}


class _NoTable:
    def delta_eps(self, x):
        return 0.0 * np.asarray(x)


def test_binder_pressure_of_lame_sphere_in_clamped_shell():
    """Sphere (radius a) with isotropic eigenstrain ε* in a shell clamped at b: in the shell
    u = B r + c a³/r², whose c-part is traceless, so the binder pressure is uniform, −3 K2 B with
    B = −ρ c, ρ = (a/b)³ (docs/model.md section 6.4). Within 1 % (P2, curved cells)."""
    a, b, es = 1.0, 10.0 / 7.0, 0.01
    msh, ct, ft = sphere_in_shell(a, b, 0.4, 0.25, order=2)
    dom = M.ParticleDomain.build(msh, ct, ft, np.array([[0.0, 0.0, 1.0]]))
    Ep, Eb = M.ElasticModuli(150.0, 0.3), M.ElasticModuli(0.3, 0.3)
    model = M.MechanicsModel(Ep, Eb, M.LinearStrainLaw(a1=es, c1=es), x0=0.0, split="none")
    V = M.make_displacement_space(dom, 2)
    u = fem.Function(V)
    x, n = M.uniform_x(dom, 1.0), dom.axis_field()
    F = M.displacement_residual(model, dom, u, ufl.TestFunction(V), x, n)
    p = NonlinearProblem(
        F,
        u,
        bcs=M.displacement_bcs(V, dom, "clamped"),
        entity_maps=[dom.entity_map],
        petsc_options=LU,
        petsc_options_prefix="tdrive_",
    )
    p.solve()
    assert p.solver.getConvergedReason() > 0
    drive = DriveDiagnostics(dom, model, u, _NoTable(), 0.0)
    K1, K2, mu2 = Ep.bulk, Eb.bulk, Eb.shear
    rho = (a / b) ** 3
    c = 3 * K1 * es / (3 * K1 + 4 * mu2 - rho * (3 * K1 - 3 * K2))
    exact_Pa = -3.0 * K2 * (-rho * c) * 1e9
    got = drive.binder_pressure_Pa()
    assert got > 0.0  # the expanding sphere compresses the clamped binder
    assert abs(got / exact_Pa - 1.0) < 0.01, (got, exact_Pa)


def test_psi_plus_above_history_statistics():
    """On the unit cube, H = 2 everywhere and ψ⁺ = 3 in the cells left of x = 0.5, 1 elsewhere:
    the volume where ψ⁺ > H is exactly 1/2 and max ψ⁺/H = 3/2; with H = 0 the ratio is None
    and ψ⁺ > H everywhere."""
    msh = dmesh.create_unit_cube(MPI.COMM_WORLD, 4, 4, 4)
    hist = HistoryField(msh, degree=2)
    Q = hist.Q
    X = Q.tabulate_dof_coordinates()
    vals = np.where(X[:, 0] < 0.5, 3.0, 1.0)
    assert hist.growth_stats(vals)["ratio_max"] is None
    assert abs(hist.growth_stats(vals)["above_fraction"] - 1.0) < 1e-12
    hist.H.x.array[:] = 2.0
    g = hist.growth_stats(vals)
    assert abs(g["above_fraction"] - 0.5) < 1e-12
    assert abs(g["ratio_max"] - 1.5) < 1e-12
    hist.update(fem.Constant(msh, 0.0) * ufl.SpatialCoordinate(msh)[0])  # ψ⁺ = 0 < H
    assert hist.growth["above_fraction"] == 0.0 and hist.growth["ratio_max"] == 0.0


CASE = sphere8_case(
    [{"type": "cc", "c_rate": 1.0, "until_voltage_V": 3.8}], physics={"mode": "quasistatic"}
)


def test_drive_columns_of_a_quasistatic_run(mpi_tmp_path):
    """Δε′ is the table's Δε(x_avg) − Δε(x0) (1e-12), its running max |Δε′| is monotone, the
    ψ⁺ > H volume fraction is in [0, 1] and 1 at the first step (H = 0), the binder is pulled
    (pressure < 0) while the particle shrinks."""
    comm = MPI.COMM_WORLD
    rc = resolve_case(CASE, None)
    dom = sphere8_domain(comm)
    rec = CoupledRun(rc, mpi_tmp_path, comm, dom=dom, verbose=False).run()
    assert rec["status"] == "finished"
    assert set(DRIVE_COLUMNS) <= set(TIMESERIES_COLUMNS)
    t = read_table(mpi_tmp_path / "timeseries.csv")
    from polycrack.physics.materials import LatticeStrains

    lat = LatticeStrains.from_params(rc.params, rc.lattice_table_path)
    x0 = rc.params.electrochemistry.x0
    dep = lat.delta_eps(t["x_avg"]) - lat.delta_eps(x0)
    np.testing.assert_allclose(t["delta_eps_prime"], dep, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        t["delta_eps_prime_absmax"], np.maximum.accumulate(np.abs(dep)), rtol=0, atol=1e-12
    )
    f = t["psi_plus_above_H_fraction"]
    assert f[0] == 1.0 and np.all((f >= 0.0) & (f <= 1.0))
    assert np.isnan(t["psi_plus_over_H_max"][0]) and np.all(t["psi_plus_over_H_max"][1:] > 0)
    assert np.all(t["binder_pressure_mean_Pa"] < 0.0)
