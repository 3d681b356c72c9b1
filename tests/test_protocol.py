"""Protocol events: a step that would overshoot the stop voltage is retried onto the event."""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import pytest
from polycrack.config import CCStep, CVStep, RestStep, load_case
from polycrack.meshing.tags import INTERFACE
from polycrack.physics.electrochem import Electrochemistry
from polycrack.problems.electrochemistry import electrochem_solver
from polycrack.verification.meshes import particle_sphere
from polycrack.workflow.protocol import ProtocolRunner

from tests.conftest import REPO


@pytest.mark.mpi
def test_event_location_with_large_steps():
    """dt_max = 30000 s and a loose error tolerance: whole steps would overshoot 4.5 V by tens of
    mV; the runner discards them and lands within 1e-4 V (event retries > 0); CV ends within
    1e-3 of C/100; then a C/10 discharge to 4.0 V (direction: discharge) stops within 1e-4 V,
    a CV with only max_time_s ends on time exactly and a rest lasts exactly its duration."""
    rc = load_case(
        REPO / "examples/sphere_electrochem.yaml",
        # newton_max_iterations 25: with the default 12, steps needing > 6 iterations are
        # shortened and no whole step would reach past 4.5 V any more
        ["solver.dt_max_s=30000", "solver.time_rtol=0.05", "solver.newton_max_iterations=25"],
    )
    cfg = rc.case.solver
    msh, _, ft = particle_sphere(7.0, 1.6)
    ec = Electrochemistry(msh, ft, INTERFACE, rc.params.electrochemistry)
    _, stepper = electrochem_solver(ec, cfg)
    steps = [
        *rc.case.protocol,
        CCStep(type="cc", c_rate=0.1, until_voltage_V=4.0, direction="discharge"),
        CVStep(type="cv", voltage_V=4.0, max_time_s=1234.5),
        RestStep(type="rest", duration_s=100.0),
    ]
    s = ProtocolRunner(ec, stepper, steps, cfg).run()
    assert [x.end_reason for x in s] == ["voltage", "current", "voltage", "time", "time"]
    assert s[0].event_retries > 0
    assert abs(s[0].voltage_end_V - 4.5) <= cfg.event_voltage_tol_V
    i_stop = ec.c_rate_current_A(0.01)
    assert abs(s[1].current_end_A / i_stop - 1) <= 1e-3
    assert abs(s[2].voltage_end_V - 4.0) <= cfg.event_voltage_tol_V
    assert s[2].current_end_A < 0
    assert abs(s[3].duration_s - 1234.5) < 1e-9 and abs(s[4].duration_s - 100.0) < 1e-9


def test_cv_jump_is_refused():
    """A cv hold far from the present voltage (no cc before it) is an input error naming the
    step and the voltages, raised before any step is taken."""
    from polycrack.errors import InputError

    rc = load_case(REPO / "examples/sphere_electrochem.yaml", [])
    cfg = rc.case.solver
    msh, _, ft = particle_sphere(7.0, 1.6)
    ec = Electrochemistry(msh, ft, INTERFACE, rc.params.electrochemistry)
    _, stepper = electrochem_solver(ec, cfg)
    v0 = ec.voltage
    with pytest.raises(InputError, match=r"protocol step 0 \(cv at voltage_V = 4\.5 V\)"):
        ProtocolRunner(ec, stepper, [CVStep(type="cv", voltage_V=4.5, max_time_s=60)], cfg).run()
    assert stepper.t == 0.0 and ec.voltage == v0
    # a small step onto the present voltage is fine
    s = ProtocolRunner(ec, stepper, [CVStep(type="cv", voltage_V=v0 + 0.01, max_time_s=60)], cfg)
    assert s.run()[0].end_reason == "time"
