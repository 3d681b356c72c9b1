"""The run driver: one resolved case into one run directory, for every problem kind.

Data path: mesh bundle -> problem (:class:`~polycrack.problems.electrochemistry.ElectrochemProblem`
or :class:`~polycrack.problems.coupled.CoupledProblem`) -> adaptive BDF stepper + protocol runner
-> per accepted step: the problem's update and observables, one ``timeseries.csv`` row (and a
``radial_damage.csv`` row), field output at chosen voltages, a checkpoint every N steps / M
minutes. SIGTERM and SIGINT finish the current step, write a checkpoint and stop (status
``interrupted``); ``--restart DIR`` continues from the checkpoint and reproduces the uninterrupted
run. Every exit path writes the true status (:class:`~polycrack.workflow.status.RunStatus`).

Run identity: ``run.json`` and the checkpoint carry a run id and a fingerprint of the resolved
case. A restart refuses a checkpoint of another run, and a case that changed in anything but the
output options, the solver options and a longer protocol, unless each changed key is named with
``allow_changes`` (recorded in ``run.json``). A new run into a directory that holds a run is
refused unless ``overwrite`` (which removes that run's files, keeping a ``mesh/`` bundle).
"""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
import signal
import time
import uuid
from pathlib import Path

import dolfinx_solver  # noqa: F401  (MPI before dolfinx / petsc4py)
from dolfinx import fem
from mpi4py import MPI

from ..collective import collective, make_writable_dir
from ..config import ResolvedCase
from ..errors import InputError, SolverFailure
from ..physics import materials as mat
from ..physics.fracture import fracture_summary
from ..physics.mechanics import ParticleDomain
from ..physics.mechanisms import labels as mechanism_labels
from ..problems.base import Problem
from ..problems.coupled import CoupledProblem
from ..problems.electrochemistry import ElectrochemProblem
from ..problems.quasistatic import QuasiStaticProblem
from . import checkpoint
from . import lock as run_lock
from .exports import TimeSeriesWriter, git_commit, peak_memory_mb, versions, write_json_atomic
from .protocol import ProtocolRunner
from .regrid import AdaptPolicy, MeshChange, adapted_domain, save_adapted_mesh, transfer_all
from .status import RunStatus
from .summary import case_warnings, resolution

__all__ = ["Run", "CoupledRun", "ElectrochemRun", "run_case", "timeseries_row", "RunStatus"]

#: files and folders a run writes; ``overwrite`` removes exactly these (a ``mesh/`` bundle stays)
RUN_FILES = ("run.json", "timeseries.csv", "radial_damage.csv", "checkpoint.npz")
RUN_DIRS = ("fields", "figures", "mesh_adapted")
#: resolved-case keys that may change on restart without ``allow_changes`` (prefixes)
RESTART_FREE = ("case.output.", "case.solver.", "case.name", "case_file", "parameter_set_file")
#: ... and those that never may (the fields on disk would not match)
RESTART_FIXED = ("case.geometry.", "case.physics.")
#: case keys added since checkpoints carry the resolved case, with the value a checkpoint that
#: lacks the key was run with (its restart is then not a change)
ADDED_KEYS = {
    "case.physics.mode": "coupled",
    "case.physics.mechanisms.grain_heterogeneity.ocp_shift_std_V": 0.0,
    "case.physics.mechanisms.grain_heterogeneity.i0_log_std": 0.0,
    "case.physics.mechanisms.grain_heterogeneity.D_log_std": 0.0,
    "case.physics.mechanisms.grain_heterogeneity.seed": 0,
    "case.physics.mechanisms.diffusivity_of_x": "none",
    "case.physics.mechanisms.gb_eigenstrain_weight": False,
    "case.physics.mechanisms.toughness_of_x": "none",
    # adaptive runs before the corrector: they moved the accepted state (continue one with
    # geometry.mesh.adapt.max_corrections: 0)
    "case.geometry.mesh.adapt.max_corrections": 0,
    "case.geometry.mesh.adapt.history_transfer": "parent_max",
}
#: this many accepted steps in a row shorter than STALL_DT_S print the problem's stall hint
STALL_STEPS, STALL_DT_S = 20, 1.0
RADIAL_HEAD = ("step", "time_s", "voltage_V")


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


# -- identity of a run ----------------------------------------------------------------------------
def flat_resolved(rc: ResolvedCase) -> dict[str, object]:
    """The resolved case (case + parameters) as ``{"dotted.key": value}`` (lists by index)."""
    out: dict[str, object] = {}

    def walk(prefix: str, v) -> None:
        if isinstance(v, dict):
            for k, w in v.items():
                walk(f"{prefix}{k}.", w)
        elif isinstance(v, list) and v and all(isinstance(w, dict) for w in v):
            for i, w in enumerate(v):
                walk(f"{prefix}{i}.", w)
        else:
            out[prefix[:-1]] = v

    d = rc.to_dict()
    d.pop("sources", None)
    walk("", json.loads(json.dumps(d, default=str)))
    return out


def fingerprint(flat: dict[str, object]) -> str:
    """sha256 of the resolved case without the keys that may change freely on restart."""
    kept = {k: v for k, v in flat.items() if not k.startswith(RESTART_FREE)}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def restart_changes(old: dict, new: dict, allow: set[str]) -> dict[str, list]:
    """Keys whose value differs between two flat resolved cases -> [old, new].

    Raises:
        InputError: a key changed that is neither free, nor a longer protocol, nor allowed.
    """
    old, new = ({**ADDED_KEYS, **d} if d else d for d in (old, new))
    changed = {
        k: [old.get(k), new.get(k)]
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k) and not k.startswith(RESTART_FREE)
    }
    n_old = 1 + max(
        (int(k.split(".")[2]) for k in old if k.startswith("case.protocol.")), default=-1
    )
    bad = []
    for k, (a, b) in changed.items():
        longer = k.startswith("case.protocol.") and a is None and int(k.split(".")[2]) >= n_old
        if k.startswith(RESTART_FIXED) or (a is not None and b is None):
            bad.append(f"{k}: {a!r} -> {b!r} (cannot change on restart)")
        elif not longer and _strip(k) not in allow:
            bad.append(f"{k}: {a!r} -> {b!r}")
    if bad:
        raise InputError(
            "--restart: the case differs from the one the checkpoint was written with: "
            + "; ".join(bad[:6])
            + ("; ..." if len(bad) > 6 else "")
            + ". Restore the old values, start a new run (--overwrite), or accept a change with "
            "--allow-changes KEY (not for geometry, physics or a shorter protocol)"
        )
    return changed


def _strip(key: str) -> str:
    """``case.fracture...``/``parameters.fracture.Gc`` -> the key a user types in ``--set``."""
    return key.split(".", 1)[1] if key.startswith(("case.", "parameters.")) else key


def timeseries_row(step_no: int, k: int, trial, t: float, s, ec, lattice, rc) -> dict:
    """The electrochemical columns of one ``timeseries.csv`` row.

    Args:
        step_no: accepted-step number; k: protocol step index; trial: the accepted trial;
        t: time (s); s: ``ec.state()`` after the step; ec: the electrochemistry block;
        lattice: the lattice-strain law; rc: the resolved case.
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


def mechanics_problem(dom: ParticleDomain, rc: ResolvedCase) -> CoupledProblem:
    """The problem of a case with mechanics on ``dom``: coupled, or quasi-static
    (``physics.mode``)."""
    if rc.case.physics.mode == "quasistatic":
        return QuasiStaticProblem(dom, rc)
    return CoupledProblem(dom, rc)


def load_problem(rc: ResolvedCase, out_dir: Path, comm: MPI.Comm) -> Problem:
    """The case's problem on its mesh bundle (``geometry.bundle``, or built into
    ``out_dir/mesh`` on rank 0 when missing)."""
    from ..physics import domain as _dom

    geo = rc.case.geometry
    path = geo.bundle if geo.bundle is not None else _dom.ensure_bundle(geo, out_dir / "mesh", comm)
    domain = _dom.load_bundle(path, comm, geo.mesh.refine_levels)
    if rc.case.physics.mechanics:
        return mechanics_problem(ParticleDomain.from_domain(domain), rc)
    ps = domain.particle_submesh()
    return ElectrochemProblem(ps.mesh, ps.facet_tags, rc)


def adapt_policy(rc: ResolvedCase, out_dir: Path) -> AdaptPolicy:
    """The policy of ``geometry.mesh.adapt``; the bundle's ``mesh.json`` gives the particle
    shape that refined surface vertices are pushed onto."""
    phys = rc.case.physics
    if not (phys.mechanics and phys.fracture):
        raise InputError(
            "geometry.mesh.adapt: adaptive refinement follows the fracture fields; it needs "
            "physics.mechanics and physics.fracture"
        )
    geo, fr = rc.case.geometry, rc.params.fracture
    path = Path(geo.bundle if geo.bundle is not None else Path(out_dir) / "mesh") / "mesh.json"
    info = json.loads(path.read_text()) if path.is_file() else None
    size = ((info or {}).get("settings") or {}).get("mesh", {}).get("particle_size_um")
    h_nominal = size / 2**geo.mesh.refine_levels if size else None  # None: no bundle
    return AdaptPolicy(
        geo.mesh.adapt, 1e6 * fr.l_m, 1e6 * min(fr.l_m, fr.l_gamma_m), info, h_nominal
    )


def _collective(comm: MPI.Comm, fn):
    """Run ``fn`` on rank 0; any error there is raised on every rank (an OSError or other
    exception as InputError naming the run directory; polycrack.collective). Returns fn's value."""
    value = None
    with collective(comm, "run directory", "run_dir"):
        if comm.rank == 0:
            value = fn()
    return comm.bcast(value, root=0)


class Run:
    """Run a resolved case into ``out_dir`` (collective over ``comm``).

    Args:
        rc: the resolved case.
        out_dir: the run directory.
        comm: communicator of the run.
        problem: a ready problem (tests, benchmarks); default: built from the case's bundle.
        restart: continue from ``out_dir/checkpoint.npz``.
        allow_changes: case keys (as in ``--set``) that may differ on restart.
        overwrite: replace a run already in ``out_dir``.
        verbose: print one line per accepted step on rank 0.
        stop_after_steps: behave as if SIGTERM came after this many steps (tests).
        adapt: a mesh-change policy (:class:`polycrack.workflow.regrid.MeshPolicy`); None keeps
            the mesh.
    """

    def __init__(
        self,
        rc: ResolvedCase,
        out_dir: Path,
        comm: MPI.Comm = MPI.COMM_WORLD,
        *,
        problem: Problem | None = None,
        restart: bool = False,
        allow_changes: tuple[str, ...] = (),
        overwrite: bool = False,
        verbose: bool = True,
        stop_after_steps: int | None = None,
        adapt=None,
    ):
        self.rc, self.comm = rc, comm
        #: mesh-change policy (``propose(problem, step_no)`` -> (mesh, cell tags, facet tags) or
        #: None, ``state_dict``/``load_state_dict``); None: the mesh never changes
        self.adapt = adapt
        #: the adapted mesh the problem lives on (run-directory relative) and its grain data
        self.mesh_state: dict | None = None
        self.out = Path(out_dir)
        self.problem = problem
        self.restart, self.allow = restart, set(allow_changes)
        self.overwrite = overwrite
        self.verbose = verbose and comm.rank == 0
        self.stop_after_steps = stop_after_steps
        self.phases: dict[str, float] = {}
        self.stepper = self.runner = None
        self.lock: Path | None = None  # rank 0: run.lock, held from set-up to the final record
        self.signals = _Signals()
        self.written: set[str] = set()
        self.flat = flat_resolved(rc)
        #: (fields, state) at the start of the step being computed, for the corrector
        self.before: tuple[dict, dict] | None = None

    def _log(self, msg: str) -> None:
        if self.verbose:
            print(msg, flush=True)

    # -- run directory and record ----------------------------------------------------------------
    def _prepare_directory(self) -> dict:
        """Create or check ``out_dir``; returns the record to start from (collective)."""

        def prepare() -> dict:
            out = self.out
            if out.exists() and not out.is_dir():
                raise InputError(f"-o {out}: exists and is not a directory")
            if self.restart and not (out / "checkpoint.npz").is_file():
                raise InputError(f"--restart {out}: no checkpoint.npz in that run directory")
            make_writable_dir(out, "run directory")  # also fails for /proc, read-only mounts
            self.lock = run_lock.acquire(out)  # before anything in it is read or removed
            try:
                return self._restart_record() if self.restart else fresh()
            except BaseException:
                run_lock.release(self.lock)
                raise

        def fresh() -> dict:
            out = self.out
            held = [n for n in (*RUN_FILES, *RUN_DIRS) if (out / n).exists()]
            if held and not self.overwrite:
                raise InputError(
                    f"{out}: already holds a run ({', '.join(held)}); use --overwrite to replace "
                    "it or --restart to continue it"
                )
            for n in held:
                p = out / n
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            return {"run_id": uuid.uuid4().hex, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

        return _collective(self.comm, prepare)

    def _restart_record(self) -> dict:
        """Rank 0: the previous record, after checking that checkpoint and case belong to it."""
        out = self.out
        if not (out / "checkpoint.npz").is_file():
            raise InputError(f"--restart {out}: no checkpoint.npz in that run directory")
        try:
            old = json.loads((out / "run.json").read_text())
        except (OSError, ValueError) as exc:
            raise InputError(
                f"--restart {out}: run.json is missing or unreadable ({exc})"
            ) from None
        state = checkpoint.read_state(out / "checkpoint.npz")
        if state.get("run_id") != old.get("run_id"):
            raise InputError(
                f"--restart {out}: checkpoint.npz belongs to run {state.get('run_id')} but "
                f"run.json to run {old.get('run_id')}; the directory mixes two runs"
            )
        if state.get("kind", "coupled") != self._kind():
            raise InputError(f"--restart {out}: the checkpoint is of a {state.get('kind')} run")
        changes = restart_changes(state.get("resolved_flat", {}), self.flat, self.allow)
        old.setdefault("restarts", []).append(
            {
                "at_step": state["position"]["step_no"],
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "changes": changes,
            }
        )
        return old

    def _kind(self) -> str:
        if self.problem is not None:
            return self.problem.kind
        phys = self.rc.case.physics
        if not phys.mechanics:
            return "electrochemistry"
        return "quasistatic" if phys.mode == "quasistatic" else "coupled"

    def _new_record(self, prev: dict) -> dict:
        rc = self.rc
        record = {
            "status": RunStatus.RUNNING.value,
            "kind": self._kind(),
            "run_id": prev["run_id"],
            "fingerprint": fingerprint(self.flat),
            "resolved": rc.to_dict(),
            "versions": versions(),
            "git_commit": git_commit(),
            "mpi_size": self.comm.size,
            "started": prev["started"],
        }
        if prev.get("restarts"):
            record["restarts"] = prev["restarts"]
        if rc.case.physics.mechanics and rc.case.physics.fracture:
            record["fracture_summary"] = fracture_summary(rc.params)
        if rc.case.physics.mechanics:
            record["mechanisms"] = mechanism_labels(rc.case.physics.mechanisms)
        res = resolution(rc)
        if res is not None:
            record["resolution"] = res
        warnings = case_warnings(rc)
        if warnings:
            record["warnings"] = warnings
        for warning in warnings:
            self._log(f"warning: {warning}")
        return record

    # -- set-up ----------------------------------------------------------------------------------
    def _setup(self) -> dict | None:
        """Problem, stepper, writers and (on restart) the restored state; returns the resume
        position for the protocol runner."""
        rc, comm = self.rc, self.comm
        t0 = time.perf_counter()
        adapted = (
            checkpoint.read_state(self.out / "checkpoint.npz").get("mesh") if self.restart else None
        )
        if adapted:  # the run had moved to an adapted mesh: continue on it
            if self.problem is not None:
                self.problem.close()
            self.problem = mechanics_problem(adapted_domain(self.out, adapted, comm), rc)
            self.mesh_state = adapted
        if self.problem is None:
            self.problem = load_problem(rc, self.out, comm)
        if self.adapt is None and rc.case.geometry.mesh.adapt is not None:
            self.adapt = adapt_policy(rc, self.out)
        self.phases["mesh_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.lattice = mat.LatticeStrains.from_params(rc.params, rc.lattice_table_path)
        self._attach()
        resume, meta = None, {}
        if self.restart:
            meta = self._restore()
            resume = meta["position"]
            self._log(f"restart from step {resume['step_no']} at t = {self.stepper.t / 3600:.4f} h")
            if comm.rank == 0:  # rows written after the checkpoint are computed again
                for name in ("timeseries.csv", "radial_damage.csv"):
                    _truncate_rows(self.out / name, resume["step_no"])
        self.writer = TimeSeriesWriter(self.out / "timeseries.csv", comm=comm, resume=self.restart)
        self.radial = None
        if self.problem.radial_columns:
            self.radial = TimeSeriesWriter(
                self.out / "radial_damage.csv",
                RADIAL_HEAD + tuple(self.problem.radial_columns),
                comm=comm,
                resume=self.restart,
            )
        self.written = set(meta.get("fields_written", []))
        self.last_ckpt = {"t": time.perf_counter(), "step": resume["step_no"] if resume else 0}
        # time-loop wall time of earlier segments of a restarted run, up to their last checkpoint
        self.solve_before = float(meta.get("solve_s_all_segments", 0.0))
        self.stall = 0
        self.phases["setup_s"] = time.perf_counter() - t0
        return resume

    def _attach(self) -> None:
        """Stepper, protocol runner and mesh record of :attr:`problem` (set-up, mesh change)."""
        pb, comm = self.problem, self.comm
        self.stepper = pb.make_stepper(on_reject=self._on_reject)
        pb.set_interrupt(lambda: bool(self.signals.agreed(comm)))
        self.runner = ProtocolRunner(
            pb.ec, self.stepper, self.rc.case.protocol, self.rc.case.solver, self._on_accept
        )
        self.record["mesh"] = pb.mesh_info()
        if self.mesh_state is not None:
            self.record["mesh"]["adapted_mesh"] = self.mesh_state["file"]
        self._log(
            f"polycrack: {self.record['mesh']['cells']} cells, {self.record['mesh']['unknowns']} "
            f"unknowns on {comm.size} rank(s), solver {pb.linear}"
        )

    # -- checkpoints -----------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        fields, state = self._state()
        checkpoint.save(self.out / "checkpoint.npz", fields, state, self.comm)
        self.last_ckpt.update(t=time.perf_counter(), step=self.runner.step_no)

    def _state(self, copy: bool = False) -> tuple[dict[str, fem.Function], dict]:
        """Everything a restart needs: the fields (primary, BDF states, internal) by name and
        the JSON-able state (time, stepper, protocol position, problem, mesh, adapt policy).
        The BDF states are copies; the primary and internal fields are the problem's own, or
        copies with ``copy``."""
        pb, st = self.problem, self.stepper
        own = (lambda f: f.copy()) if copy else (lambda f: f)
        fields = {name: own(f) for name, f in zip(pb.field_names, pb.fields, strict=True)}
        sd = st.state_dict()
        for i, arrays in enumerate(sd.pop("states")):
            for name, f, arr in zip(pb.field_names, pb.fields, arrays, strict=True):
                g = fem.Function(f.function_space)
                g.x.array[:] = arr
                fields[f"state{i}_{name}"] = g
        internal, pstate = pb.state_dict()
        fields.update({name: own(f) for name, f in internal.items()})
        state = {
            "kind": pb.kind,
            "run_id": self.record["run_id"],
            "resolved_flat": self.flat,
            "t": sd["t"],
            "times": sd["times"],
            "n_states": len(sd["times"]),
            "stats": sd["stats"],
            "step_control": sd["step_control"],
            "position": self.runner.position,
            **pstate,
            "fields_written": sorted(self.written),
            "solve_s_all_segments": self.solve_before + time.perf_counter() - self.t_loop,
        }
        if self.mesh_state is not None:
            state["mesh"] = self.mesh_state
        if self.adapt is not None:
            state["adapt"] = self.adapt.state_dict()
        return fields, state

    def _restore(self) -> dict:
        path = self.out / "checkpoint.npz"
        whole = checkpoint.read_meta(path)
        meta = whole["state"]
        saved = set(whole["functions"])  # older checkpoints lack newer internal fields
        fields, rows = self._targets(meta["n_states"], saved)
        checkpoint.load(path, fields, self.comm)
        self._load(meta, rows)
        return meta

    def _targets(self, n_states: int, saved: set[str]) -> tuple[dict, list]:
        """Functions of :attr:`problem` to fill from a saved state: by name (as in
        :meth:`_state`) and the BDF state rows."""
        pb = self.problem
        fields = dict(zip(pb.field_names, pb.fields, strict=True))
        rows = []
        for i in range(n_states):
            row = []
            for name, f in zip(pb.field_names, pb.fields, strict=True):
                g = fem.Function(f.function_space)
                fields[f"state{i}_{name}"] = g
                row.append(g)
            rows.append(row)
        fields.update({k: f for k, f in pb.state_dict()[0].items() if k in saved})
        return fields, rows

    def _load(self, meta: dict, rows: list) -> None:
        """Stepper, problem and adapt-policy state from ``meta`` once the fields are filled."""
        pb, st = self.problem, self.stepper
        st.load_state_dict(
            {
                "t": meta["t"],
                "times": meta["times"],
                "states": [[g.x.array for g in row] for row in rows],
                "stats": meta["stats"],
                "step_control": meta.get("step_control", {}),
            }
        )
        pb.load_state_dict(meta)
        if self.adapt is not None:
            self.adapt.load_state_dict(meta.get("adapt", {}))

    def _move_to(self, change: MeshChange) -> dict:
        """Continue the run on ``change.mesh`` = (mesh, cell tags, facet tags): the mesh is saved
        in the run directory and read back (a restart reads the same file), a new problem is
        built on it, every field, BDF state and internal field is transferred
        (polycrack.numerics.transfer), and a checkpoint is written. The accepted state moves, or
        with ``change.redo`` the state from before the step (:attr:`before`), so that the step is
        computed again on the new mesh. Returns the protocol position to resume from."""
        t0 = time.perf_counter()
        old = self.problem
        if change.redo:
            functions, state = self.before
            # the policy never goes back; the work counters keep the discarded attempt (only
            # the kept steps count as accepted)
            kept = state["stats"]
            work = {k: v for k, v in self.stepper.stats.__dict__.items() if k != "log"}
            work.update({k: kept[k] for k in ("accepted", "newton_iterations_accepted")})
            state = {**state, "adapt": self.adapt.state_dict(), "stats": work}
        else:
            functions, state = self._state()
        n = 1 + int((self.mesh_state or {}).get("index", 0))
        times, t1 = {}, time.perf_counter()
        self.mesh_state = save_adapted_mesh(self.out, n, change.mesh, old.dom, self.comm)
        dom = adapted_domain(self.out, self.mesh_state, self.comm)
        times["mesh_io_s"], t1 = time.perf_counter() - t1, time.perf_counter()
        self.problem = mechanics_problem(dom, self.rc)
        self._attach()
        times["problem_s"], t1 = time.perf_counter() - t1, time.perf_counter()
        targets, rows = self._targets(state["n_states"], set(functions))
        transfer_all(functions, targets, quadrature_rule=self.adapt.quadrature_rule)
        self._load(state, rows)
        self.runner.set_position(state["position"])
        old.close()
        self.before = None
        times["transfer_s"], t1 = time.perf_counter() - t1, time.perf_counter()
        changes = getattr(self.adapt, "changes", None)
        if changes:  # before the checkpoint, which stores the policy state
            changes[-1].update({k: round(v, 3) for k, v in times.items()})
        self._checkpoint()
        self._keep_before()
        dt = time.perf_counter() - t0
        self.phases["mesh_change_s"] = self.phases.get("mesh_change_s", 0.0) + dt
        what = "step computed again" if change.redo else "run continues"
        self._log(
            f"mesh change {n} after step {change.step_no}: {self.record['mesh']['cells']} cells, "
            f"{what} from step {state['position']['step_no']} ({dt:.1f} s)"
        )
        return state["position"]

    def _keep_before(self) -> None:
        """Keep a copy of the committed state (fields and JSON state) as :attr:`before`: the
        start of the next step, which a corrector moves to the refined mesh and computes again.
        Only for adaptive runs that correct steps."""
        if self.adapt is None or not self.adapt.corrects:
            self.before = None
            return
        self.before = self._state(copy=True)

    # -- per step --------------------------------------------------------------------------------
    def _on_accept(self, step_no: int, k: int, trial) -> None:
        pb, st, rc = self.problem, self.stepper, self.rc
        pb.after_accept()
        mesh = self.adapt.propose(pb, step_no) if self.adapt is not None else None
        if mesh is not None and self.adapt.redo(step_no):  # corrector: nothing of it is kept
            raise MeshChange(mesh, self._stop_signal(step_no), redo=True, step_no=step_no)
        obs = pb.observables()
        s = pb.ec.state()
        row = timeseries_row(step_no, k, trial, st.t, s, pb.ec, self.lattice, rc)
        row.update(obs)
        row["cells"] = self.record["mesh"]["cells"]  # the mesh the step was computed on
        row["unknowns"] = self.record["mesh"]["unknowns"]
        self.writer.append(row)
        if self.radial is not None:
            vals = dict(zip(pb.radial_columns, pb.radial_row(), strict=True))
            self.radial.append({"step": step_no, "time_s": st.t, "voltage_V": s.voltage_V} | vals)
        msg = pb.step_message(obs)
        self._log(
            f"step {step_no:4d}  {st.t / 3600:8.3f} h  {s.voltage_V:.4f} V  {s.current_A:+.3e} A"
            + (f"  {msg}" if msg else "")
            + f"  newton {trial.newton_iterations}"
        )
        self._stall_hint(trial.dt, s.voltage_V)
        for v in sorted(rc.case.output.fields_at_voltages_V):
            key = f"{v:.3f}"
            if key not in self.written and s.voltage_V >= v - 1e-3:
                self.written.add(key)
                pb.write_fields(self.out, f"{v:.2f}V", s.voltage_V)
        every = rc.case.output.field_every_steps
        if every and step_no % every == 0:
            pb.write_fields(self.out, f"step{step_no:05d}", s.voltage_V)
        signum = self._stop_signal(step_no)
        if mesh is not None:  # the move writes the checkpoint; a signal is honoured after it
            raise MeshChange(mesh, signum, step_no=step_no)
        self._keep_before()
        out = rc.case.output
        due = (
            out.checkpoint_every_steps
            and step_no - self.last_ckpt["step"] >= out.checkpoint_every_steps
        ) or (
            out.checkpoint_every_minutes
            and time.perf_counter() - self.last_ckpt["t"] >= 60 * out.checkpoint_every_minutes
        )
        if signum or self.comm.bcast(bool(due), root=0):
            self._checkpoint()
        if signum:
            raise Interrupted(signum)

    def _stop_signal(self, step_no: int) -> int:
        """A signal agreed by all ranks, or SIGTERM once ``stop_after_steps`` is reached, or 0."""
        stop = self.stop_after_steps is not None and step_no >= self.stop_after_steps
        return self.signals.agreed(self.comm) or (signal.SIGTERM if stop else 0)

    def _on_reject(self, msg: str) -> None:
        # a signal during a run of failing attempts (minutes each at a damage onset) must not
        # wait for the next accepted step: the fields are back at the committed state
        self._log(msg)
        signum = self.signals.agreed(self.comm)
        if signum:
            self._checkpoint()
            raise Interrupted(signum)

    def _stall_hint(self, dt: float, voltage: float) -> None:
        hint = getattr(self.problem, "stall_hint", None)
        self.stall = self.stall + 1 if dt < STALL_DT_S else 0
        if (
            hint
            and self.stall == STALL_STEPS
            and not any(hint in w for w in self.record.get("warnings", []))
        ):
            text = f"{STALL_STEPS} steps in a row shorter than {STALL_DT_S:g} s at {voltage:.4f} V: {hint}"
            self.record.setdefault("warnings", []).append(text)
            self._log(f"hint: {text}")

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> dict:
        """Run the protocol; returns the ``run.json`` record (also written to ``out_dir``).

        Raises:
            InputError: bad input (status ``invalid_input``), SolverFailure: a numerical failure
            that survived every retry (status ``failed``). An interrupted run returns with
            ``record["exit_code"] = 128 + signal``.
        """
        t_all = time.perf_counter()
        gc.collect()  # collective point: garbage of earlier runs (PETSc objects) goes now
        self.record = self._new_record(self._prepare_directory())
        write_json_atomic(self.out / "run.json", self.record, self.comm)
        status, message, signum = RunStatus.FINISHED, "", 0
        self.t_loop = time.perf_counter()
        try:
            resume = self._setup()
            self._keep_before()
            self.t_loop = time.perf_counter()
            with self.signals:
                while True:
                    try:
                        self.runner.run(resume)
                        break
                    except MeshChange as change:
                        resume = self._move_to(change)
                        if change.signum:
                            raise Interrupted(change.signum) from None
            self.problem.write_fields(self.out, "final", self.problem.ec.voltage)
        except Interrupted as exc:
            status, signum = RunStatus.INTERRUPTED, exc.signum
            message = f"stopped by signal {exc.signum}; checkpoint written"
        except SolverFailure as exc:
            status, message = RunStatus.FAILED, str(exc)
            raise
        except InputError as exc:
            status, message = RunStatus.INVALID_INPUT, str(exc)
            raise
        except BaseException as exc:
            status, message = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._finish(status, message, t_all)
        self.record["exit_code"] = status.exit_code(signum)
        return self.record

    def _finish(self, status: RunStatus, message: str, t_all: float) -> None:
        """Close solvers and writers, write the final record (every exit path)."""
        if self.problem is not None:
            self.problem.close()
        for w in (getattr(self, "writer", None), getattr(self, "radial", None)):
            if w is not None:
                w.close()
        self.phases["solve_s"] = time.perf_counter() - self.t_loop
        self.phases["solve_s_all_segments"] = (
            getattr(self, "solve_before", 0.0) + self.phases["solve_s"]
        )
        self.phases["total_s"] = time.perf_counter() - t_all
        self.record.update(
            {
                "status": status.value,
                "message": message,
                "error": message if status in (RunStatus.FAILED, RunStatus.INVALID_INPUT) else "",
                "wall_time_s": dict(self.phases),
            }
        )
        if self.adapt is not None:
            self.record["adapt"] = self.adapt.state_dict()
        st = self.stepper
        if st is not None:
            s = st.stats
            self.record["solver"] = {
                "linear": self.problem.linear,
                "newton_iterations": s.newton_iterations,
                "newton_iterations_accepted": s.newton_iterations_accepted,
                "linear_iterations": s.linear_iterations,
                "solve_seconds": s.solve_seconds,
                **self.problem.solver_info(),
            }
            self.record["steps"] = {
                "accepted": s.accepted,
                "rejected_error": s.rejected_error,
                "rejected_newton": s.rejected_newton,
                "rejected_event": s.rejected_event,
                "rejected_limiter": s.rejected_limiter,
            }
            if self.runner is not None:  # None when the set-up failed after the stepper
                self.record["protocol"] = [p.to_dict() for p in self.runner.summaries]
            self.record["final"] = {"time_s": st.t, "voltage_V": self.problem.ec.voltage}
        self.record["peak_memory"] = peak_memory_mb(self.comm)
        self.record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json_atomic(self.out / "run.json", self.record, self.comm)
        if self.comm.rank == 0:
            run_lock.release(self.lock)
        self.comm.barrier()  # when run() returns, every rank sees the final record on disk


class CoupledRun(Run):
    """A run of a case with mechanics (coupled or quasi-static, by ``physics.mode``); ``dom``
    skips mesh loading (tests, benchmarks)."""

    def __init__(
        self, rc, out_dir, comm=MPI.COMM_WORLD, *, dom: ParticleDomain | None = None, **kw
    ):
        pb = mechanics_problem(dom, rc) if dom else None
        super().__init__(rc, out_dir, comm, problem=pb, **kw)


class ElectrochemRun(Run):
    """A run of an electrochemistry-only case; ``mesh=(particle mesh, facet tags)`` skips mesh
    loading, ``reuse_lu`` chooses the (x, V) LU reuse (tests, benchmarks)."""

    def __init__(
        self,
        rc,
        out_dir,
        comm=MPI.COMM_WORLD,
        *,
        mesh=None,
        reuse_lu=None,
        progress: bool = True,
        **kw,
    ):
        pb = None
        if mesh is not None or reuse_lu is not None:
            if mesh is None:
                from ..physics import domain as _dom

                geo = rc.case.geometry
                path = geo.bundle or _dom.ensure_bundle(geo, Path(out_dir) / "mesh", comm)
                ps = _dom.load_bundle(path, comm, geo.mesh.refine_levels).particle_submesh()
                mesh = (ps.mesh, ps.facet_tags)
            pb = ElectrochemProblem(mesh[0], mesh[1], rc, reuse_lu=reuse_lu)
        kw.setdefault("verbose", progress)
        super().__init__(rc, out_dir, comm, problem=pb, **kw)


def run_case(rc: ResolvedCase, out_dir: Path | None, comm: MPI.Comm = MPI.COMM_WORLD, **kw) -> dict:
    """``polycrack run``: any case into ``out_dir`` (default ``output.dir`` or runs/<name>)."""
    out = Path(out_dir or rc.case.output.dir or Path("runs") / (rc.case.name or "run"))
    return Run(rc, out, comm, **kw).run()


def _truncate_rows(path: Path, last_step: int) -> None:
    """Drop rows with ``step`` > last_step (written after the checkpoint that we restart from)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = lines[:1] + [ln for ln in lines[1:] if ln.strip() and int(ln.split(",")[0]) <= last_step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(keep))
    tmp.replace(path)
