"""ReusedLU (the chord Newton of the (x, V) solve): its state restores the kept factorisation,
so that a solver rebuilt from a checkpoint takes the same iterates as the one that went on."""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
from polycrack.config import load_case
from polycrack.meshing.tags import INTERFACE
from polycrack.physics.electrochem import Electrochemistry
from polycrack.problems.electrochemistry import ReusedLU, electrochem_solver
from polycrack.verification.meshes import particle_sphere

from tests.conftest import REPO

pytestmark = pytest.mark.mpi
DT = 20.0


def _solver(msh, ft, rc):
    ec = Electrochemistry(msh, ft, INTERFACE, rc.params.electrochemistry)
    ec.set_galvanostatic(ec.c_rate_current_A(0.5))
    newton, stepper = electrochem_solver(ec, rc.case.solver)
    reuse = stepper.solve.__self__
    assert isinstance(reuse, ReusedLU)
    return ec, stepper, reuse


def _steps(stepper, n):
    for _ in range(n):
        trial = stepper.attempt(DT)
        assert trial.dt == DT
        stepper.commit(trial)


@pytest.mark.parametrize("prime", [True, False])
def test_restored_chord_newton_takes_the_same_iterates(prime):
    """Solver A takes 4 steps, B is built fresh with A's stepper and ReusedLU state; both take 2
    more steps at the same dt (the first on the kept LU): bitwise the same fields and refresh
    counts.
    Without re-factorising at the stored point (``prime=False``: B starts with a fresh LU, as
    before) the iterates differ (the check can fail)."""
    rc = load_case(
        REPO / "examples/sphere_electrochem.yaml", ["solver.dt_max_s=20", "solver.time_rtol=0.05"]
    )
    msh, _, ft = particle_sphere(7.0, 1.6)
    ec_a, st_a, lu_a = _solver(msh, ft, rc)
    _steps(st_a, 4)
    ec_b, st_b, lu_b = _solver(msh, ft, rc)
    st_b.load_state_dict(st_a.state_dict())
    st_b.discard()  # the fields of B = the last committed state of A
    for b, a in zip(lu_b.lin_fields, lu_a.lin_fields, strict=True):
        b.x.array[:] = a.x.array
    if prime:
        lu_b.load_state(lu_a.state())
    refreshes = lu_a.refreshes
    _steps(st_a, 1)
    _steps(st_b, 1)
    assert lu_a.refreshes == refreshes  # the kept LU served this step (chord iterations)
    _steps(st_a, 1)
    _steps(st_b, 1)
    same = all(
        np.array_equal(a.x.array, b.x.array)
        for a, b in zip((ec_a.x, ec_a.V), (ec_b.x, ec_b.V), strict=True)
    )
    assert same == prime
    if prime:
        assert lu_b.refreshes == lu_a.refreshes
