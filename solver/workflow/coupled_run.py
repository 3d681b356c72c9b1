"""A coupled chemo-mechanical run into a run directory (docs/user-guide.md section 5).

Data path: mesh bundle -> :class:`~solver.mechanics.ParticleDomain` ->
:class:`~solver.coupled.CoupledProblem` -> adaptive BDF stepper + protocol runner -> per accepted
step: H update, observables, one ``timeseries.csv`` row, ``radial_damage.csv`` row, field output
at chosen voltages, checkpoint every N steps / M minutes. SIGTERM and SIGINT finish the current
step, write a checkpoint and exit cleanly (status ``interrupted``); ``--restart DIR`` continues
from the checkpoint and reproduces the uninterrupted run.
"""

from __future__ import annotations

import gc
import signal
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
from dolfinx import fem
from mpi4py import MPI

from ..config import ResolvedCase
from ..errors import InputError, SolverFailure
from ..numerics.stepping import AdaptiveBDF
from ..physics import materials as mat
from ..physics.fracture import fracture_summary
from ..physics.mechanics import ParticleDomain
from ..post.metrics import RADIAL_SHELLS
from ..problems.coupled import CoupledProblem
from . import checkpoint
from .exports import TimeSeriesWriter, git_commit, versions, write_json_atomic
from .protocol import ProtocolRunner
from .run import run_record_tail, timeseries_row, x_tolerance

RADIAL_COLUMNS = ("step", "time_s", "voltage_V") + tuple(
    f"shell_{a:.2f}_{b:.2f}" for a, b in zip(RADIAL_SHELLS[:-1], RADIAL_SHELLS[1:], strict=True)
)
FIELD_NAMES = ("x", "V", "u", "phi")
#: this many accepted steps in a row shorter than STALL_DT_S with the rate-independent phase
#: field print a hint: an unstable crack advance at fixed load (docs/user-guide.md section 6)
STALL_STEPS, STALL_DT_S = 20, 1.0


class Interrupted(Exception):
    """SIGTERM/SIGINT arrived; a checkpoint was written."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


class _Signals:
    """Turn SIGTERM/SIGINT into a flag that every rank agrees on after every step attempt."""

    def __init__(self):
        self.received = 0
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            self._old[s] = signal.signal(s, self._handler)
        return self

    def _handler(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)

    def agreed(self, comm: MPI.Comm) -> int:
        return comm.allreduce(self.received, op=MPI.MAX)


def domain_for_case(rc: ResolvedCase, out_dir: Path, comm: MPI.Comm) -> ParticleDomain:
    """The case's mesh bundle (built on rank 0 if missing) as a ParticleDomain."""
    from ..physics import domain as _dom

    geo = rc.case.geometry
    path = geo.bundle if geo.bundle is not None else _dom.ensure_bundle(geo, out_dir / "mesh", comm)
    return ParticleDomain.from_domain(_dom.load_bundle(path, comm))


class CoupledRun:
    """Run a resolved case with mechanics (and fracture) into ``out_dir``.

    ``dom`` skips mesh loading (tests). ``restart`` continues from ``out_dir/checkpoint.npz``.
    """

    def __init__(
        self,
        rc: ResolvedCase,
        out_dir: Path,
        comm: MPI.Comm = MPI.COMM_WORLD,
        *,
        dom: ParticleDomain | None = None,
        restart: bool = False,
        verbose: bool = True,
        stop_after_steps: int | None = None,
    ):
        self.rc, self.comm = rc, comm
        self.out = Path(out_dir)
        self.dom = dom
        self.restart = restart
        self.verbose = verbose and comm.rank == 0
        self.stop_after_steps = stop_after_steps  # tests: behave as if SIGTERM came then
        self.phases: dict[str, float] = {}

    # -- helpers --------------------------------------------------------------------------------
    def _log(self, msg: str) -> None:
        if self.verbose:
            print(msg, flush=True)

    def _checkpoint(self, cp: CoupledProblem, st: AdaptiveBDF, runner, extra: dict) -> None:
        fields = dict(zip(FIELD_NAMES, cp.fields, strict=False))
        for i, state in enumerate(st._states):
            for name, f, arr in zip(FIELD_NAMES, cp.fields, state, strict=False):
                g = fem.Function(f.function_space)
                g.x.array[:] = arr
                fields[f"state{i}_{name}"] = g
        if cp.fracture:
            fields["H"] = cp.blocks.history.H
        state = {
            "t": st.t,
            "times": list(st._times),
            "n_states": len(st._states),
            "stats": {k: v for k, v in st.stats.__dict__.items() if k != "log"},
            "step_control": st.control_state(),
            "position": runner.position,
            "coupled_stats": dict(cp.stats),
            **cp.fallback_state(),
            **extra,
        }
        checkpoint.save(self.out / "checkpoint.npz", fields, state, self.comm)

    def _restore(self, cp: CoupledProblem, st: AdaptiveBDF) -> dict:
        path = self.out / "checkpoint.npz"
        meta = checkpoint.read_state(path)
        fields = dict(zip(FIELD_NAMES, cp.fields, strict=False))
        tmp = []
        for i in range(meta["n_states"]):
            row = []
            for name, f in zip(FIELD_NAMES, cp.fields, strict=False):
                g = fem.Function(f.function_space)
                fields[f"state{i}_{name}"] = g
                row.append(g)
            tmp.append(row)
        if cp.fracture:
            fields["H"] = cp.blocks.history.H
        checkpoint.load(path, fields, self.comm)
        st._states = [[g.x.array.copy() for g in row] for row in tmp]
        st._times = list(meta["times"])
        st.t = meta["t"]
        for k, v in meta["stats"].items():
            setattr(st.stats, k, v)
        st.set_control_state(meta.get("step_control", {}))
        cp.stats.update(meta["coupled_stats"])
        cp.set_fallback_state(meta)
        if cp.fracture:
            cp.commit_phi()
        return meta

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> dict:
        comm, rc = self.comm, self.rc
        t_all = time.perf_counter()
        gc.collect()  # collective point: garbage of earlier runs (PETSc objects) goes now
        if comm.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        comm.barrier()
        if self.restart and not (self.out / "checkpoint.npz").is_file():
            raise InputError(f"--restart {self.out}: no checkpoint.npz in that run directory")
        record = {
            "status": "running",
            "kind": "coupled",
            "resolved": rc.to_dict(),
            "versions": versions(),
            "git_commit": git_commit(),
            "mpi_size": comm.size,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "fracture_summary": fracture_summary(rc.params),
        }
        write_json_atomic(self.out / "run.json", record, comm)

        t0 = time.perf_counter()
        dom = self.dom if self.dom is not None else domain_for_case(rc, self.out, comm)
        self.phases["mesh_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cfg = rc.case.solver
        cp = CoupledProblem(dom, rc)
        ec = cp.ec
        # same local-error control of (x, V) as the electrochemistry-only run; u and phi follow
        tols = [x_tolerance(ec, cfg), cfg.time_rtol] + [None] * (len(cp.fields) - 2)
        st = AdaptiveBDF(
            cp.fields,
            cp.solve,
            ec.set_bdf,
            history={0: (ec.x_n, ec.x_nn)},
            tolerances=tols,
            dt_min=cfg.dt_min_s,
            dt_max=cfg.dt_max_s,
            max_retries=cfg.max_retries,
            newton_max_iterations=cfg.newton_max_iterations,
            limiters=[cp.dphi_limiter(cfg.max_dphi_per_step)],
        )
        lattice = mat.LatticeStrains.from_params(rc.params, rc.lattice_table_path)
        ndofs = {
            n: f.function_space.dofmap.index_map.size_global * f.function_space.dofmap.index_map_bs
            for n, f in zip(FIELD_NAMES, cp.fields, strict=False)
        }
        record["mesh"] = {
            "cells": dom.mesh.topology.index_map(3).size_global,
            "particle_cells": dom.submesh.topology.index_map(3).size_global,
            "dofs": ndofs,
            "unknowns": sum(ndofs.values()),
            "particle_volume_um3": ec.volume_um3,
            "interface_area_um2": ec.area_um2,
            "current_1C_A": ec.i_1c_A,
        }
        self._log(
            f"polycrack: {record['mesh']['cells']} cells, {record['mesh']['unknowns']} unknowns "
            f"on {comm.size} rank(s), solver {cp.linear}"
        )
        resume, meta = None, {}
        if self.restart:
            meta = self._restore(cp, st)
            resume = meta["position"]
            self._log(f"restart from step {resume['step_no']} at t = {st.t / 3600:.4f} h")
            if comm.rank == 0:  # rows written after the checkpoint are computed again
                _truncate_rows(self.out / "timeseries.csv", resume["step_no"])
                _truncate_rows(self.out / "radial_damage.csv", resume["step_no"])
        writer = TimeSeriesWriter(self.out / "timeseries.csv", comm=comm, resume=self.restart)
        radial = TimeSeriesWriter(
            self.out / "radial_damage.csv", RADIAL_COLUMNS, comm=comm, resume=self.restart
        )
        targets = sorted(rc.case.output.fields_at_voltages_V)
        written = set(meta.get("fields_written", []))
        last_ckpt = {"t": time.perf_counter(), "step": resume["step_no"] if resume else 0}
        # time-loop wall time of the earlier segments of a restarted run, up to their last
        # checkpoint (work after it is lost and done again in this segment)
        clock = {"before": float(meta.get("solve_s_all_segments", 0.0)), "t0": time.perf_counter()}

        def extra() -> dict:
            return {
                "fields_written": sorted(written),
                "solve_s_all_segments": clock["before"] + time.perf_counter() - clock["t0"],
            }

        self.phases["setup_s"] = time.perf_counter() - t0
        runner = None
        sig = _Signals()
        cp.should_stop = lambda: bool(sig.agreed(comm))

        stall = {
            "steps": 0,
            "hinted": not cp.fracture or rc.case.physics.phase_field_relaxation_s > 0,
        }

        def on_accept(step_no: int, k: int, trial) -> None:
            cp.after_accept()
            obs = cp.observables()
            s = ec.state()
            row = timeseries_row(step_no, k, trial, st.t, s, ec, lattice, rc)
            row.update(
                {
                    "damage_fraction": obs.get("damage_fraction", 0.0),
                    "damage_gb_share": obs.get("damage_gb_share"),
                    "phi_max": obs.get("phi_max", 0.0),
                    "sigma1_max_Pa": obs["sigma1_max_Pa"],
                }
            )
            writer.append(row)
            shells = obs.get("radial_damage_fraction", [0.0] * (len(RADIAL_SHELLS) - 1))
            radial.append(
                {"step": step_no, "time_s": st.t, "voltage_V": s.voltage_V}
                | dict(zip(RADIAL_COLUMNS[3:], shells, strict=True))
            )
            self._log(
                f"step {step_no:4d}  {st.t / 3600:8.3f} h  {s.voltage_V:.4f} V  "
                f"{s.current_A:+.3e} A  damage {obs.get('damage_fraction', 0.0):.4f}  "
                f"phi_max {obs.get('phi_max', 0.0):.3f}  newton {trial.newton_iterations}"
                + ("  (crack jump: dphi limit waived)" if cp.last_step_jump else "")
            )
            stall["steps"] = stall["steps"] + 1 if trial.dt < STALL_DT_S else 0
            if stall["steps"] >= STALL_STEPS and not stall["hinted"]:
                stall["hinted"] = True
                hint = (
                    f"{STALL_STEPS} steps in a row shorter than {STALL_DT_S:g} s at "
                    f"{s.voltage_V:.4f} V: the crack advances unstably at fixed load, which the "
                    "rate-independent phase field cannot follow; physics.phase_field_relaxation_s "
                    "(e.g. 10) lets the run through it (docs/user-guide.md section 6)"
                )
                record.setdefault("warnings", []).append(hint)
                self._log(f"hint: {hint}")
            for v in targets:
                key = f"{v:.3f}"
                if key not in written and s.voltage_V >= v - 1e-3:
                    written.add(key)
                    self._fields(cp, f"{v:.2f}V", s.voltage_V)
            stop = self.stop_after_steps is not None and step_no >= self.stop_after_steps
            signum = sig.agreed(comm) or (signal.SIGTERM if stop else 0)
            n_every, m_every = (
                rc.case.output.checkpoint_every_steps,
                rc.case.output.checkpoint_every_minutes,
            )
            due = (n_every and step_no - last_ckpt["step"] >= n_every) or (
                m_every and time.perf_counter() - last_ckpt["t"] >= 60 * m_every
            )
            due = comm.bcast(bool(due), root=0)
            if signum or due:
                self._checkpoint(cp, st, runner, extra())
                last_ckpt.update(t=time.perf_counter(), step=step_no)
            if signum:
                raise Interrupted(signum)

        def on_reject(msg: str) -> None:
            # a signal during a run of failing attempts (minutes each at a damage onset) must
            # not wait for the next accepted step: the fields are back at the committed state
            self._log(msg)
            signum = sig.agreed(comm)
            if signum:
                self._checkpoint(cp, st, runner, extra())
                raise Interrupted(signum)

        st.on_reject = on_reject
        runner = ProtocolRunner(ec, st, rc.case.protocol, cfg, on_accept)
        t0 = clock["t0"] = time.perf_counter()
        status, message, code = "finished", "", 0
        try:
            with sig:
                runner.run(resume)
            self._fields(cp, "final", ec.voltage)
        except Interrupted as exc:
            status, message = "interrupted", f"stopped by signal {exc.signum}; checkpoint written"
            code = 128 + int(exc.signum)
        except SolverFailure as exc:
            status, message, code = "failed", str(exc), 1
        finally:
            cp.close()
            writer.close()
            radial.close()
            self.phases["solve_s"] = time.perf_counter() - t0
            self.phases["solve_s_all_segments"] = clock["before"] + self.phases["solve_s"]
            self.phases["total_s"] = time.perf_counter() - t_all
            s = st.stats
            record.update(
                {
                    "status": status,
                    "message": message,
                    "error": message if status == "failed" else "",
                    "wall_time_s": dict(self.phases),
                    "solver": {
                        "linear": cp.linear,
                        "newton_iterations": s.newton_iterations,
                        "linear_iterations": s.linear_iterations,
                        "solve_seconds": s.solve_seconds,
                        **cp.stats,
                    },
                    **run_record_tail(s, runner, st.t, ec.voltage, comm),
                }
            )
            write_json_atomic(self.out / "run.json", record, comm)
        record["exit_code"] = code
        if status == "failed":
            raise SolverFailure(message)
        return record

    def _fields(self, cp: CoupledProblem, tag: str, voltage: float) -> None:
        """XDMF fields (particle: x, phi, gamma, sigma1; parent: u) and mid-plane renders."""
        from dolfinx.io import XDMFFile

        from ..post.render import midplane_png

        fdir = self.out / "fields"
        if self.comm.rank == 0:
            fdir.mkdir(parents=True, exist_ok=True)
        self.comm.barrier()
        s1 = cp.sigma1()
        with XDMFFile(self.comm, fdir / f"particle_{tag}.xdmf", "w") as f:
            f.write_mesh(cp.dom.submesh)
            f.write_function(cp.ec.x)
            if cp.fracture:
                f.write_function(cp.blocks.phi)
                gamma = cp.blocks.gamma
                gamma.name = "gamma"
                f.write_function(gamma)
        with XDMFFile(self.comm, fdir / f"displacement_{tag}.xdmf", "w") as f:
            f.write_mesh(cp.dom.mesh)
            if cp.blocks.u.function_space.element.basix_element.degree == 1:
                f.write_function(cp.blocks.u)
        figs = self.out / "figures"
        title = f"{voltage:.3f} V"
        if cp.fracture:
            midplane_png(
                cp.blocks.phi, figs / f"phi_{tag}.png", title=f"phi at {title}", clim=(0, 1)
            )
        midplane_png(
            s1, figs / f"sigma1_{tag}.png", title=f"sigma1 (GPa) at {title}", cmap="coolwarm"
        )


def _truncate_rows(path: Path, last_step: int) -> None:
    """Drop rows with ``step`` > last_step (written after the checkpoint that we restart from)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = lines[:1] + [ln for ln in lines[1:] if ln.strip() and int(ln.split(",")[0]) <= last_step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(keep))
    tmp.replace(path)
