"""``polycrack run`` for electrochemistry-only cases (``physics.mechanics: false``).

Builds or loads the mesh bundle (``solver.domain.ensure_bundle``/``load_bundle``) and uses its
particle submesh, then the
:class:`~solver.electrochem.Electrochemistry` block, one
monolithic :class:`~solver.nonlinear.BlockNewton` for (x, V), the adaptive BDF stepper and the
protocol runner, and writes the run directory of docs/user-guide.md section 5 through
:mod:`solver.exports` (rank 0 only, one flushed row per accepted step).
"""

from __future__ import annotations

import time
from pathlib import Path

import dolfinx_solver  # noqa: F401  (MPI before dolfinx / petsc4py)
import numpy as np
from mpi4py import MPI
from petsc4py import PETSc

from ..config import CCStep, CVStep, ResolvedCase, SolverConfig
from ..errors import InputError, SolverFailure
from ..meshing.tags import INTERFACE
from ..numerics.nonlinear import BlockNewton
from ..numerics.stepping import AdaptiveBDF
from ..physics import materials as mat
from ..physics.electrochem import Electrochemistry
from .exports import TimeSeriesWriter, git_commit, peak_memory_mb, versions, write_json_atomic
from .protocol import ProtocolRunner

__all__ = [
    "particle_mesh_for_case",
    "electrochem_solver",
    "ElectrochemRun",
    "run_case",
    "X_TOL_FACTOR",
    "X_TOL_CV",
    "x_tolerance",
]

#: Absolute local-error tolerance on x is ``time_rtol * X_TOL_FACTOR`` (``X_TOL_CV`` in CV
#: steps); on V it is ``time_rtol`` volts. CV is tighter because there the current follows
#: η = V - U(x_s) of ~1 mV: at x ≈ 0.18 a 1e-5 error in x_s is a ~4 % error in the current.
X_TOL_FACTOR = 1.0
X_TOL_CV = 0.001


def particle_mesh_for_case(rc: ResolvedCase, out_dir: Path, comm: MPI.Comm) -> tuple:
    """(particle mesh, facet tags, mesh info) of a case: the particle submesh of its mesh bundle
    (``geometry.bundle``, or built into ``out_dir/mesh`` on rank 0 when missing)."""
    from ..physics import domain as _dom

    geo = rc.case.geometry
    path = geo.bundle if geo.bundle is not None else _dom.ensure_bundle(geo, out_dir / "mesh", comm)
    ps = _dom.load_bundle(path, comm).particle_submesh()
    return ps.mesh, ps.facet_tags, {"source": "bundle", "bundle": str(path)}


class ReusedLU:
    """Chord-Newton for (x, V): keep one Jacobian + MUMPS factorisation while dt and mode stay.

    The transport Jacobian is ``M + dt K`` plus the weakly nonlinear Butler-Volmer border; with
    dt and the CC/CV mode fixed it changes little from step to step, so the Jacobian and its LU
    are kept (PETSc ``snes_lag_jacobian``/``snes_lag_preconditioner`` -2, persistent) and Newton
    becomes a chord iteration that still converges to the SNES tolerances (the residual is
    always exact). A fresh Jacobian and factorisation are made when dt/a0 changes by more than
    ``dt_change`` (relative), when the mode changes, after a failed solve, or when the last
    solve needed more than ``max_chord_iterations``. A chord solve is capped at
    ``max_chord_iterations + 2`` iterations; if it stalls (e.g. the sinh of Butler-Volmer at a
    high rate) the same step is re-solved by exact Newton (fresh Jacobian and LU every
    iteration) before the stepper cuts dt.
    """

    def __init__(
        self,
        newton: BlockNewton,
        ec: Electrochemistry,
        dt_change: float = 0.05,
        max_chord_iterations: int = 4,
    ):
        self.newton, self.ec = newton, ec
        self.dt_change, self.max_chord = dt_change, max_chord_iterations
        opts = PETSc.Options()
        pre = newton.snes.getOptionsPrefix() or ""
        for key, val in (
            ("snes_lag_preconditioner_persists", True),
            ("snes_lag_jacobian_persists", True),
        ):
            opts[pre + key] = val
        self._opts, self._pre = opts, pre
        self.max_it = newton.snes.getTolerances()[3]
        self._key: tuple[float, float] | None = None
        self._last_its = 0
        self.refreshes = 0

    def _set_lag(self, lag: int, max_it: int) -> None:
        for key in ("snes_lag_preconditioner", "snes_lag_jacobian"):
            self._opts[self._pre + key] = lag
        self.newton.snes.setFromOptions()
        self.newton.snes.setTolerances(max_it=max_it)

    def solve(self):
        ec = self.ec
        dt, g = float(ec.dt.value) / float(ec.a0.value), float(ec.g.value)  # J ~ a0 (M + dt/a0 K)
        k = self._key
        fresh = (
            k is None
            or g != k[1]
            or abs(dt / k[0] - 1.0) > self.dt_change
            or self._last_its > self.max_chord
        )
        if fresh:  # -2: build at the next iteration, then keep (persistent across solves)
            self._set_lag(-2, self.max_chord + 2)
            self.refreshes += 1
            self._key = (dt, g)
        res = self.newton.solve()
        self._last_its = res.iterations
        if not res.converged:
            # chord stalled (stale or strongly nonlinear Jacobian): exact Newton for this solve
            self._set_lag(1, self.max_it)
            res2 = self.newton.solve()
            res2.iterations += res.iterations
            res2.linear_iterations += res.linear_iterations
            res2.seconds += res.seconds
            res = res2
            self._key = None
            self._set_lag(-2, self.max_chord + 2)
        return res


def timeseries_row(step_no: int, k: int, trial, t: float, s, ec, lattice, rc) -> dict:
    """The electrochemical columns of one timeseries.csv row (docs/user-guide.md section 5).

    ``s`` is ``ec.state()`` after the accepted step at time ``t`` (s); the coupled run adds the
    mechanical columns to this dictionary.
    """
    xa = s.x_avg
    return {
        "step": step_no,
        "time_s": t,
        "dt_s": trial.dt,
        "voltage_V": s.voltage_V,
        "current_A": s.current_A,
        "capacity_mAh_g": float(
            mat.capacity_mAh_g(ec.x0, xa, rc.params.electrochemistry.molar_mass_g_mol)
        ),
        "x_avg": xa,
        "x_surf_min": s.x_surf_min,
        "x_surf_max": s.x_surf_max,
        "eps_a": float(lattice.eps_a(xa)),
        "eps_c": float(lattice.eps_c(xa)),
        "newton_iterations": trial.newton_iterations,
        "protocol_step": k,
        "step_type": rc.case.protocol[k].type,
        "bdf_order": trial.order,
        "error_estimate": trial.error,
    }


def run_record_tail(st, runner, t: float, voltage: float, comm: MPI.Comm) -> dict:
    """The run.json entries every run ends with: step counts, protocol summaries, final state,
    peak memory and finish time (``st`` is the stepper's :class:`StepStats`)."""
    return {
        "steps": {
            "accepted": st.accepted,
            "rejected_error": st.rejected_error,
            "rejected_newton": st.rejected_newton,
            "rejected_event": st.rejected_event,
            "rejected_limiter": st.rejected_limiter,
        },
        "protocol": [s.to_dict() for s in runner.summaries],
        "final": {"time_s": t, "voltage_V": voltage},
        "peak_memory": peak_memory_mb(comm),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def x_tolerance(ec: Electrochemistry, cfg: SolverConfig):
    """Local-error tolerance on x for :class:`AdaptiveBDF` (a callable, read every step).

    ``time_rtol * X_TOL_FACTOR`` in galvanostatic steps (CC, rest), ``time_rtol * X_TOL_CV`` in
    potentiostatic (CV) steps; the tolerance on V is ``time_rtol`` volts.
    """

    def tol() -> float:
        return cfg.time_rtol * (X_TOL_FACTOR if ec.mode == "galvanostatic" else X_TOL_CV)

    return tol


def electrochem_solver(
    ec: Electrochemistry, cfg: SolverConfig, limiters=(), reuse_lu: bool | None = None
) -> tuple[BlockNewton, AdaptiveBDF]:
    """The monolithic (x, V) Newton solver and the adaptive BDF stepper for a block.

    ``solver.linear``: ``mumps`` and ``mumps_lagged`` use MUMPS LU of the whole bordered (x, V)
    Jacobian; by default (``reuse_lu=None``) both keep the Jacobian and its factorisation while
    dt and the mode stay the same (:class:`ReusedLU`, chord Newton to the same SNES
    tolerances; 2-3x faster on 2 ranks). ``reuse_lu=False`` gives exact Newton with a fresh LU
    per iteration. ``auto`` is ``mumps`` here (the (x, V) block alone is small);
    ``staggered`` has nothing to stagger without mechanics and maps to ``mumps``;
    ``fieldsplit`` puts (x, V) in one exact-LU split (no gain without mechanics).
    """
    linear = "mumps" if cfg.linear in ("auto", "staggered", "mumps_lagged") else cfg.linear
    lagged = linear == "mumps" if reuse_lu is None else (reuse_lu and linear == "mumps")
    newton = BlockNewton(
        ec.residuals(),
        ec.unknowns,
        ["scalar", "real"],
        linear=linear,
        rtol=cfg.newton_rtol,
        atol=cfg.newton_atol,
        max_it=cfg.newton_max_iterations,
        name="ec",
        groups=[[0, 1]],
    )
    solve = newton.solve
    if lagged:
        solve = ReusedLU(newton, ec).solve
    stepper = AdaptiveBDF(
        ec.unknowns,
        solve,
        ec.set_bdf,
        history={0: (ec.x_n, ec.x_nn)},
        tolerances=[x_tolerance(ec, cfg), cfg.time_rtol],
        dt_min=cfg.dt_min_s,
        dt_max=cfg.dt_max_s,
        max_retries=cfg.max_retries,
        newton_max_iterations=cfg.newton_max_iterations,
        limiters=limiters,
    )
    return newton, stepper


class _Progress:
    """Rank-0 rich progress bar: protocol step, step count, hours, voltage, current."""

    def __init__(self, enabled: bool, steps: list, ec: Electrochemistry, x0: float):
        self.enabled = enabled and MPI.COMM_WORLD.rank == 0
        self.steps, self.ec, self.x0 = steps, ec, x0
        self._p = None
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
            )
            self._p.start()
            self._task = None
            self._k = -1

    def update(self, step_no: int, k: int, t: float, V: float, I_A: float, x_avg: float):
        if not self.enabled:
            return
        step = self.steps[k]
        if k != self._k:
            if self._task is not None:
                self._p.update(self._task, completed=100)
            self._task = self._p.add_task(
                f"{k + 1}/{len(self.steps)} {step.type}", total=100, info=""
            )
            self._k, self._t0, self._i0 = k, t, I_A
        frac = 0.0
        if isinstance(step, CCStep):
            try:
                x_end = mat.x_at_voltage(step.until_voltage_V)
                frac = (self.x0 - x_avg) / (self.x0 - x_end) if self.x0 != x_end else 0.0
            except ValueError:
                frac = 0.0
            if step.max_time_s:
                frac = max(frac, (t - self._t0) / step.max_time_s)
        elif isinstance(step, CVStep):
            if step.until_c_rate and self._i0:
                i_stop = self.ec.c_rate_current_A(step.until_c_rate)
                ratio = abs(self._i0) / i_stop
                if ratio > 1 and abs(I_A) > 0:
                    frac = np.log(abs(self._i0) / abs(I_A)) / np.log(ratio)
            if step.max_time_s:
                frac = max(frac, (t - self._t0) / step.max_time_s)
        else:
            frac = (t - self._t0) / step.duration_s
        info = f"step {step_no}  {t / 3600:7.3f} h  {V:.4f} V  {I_A:.3e} A"
        self._p.update(self._task, completed=100 * min(max(frac, 0.0), 1.0), info=info)

    def close(self):
        if self._p is not None:
            if self._task is not None:
                self._p.update(self._task, completed=100)
            self._p.stop()


class ElectrochemRun:
    """An electrochemistry-only run of a resolved case into ``out_dir``.

    ``mesh=(particle_mesh, facet_tags)`` skips mesh building (tests, benchmarks).
    """

    def __init__(
        self,
        rc: ResolvedCase,
        out_dir: Path,
        comm: MPI.Comm = MPI.COMM_WORLD,
        progress: bool = True,
        mesh: tuple | None = None,
        reuse_lu: bool | None = None,
    ):
        self.rc, self.comm, self.progress = rc, comm, progress
        self.reuse_lu = reuse_lu
        self.out_dir = Path(out_dir)
        self.mesh = mesh
        self.phases: dict[str, float] = {}

    def _record(self) -> dict:
        rc = self.rc
        return {
            "status": "running",
            "kind": "electrochemistry",
            "resolved": rc.to_dict(),
            "versions": versions(),
            "git_commit": git_commit(),
            "mpi_size": self.comm.size,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def run(self) -> dict:
        """Run the protocol; returns the run.json record (also written to ``out_dir``)."""
        comm, rc = self.comm, self.rc
        t_all = time.perf_counter()
        if comm.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        comm.barrier()
        record = self._record()
        write_json_atomic(self.out_dir / "run.json", record, comm)

        t0 = time.perf_counter()
        if self.mesh is None:
            msh, ft, mesh_info = particle_mesh_for_case(rc, self.out_dir, comm)
        else:
            msh, ft = self.mesh[:2]
            mesh_info = {"source": "given"}
        self.phases["mesh_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        ecp = rc.params.electrochemistry
        ec = Electrochemistry(msh, ft, INTERFACE, ecp)
        newton, stepper = electrochem_solver(ec, rc.case.solver, reuse_lu=self.reuse_lu)
        reuse = getattr(stepper.solve, "__self__", None)
        lattice = mat.LatticeStrains.from_params(rc.params, rc.lattice_table_path)
        n_x = ec.W.dofmap.index_map.size_global
        mesh_info.update(
            {
                "cells": msh.topology.index_map(3).size_global,
                "x_dofs": n_x,
                "unknowns": n_x + 1,
                "particle_volume_um3": ec.volume_um3,
                "interface_area_um2": ec.area_um2,
                "current_1C_A": ec.i_1c_A,
            }
        )
        record["mesh"] = mesh_info
        writer = TimeSeriesWriter(self.out_dir / "timeseries.csv", comm=comm)
        bar = _Progress(self.progress, rc.case.protocol, ec, ec.x0)
        self.phases["setup_s"] = time.perf_counter() - t0

        def on_accept(step_no, k, trial):
            s = ec.state()
            writer.append(timeseries_row(step_no, k, trial, stepper.t, s, ec, lattice, rc))
            bar.update(step_no, k, stepper.t, s.voltage_V, s.current_A, s.x_avg)

        runner = ProtocolRunner(ec, stepper, rc.case.protocol, rc.case.solver, on_accept)
        t0 = time.perf_counter()
        status, message = "completed", ""
        try:
            runner.run()
        except (SolverFailure, Exception) as exc:
            status, message = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            bar.close()
            writer.close()
            self.phases["solve_s"] = time.perf_counter() - t0
            self.phases["total_s"] = time.perf_counter() - t_all
            st = stepper.stats
            record.update(
                {
                    "status": status,
                    "message": message,
                    "wall_time_s": dict(self.phases),
                    "solver": {
                        "linear": newton.linear,
                        "lu_reuse": isinstance(reuse, ReusedLU),
                        "jacobian_refreshes": getattr(reuse, "refreshes", None),
                        "newton_iterations": st.newton_iterations,
                        "newton_iterations_accepted": st.newton_iterations_accepted,
                        "linear_iterations": st.linear_iterations,
                        "solve_seconds": st.solve_seconds,
                    },
                    **run_record_tail(st, runner, stepper.t, ec.voltage, comm),
                }
            )
            write_json_atomic(self.out_dir / "run.json", record, comm)
        return record


def run_case(rc: ResolvedCase, out_dir: Path | None, comm: MPI.Comm = MPI.COMM_WORLD) -> dict:
    """``polycrack run`` of an electrochemistry-only case (the CLI sends coupled cases to
    :class:`solver.coupled_run.CoupledRun`)."""
    if rc.case.physics.mechanics:
        raise InputError(
            "run_case runs electrochemistry-only cases (physics.mechanics: false); coupled cases "
            "go to solver.coupled_run.CoupledRun (polycrack run does this)"
        )
    if out_dir is None:
        out_dir = rc.case.output.dir or Path("runs") / (rc.case.name or "run")
    rec = ElectrochemRun(rc, Path(out_dir), comm).run()
    if comm.rank == 0:
        st = rec["steps"]
        print(
            f"done: {st['accepted']} steps, {rec['final']['time_s'] / 3600:.3f} h, "
            f"V = {rec['final']['voltage_V']:.4f} V, wall {rec['wall_time_s']['total_s']:.1f} s; "
            f"wrote {Path(out_dir) / 'timeseries.csv'}"
        )
    return rec
