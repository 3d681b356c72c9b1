"""``physics.mode: quasistatic`` through the run driver: quasi-static runs against the coupled
model, restart, and the warning of ``polycrack check``. (The closed forms of the 0-D
electrochemistry and of the spread estimate: polycrack/verification/quasistatic.py.)

The runs use the 8-grain sphere of tests/test_coupled.py with a Li diffusivity 1000 times the
parameter set's (4e-12 m²/s), so that at 1C the coupled model's x is nearly uniform
(x_avg - x_surf = 2.3e-4 by the quasi-steady estimate): there the two modes must agree.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
from mpi4py import MPI
from polycrack.config import resolve_case
from polycrack.physics import materials as mat
from polycrack.post.plots import read_table
from polycrack.verification.mech_meshes import sphere8_case, sphere8_domain
from polycrack.workflow.run import CoupledRun
from polycrack.workflow.summary import QUASISTATIC_SPREAD_LIMIT, quasistatic_warning

CASE = sphere8_case(
    [
        {"type": "cc", "c_rate": 1.0, "until_voltage_V": 3.95},
        {"type": "cv", "voltage_V": 3.95, "max_time_s": 120},
    ],
    overrides={"electrochemistry.D_m2_s": 4.0e-12},
)
COLUMNS = (
    "time_s",
    "voltage_V",
    "current_A",
    "x_avg",
    "damage_fraction",
    "phi_max",
    "delta_eps_prime_absmax",
    "psi_plus_above_H_fraction",
    "binder_pressure_mean_Pa",
)


def test_check_warns_about_quasistatic_mode_at_fast_charges():
    """The warning names the estimate and the limit; none for coupled runs or slow charges."""
    base = {"protocol": [{"type": "cc", "c_rate": 0.02, "until_voltage_V": 4.2}]}
    assert quasistatic_warning(resolve_case(base, None)) is None
    slow = resolve_case(base | {"physics": {"mode": "quasistatic"}}, None)
    assert quasistatic_warning(slow) is None  # 0.0045 at C/50
    fast = resolve_case(
        base | {"physics": {"mode": "quasistatic"}}, None, ["protocol.0.c_rate=0.1"]
    )
    msg = quasistatic_warning(fast)
    assert msg is not None and "0.0227" in msg and f"> {QUASISTATIC_SPREAD_LIMIT:g}" in msg
    coupled = resolve_case(base, None, ["protocol.0.c_rate=0.1"])
    assert quasistatic_warning(coupled) is None


# -- runs ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs():
    """A coupled and a quasi-static run of CASE into one directory shared by all ranks."""
    comm = MPI.COMM_WORLD
    path = tempfile.mkdtemp(prefix="polycrack-qs-") if comm.rank == 0 else None
    path = Path(comm.bcast(path, root=0))
    out = {}
    for mode in ("coupled", "quasistatic"):
        rec = _run(path / mode, comm, mode)
        out[mode] = (rec, read_table(path / mode / "timeseries.csv"))
    yield path, out
    comm.barrier()
    if comm.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


def _run(out, comm, mode, **kw):
    rc = resolve_case(CASE | {"physics": {"mode": mode}}, None)
    return CoupledRun(rc, out, comm, dom=sphere8_domain(comm), verbose=False, **kw).run()


def _onset(t: dict) -> float:
    """Voltage at which phi_max reaches 0.95, interpolated linearly between the two steps that
    bracket it (the first such step alone moves with the step sizes: 3.794 vs 3.828 V here)."""
    hit = np.flatnonzero(t["phi_max"] >= 0.95)
    assert hit.size and hit[0] > 0, "no damage onset"
    k = hit[0]
    p0, p1 = t["phi_max"][k - 1], t["phi_max"][k]
    v0, v1 = t["voltage_V"][k - 1], t["voltage_V"][k]
    return float(v0 + (0.95 - p0) / (p1 - p0) * (v1 - v0))


@pytest.mark.mpi
def test_quasistatic_matches_coupled_when_diffusion_is_fast(runs):
    """Fast diffusion (x_avg - x_surf 2.4e-4 in the coupled run): the coupled cc voltage within
    1 mV of the quasi-static one at the same charge (measured 0.35 mV), the onset voltage
    (phi_max = 0.95, interpolated) within 5 mV (measured 3.4 mV: the two runs take different
    steps, 35 mV apart there) and the final damaged fraction within 2 % (measured 0.15 %)."""
    _, out = runs
    (rc_c, a), (rc_q, b) = out["coupled"], out["quasistatic"]
    assert rc_c["status"] == rc_q["status"] == "finished"
    assert rc_q["kind"] == "quasistatic" and rc_c["kind"] == "coupled"
    assert rc_q["mesh"]["dofs"]["x"] == 1 and rc_q["mesh"]["dofs"]["V"] == 1
    assert rc_q["mesh"]["current_1C_A"] == rc_c["mesh"]["current_1C_A"]
    np.testing.assert_array_equal(b["x_surf_min"], b["x_avg"])
    np.testing.assert_array_equal(b["x_surf_max"], b["x_avg"])
    spread = float(np.max(a["x_avg"] - a["x_surf_min"]))
    assert spread < 3e-4  # the regime of the comparison
    # the quasi-static voltage at the coupled run's charge: U(x) + η(I/A, x) at its x_avg and I
    p = resolve_case(CASE, None).params.electrochemistry
    area_m2 = rc_q["mesh"]["interface_area_um2"] * 1e-12

    def v_qs(t):
        x, i = t["x_avg"], t["current_A"] / area_m2
        i0 = mat.exchange_current_A_m2(
            x, p.c_max_mol_m3, p.c_e_mol_m3, p.m_ref_A_m2p5_mol1p5, p.i0_regularisation_x
        )
        return mat.ocp_V(x, model=p.ocp) + mat.overpotential_V(i, i0, p.T_K)

    cc_a, cc_b = a["protocol_step"] == 0, b["protocol_step"] == 0
    assert np.max(np.abs(v_qs(b)[cc_b] - b["voltage_V"][cc_b])) < 1e-12
    dv = float(np.max(np.abs(v_qs(a)[cc_a] - a["voltage_V"][cc_a])))
    onset = abs(_onset(a) - _onset(b))
    da, db = a["damage_fraction"][-1], b["damage_fraction"][-1]
    assert dv < 1e-3
    assert onset < 5e-3
    assert da > 0.01 and abs(db / da - 1.0) < 0.02
    assert (Path(runs[0]) / "quasistatic" / "radial_damage.csv").is_file()
    # run.json records the resolution: the nominal h/l of the case and the measured mesh size
    for rec in (rc_c, rc_q):
        res, mesh = rec["resolution"], rec["mesh"]
        assert res["h_over_l"] == pytest.approx(res["h_nominal_um"] / res["l_um"], rel=1e-12)
        assert 0.0 < mesh["gb_zone_fraction"] < 1.0
        assert mesh["h_over_l"] == pytest.approx(mesh["h_eq_um"] / mesh["l_um"], rel=1e-12)


@pytest.mark.mpi
def test_quasistatic_restart_reproduces_uninterrupted_run(runs, mpi_tmp_path):
    comm = MPI.COMM_WORLD
    full = runs[1]["quasistatic"][1]
    part = _run(mpi_tmp_path, comm, "quasistatic", stop_after_steps=7)
    assert part["status"] == "interrupted"
    again = _run(mpi_tmp_path, comm, "quasistatic", restart=True)
    assert again["status"] == "finished" and again["kind"] == "quasistatic"
    b = read_table(mpi_tmp_path / "timeseries.csv")
    np.testing.assert_array_equal(full["step"], b["step"])
    for col in COLUMNS:
        x, y = full[col], b[col]
        rel = np.max(np.abs(x - y) / np.maximum(np.abs(x), 1e-300))
        assert rel <= 1e-8, col


@pytest.mark.mpi
def test_quasistatic_fieldsplit_keeps_the_coupled_split_names():
    """u and φ are splits f2 and f3 as in the coupled run, so solver.petsc_options such as
    fieldsplit_f2_pc_gamg_threshold mean the same in both modes."""
    from petsc4py import PETSc
    from polycrack.problems.quasistatic import QuasiStaticProblem

    case = CASE | {"physics": {"mode": "quasistatic"}, "solver": {"linear": "fieldsplit"}}
    pb = QuasiStaticProblem(sphere8_domain(MPI.COMM_WORLD), resolve_case(case, None))
    try:
        prefix = pb.newton.prefix
        splits = {
            k[len(prefix) :].split("_")[1]
            for k in PETSc.Options().getAll()
            if k.startswith(prefix + "fieldsplit_")
        }
        assert splits == {"f2", "f3"}
        assert pb.unknowns == 2 + sum(
            f.function_space.dofmap.index_map.size_global * f.function_space.dofmap.index_map_bs
            for f in pb.fields[2:]
        )
    finally:
        pb.close()
