"""Parameter sweeps: ``polycrack sweep SWEEP.yaml`` and ``polycrack collect DIR``.

A sweep file names a base case and a grid of ``--set``-style overrides::

    base: demo.yaml                     # relative to the sweep file
    output: runs/demo_sweep             # sweep directory (relative to the sweep file)
    set: ["solver.dt_max_s=1800"]       # applied to every case
    grid:                               # Cartesian product
      protocol.0.c_rate: [0.02, 0.05]
      fracture.Gc_GB_J_m2: [3.0, 5.0]
    zip:                                # advanced together (one more axis of the product)
      geometry.grains.seed: [1, 2]
      geometry.particle.shape_seed: [3, 4]
    execution:
      mode: local                       # local | slurm
      jobs: 2                           # concurrent cases (local)
      ranks_per_job: 1
      slurm: {time: "04:00:00", partition: null, account: null, mem_per_cpu: null, extra: []}

Every case is validated before anything runs and gets a directory ``<output>/<case id>/``
holding ``case.yaml`` (the fully resolved case), ``overrides.json`` and, once run, ``run/``.
The case id is a hash of its overrides, so it is stable when the grid is extended or reordered.
Rerunning skips finished cases (``run/run.json`` has ``"status": "finished"``) and restarts
interrupted ones from their checkpoint. ``mode: slurm`` writes a job-array script instead of
running (``#SBATCH --array``, one task per case, ``srun`` inside).

Meshes are shared: before anything runs, the cases are grouped by their geometry (everything under
``geometry:`` except ``bundle``), one mesh bundle per distinct geometry is built into
``<output>/meshes/<geometry hash>/`` (``polycrack mesh`` in a subprocess, ``execution.jobs`` at a
time) and every case's ``geometry.bundle`` points at it. This happens at sweep time in both modes,
so a SLURM array never meshes inside its tasks. A case whose base already names a ``bundle`` keeps
it. ``execution.share_meshes: false`` restores one mesh per case run directory.

The local runner logs every decision (skip / start / restart / exit, with times) to the console and
appends it to ``<output>/sweep_log.jsonl``. SIGTERM or SIGINT to the sweep process is forwarded to
the running cases, which write a checkpoint and exit (143); the sweep then exits 143 too, and the
same command later restarts them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError

from ..config import StrictModel, format_validation_error, parse_set, read_yaml, resolve_case
from ..errors import InputError
from .status import RunStatus


class SlurmConfig(StrictModel):
    """Scheduler settings of the job array."""

    time: str = "04:00:00"
    partition: str | None = None
    account: str | None = None
    mem_per_cpu: str | None = None
    max_parallel: Annotated[int, Field(ge=1)] | None = None
    launcher: Literal["srun", "mpirun"] = "srun"
    #: ``srun --mpi=...``: the PMI the MPI library speaks (pmi2 for the MPICH of the venv,
    #: pmix for most OpenMPI builds); null leaves the cluster's MpiDefault.
    srun_mpi: str | None = "pmi2"
    #: seconds before the time limit at which the cases get SIGTERM (they checkpoint and stop)
    signal_before_s: Annotated[int, Field(ge=0)] = 300
    extra: list[str] = []


class ExecutionConfig(StrictModel):
    """How the cases run."""

    mode: Literal["local", "slurm"] = "local"
    jobs: Annotated[int, Field(ge=1, le=256)] = 1
    ranks_per_job: Annotated[int, Field(ge=1, le=4096)] = 1
    share_meshes: bool = True
    slurm: SlurmConfig = SlurmConfig()


class SweepFile(StrictModel):
    """A whole sweep file."""

    base: Path
    output: Path | None = None
    set: list[str] = []
    grid: dict[str, list[Any]] = {}
    zip: dict[str, list[Any]] = {}
    execution: ExecutionConfig = ExecutionConfig()


class SweepCase:
    """One expanded case: its id, overrides and directory."""

    def __init__(self, overrides: dict[str, Any], root: Path):
        self.overrides = overrides
        key = json.dumps(overrides, sort_keys=True, default=str)
        self.id = "case-" + hashlib.sha1(key.encode()).hexdigest()[:10]
        self.dir = root / self.id
        self.case_file = self.dir / "case.yaml"
        self.run_dir = self.dir / "run"

    @property
    def status(self) -> str:
        """A :class:`RunStatus` value from the run directory, or ``pending`` (never started).

        A run with a checkpoint that is not finished, failed or invalid counts as interrupted
        (a killed process leaves ``running`` behind).
        """
        info = self.run_dir / "run.json"
        if info.is_file():
            try:
                st = json.loads(info.read_text()).get("status", "")
            except (OSError, json.JSONDecodeError):
                st = ""
            if st in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.INVALID_INPUT):
                return st
        if self.checkpoint is not None:
            return RunStatus.INTERRUPTED.value
        return "pending"

    @property
    def checkpoint(self) -> Path | None:
        p = self.run_dir / "checkpoint.npz"
        return p if p.is_file() else None


def load_sweep(path: Path | str) -> tuple[SweepFile, list[SweepCase], Path, dict]:
    """Read and validate a sweep file and every case it expands to (nothing is run)."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        sw = SweepFile.model_validate(raw)
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, SweepFile, str(path))) from None
    base = sw.base if sw.base.is_absolute() else path.parent / sw.base
    base_raw = read_yaml(base)
    root = sw.output or Path("runs") / path.stem
    root = (root if root.is_absolute() else path.parent / root).resolve()
    lengths = {len(v) for v in sw.zip.values()}
    if len(lengths) > 1:
        raise InputError(f"{path}: zip: every list needs the same length (got {sorted(lengths)})")
    for k, v in {**sw.grid, **sw.zip}.items():
        if not v:
            raise InputError(f"{path}: {k}: empty list of values")
    fixed = dict(parse_set(s) for s in sw.set)
    axes = [[(k, v) for v in vals] for k, vals in sw.grid.items()]
    if sw.zip:
        n = lengths.pop()
        axes.append([tuple((k, sw.zip[k][i]) for k in sw.zip) for i in range(n)])
    cases = []
    for combo in itertools.product(*axes) if axes else [()]:
        ov = dict(fixed)
        for item in combo:
            if item and isinstance(item[0], tuple):
                ov.update(dict(item))
            else:
                ov[item[0]] = item[1]
        cases.append(SweepCase(ov, root))
    # validate every case up front (same rules as --set)
    for c in cases:
        try:
            resolve_case(base_raw, base, _sets(c))
        except InputError as exc:
            raise InputError(f"{path}: case {c.id} {c.overrides}:\n{exc}") from None
    return sw, cases, root, base_raw


def _sets(case: SweepCase) -> list[str]:
    return [
        f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in case.overrides.items()
    ]


def _case_doc(case: SweepCase, base_raw: dict, base_path: Path) -> dict:
    """The fully resolved case of ``case`` as a plain dict (paths made absolute)."""
    rc = resolve_case(base_raw, base_path, _sets(case))
    doc = rc.case.model_dump(mode="json", exclude_none=True)
    doc["material"] = {
        "set": str(rc.params_path),
        "overrides": {k: v for k, v in _flat_params(rc).items()},
    }
    if doc.get("geometry", {}).get("particle", {}).get("file"):
        f = Path(doc["geometry"]["particle"]["file"])
        if not f.is_absolute():
            doc["geometry"]["particle"]["file"] = str((base_path.parent / f).resolve())
    if doc.get("geometry", {}).get("bundle"):
        f = Path(doc["geometry"]["bundle"])
        if not f.is_absolute():
            doc["geometry"]["bundle"] = str((base_path.parent / f).resolve())
    return doc


def geometry_key(doc: dict) -> str:
    """Stable hash (12 hex digits) of a resolved case's geometry, ``bundle`` excluded."""
    geo = {k: v for k, v in doc.get("geometry", {}).items() if k != "bundle"}
    return hashlib.sha1(json.dumps(geo, sort_keys=True).encode()).hexdigest()[:12]


def _materialise(case: SweepCase, doc: dict) -> None:
    """Write the case's resolved ``case.yaml`` (``doc``) and ``overrides.json``."""
    case.dir.mkdir(parents=True, exist_ok=True)
    tmp = case.case_file.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, case.case_file)
    (case.dir / "overrides.json").write_text(json.dumps(case.overrides, indent=1, default=str))


def _bundle_complete(path: Path) -> bool:
    """Same test as :func:`solver.domain.bundle_is_complete` (without importing DOLFINx)."""
    return all((path / f).is_file() for f in ("mesh.msh", "grains.csv", "mesh.json"))


def _mesh_command(case_file: Path, out: Path) -> list[str]:
    """``polycrack mesh CASE -o OUT`` with this interpreter."""
    return [sys.executable, "-m", "polycrack", "mesh", str(case_file), "-o", str(out)]


def build_shared_meshes(
    root: Path, docs: dict[str, dict], jobs: int = 1, log=print
) -> dict[str, Path]:
    """Build one mesh bundle per distinct geometry of ``docs`` (case id -> resolved case dict).

    Bundles go to ``root/meshes/<geometry hash>/``; an existing complete bundle is reused. Each
    is built by ``polycrack mesh`` in its own process (gmsh is serial), ``jobs`` at a time, with
    its output in ``root/meshes/<hash>.log``. Cases whose geometry already names a ``bundle``
    are left out. Returns geometry hash -> bundle directory; raises :class:`InputError` if a
    build fails.
    """
    groups: dict[str, list[str]] = {}
    for cid, doc in docs.items():
        if not doc.get("geometry", {}).get("bundle"):
            groups.setdefault(geometry_key(doc), []).append(cid)
    mdir = root / "meshes"
    out = {key: mdir / key for key in groups}
    todo = [k for k in groups if not _bundle_complete(out[k])]
    for k in groups:
        if k not in todo:
            log(f"mesh {k}: reused ({len(groups[k])} case(s))")
    running: dict[str, tuple[subprocess.Popen, Any, float]] = {}
    failed = []
    mdir.mkdir(parents=True, exist_ok=True)
    while todo or running:
        while todo and len(running) < jobs:
            k = todo.pop(0)
            src = mdir / f"{k}.yaml"
            src.write_text(yaml.safe_dump(docs[groups[k][0]], sort_keys=False))
            fh = open(mdir / f"{k}.log", "w")
            log(f"mesh {k}: building for {len(groups[k])} case(s)")
            p = subprocess.Popen(_mesh_command(src, out[k]), stdout=fh, stderr=subprocess.STDOUT)
            running[k] = (p, fh, time.perf_counter())
        time.sleep(0.2)
        for k, (p, fh, t0) in list(running.items()):
            if p.poll() is not None:
                fh.close()
                del running[k]
                if p.returncode != 0 or not _bundle_complete(out[k]):
                    failed.append(k)
                    log(f"mesh {k}: failed (exit {p.returncode}); see {mdir / f'{k}.log'}")
                else:
                    log(f"mesh {k}: built in {time.perf_counter() - t0:.1f} s")
    if failed:
        raise InputError(f"mesh build failed for geometry {', '.join(failed)}; see {mdir}/*.log")
    return out


def _flat_params(rc) -> dict[str, Any]:
    p = rc.params.model_dump(mode="json")
    return {
        f"{s}.{k}": v
        for s in ("electrochemistry", "mechanics", "fracture")
        for k, v in p[s].items()
    }


def _command(case: SweepCase, ranks: int, launcher: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "polycrack", "run", str(case.case_file), "-o", str(case.run_dir)]
    if case.checkpoint is not None:
        cmd = cmd[:-2] + ["--restart", str(case.run_dir)]
    else:  # the sweep owns its case folders: a failed or killed start is replaced
        cmd += ["--overwrite"]
    if ranks > 1:
        cmd = [*launcher, "-n", str(ranks), *cmd]
    return cmd


class _EventLog:
    """Console messages plus one JSON line per event in ``<sweep dir>/sweep_log.jsonl``."""

    def __init__(self, path: Path | None, log):
        self.path, self.log = path, log

    def __call__(self, msg: str, **event: Any) -> None:
        self.log(msg)
        if self.path is not None and event:
            rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "unix_s": time.time(), **event}
            with open(self.path, "a") as fh:
                fh.write(json.dumps(rec, default=str) + "\n")


def run_local(
    cases: list[SweepCase], jobs: int, ranks: int, log=print, event_log: Path | None = None
) -> dict[str, int]:
    """Run the unfinished cases, ``jobs`` at a time; return case id -> exit code.

    Finished cases are skipped, cases with a checkpoint restart from it. SIGTERM/SIGINT received
    meanwhile is forwarded (as SIGTERM) to the running cases, nothing new starts, and the cases
    still waiting get exit code 143 (not run).
    """
    ev = _EventLog(event_log, log)
    mpirun = str(Path(sys.executable).with_name("mpirun"))
    todo = [c for c in cases if c.status != RunStatus.FINISHED]
    for c in cases:
        if c.status == RunStatus.FINISHED:
            ev(f"{c.id}: finished, skipped", case=c.id, event="skip")
    running: dict[str, tuple[subprocess.Popen, Any, float]] = {}
    codes: dict[str, int] = {}
    stop: list[int] = []

    def _on_signal(signum, frame):  # forward once; the loop below waits for the checkpoints
        if not stop:
            ev(f"sweep: signal {signum}; stopping the running cases", event="signal", signum=signum)
            for p, _, _ in running.values():
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
        stop.append(signum)

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while (todo and not stop) or running:
            while todo and not stop and len(running) < jobs:
                c = todo.pop(0)
                how = "restart" if c.checkpoint is not None else "start"
                fh = open(c.dir / "log.txt", "a")
                ev(f"{c.id}: {how} {c.overrides}", case=c.id, event=how, overrides=c.overrides)
                p = subprocess.Popen(
                    _command(c, ranks, [mpirun]),
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: SIGTERM reaches mpirun's ranks
                )
                running[c.id] = (p, fh, time.perf_counter())
            time.sleep(0.5)
            for cid, (p, fh, t0) in list(running.items()):
                if p.poll() is not None:
                    fh.close()
                    codes[cid] = p.returncode
                    dt = time.perf_counter() - t0
                    ev(
                        f"{cid}: exit {p.returncode} after {dt:.1f} s",
                        case=cid,
                        event="exit",
                        code=p.returncode,
                        wall_s=dt,
                    )
                    del running[cid]
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    for c in todo:
        codes[c.id] = 143
    return codes


def _ranges(idx: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2,5,7-8' (SLURM --array syntax)."""
    out, start = [], idx[0]
    for a, b in zip(idx, [*idx[1:], None], strict=True):
        if b != a + 1:
            out.append(f"{start}-{a}" if a > start else f"{a}")
            start = b
    return ",".join(out)


def write_slurm(sw: SweepFile, cases: list[SweepCase], root: Path) -> Path:
    """Write ``sweep.sbatch`` (a job array, one task per case) and ``cases.txt``; return the script.

    Task ``i`` runs line ``i + 1`` of ``cases.txt``; the array lists only the unfinished cases
    (all of them when none is finished yet). Each task skips a finished case and restarts an
    interrupted one from its checkpoint, so resubmitting after a cancel or time-out is safe.
    """
    s = sw.execution.slurm
    n = len(cases)
    (root / "cases.txt").write_text("".join(f"{c.id}\n" for c in cases))
    todo = [i for i, c in enumerate(cases) if c.status != RunStatus.FINISHED] or list(range(n))
    array = (f"0-{n - 1}" if len(todo) == n else _ranges(todo)) + (
        f"%{s.max_parallel}" if s.max_parallel else ""
    )
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=polycrack-{root.name}",
        f"#SBATCH --array={array}",
        f"#SBATCH --ntasks={sw.execution.ranks_per_job}",
        f"#SBATCH --time={s.time}",
        f"#SBATCH --output={root}/%x-%A_%a.out",
    ]
    if s.signal_before_s:  # to the job steps (srun/mpirun and the ranks), not the batch shell
        lines.append(f"#SBATCH --signal=TERM@{s.signal_before_s}")
    if s.partition:
        lines.append(f"#SBATCH --partition={s.partition}")
    if s.account:
        lines.append(f"#SBATCH --account={s.account}")
    if s.mem_per_cpu:
        lines.append(f"#SBATCH --mem-per-cpu={s.mem_per_cpu}")
    lines += [f"#SBATCH {e}" for e in s.extra]
    py = shlex.quote(sys.executable)
    if s.launcher == "srun":
        launch = "srun" + (f" --mpi={s.srun_mpi}" if s.srun_mpi else "")
    else:
        mpirun = shlex.quote(str(Path(sys.executable).with_name("mpirun")))
        launch = f"{mpirun} -n {sw.execution.ranks_per_job}"
    lines += [
        "set -euo pipefail",
        f"ROOT={shlex.quote(str(root))}",
        'ID=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$ROOT/cases.txt")',
        'DIR="$ROOT/$ID"',
        'if grep -qs \'"status": "finished"\' "$DIR/run/run.json"; then echo "$ID finished"; exit 0; fi',
        'WHERE="-o $DIR/run --overwrite"',
        'if [ -f "$DIR/run/checkpoint.npz" ]; then WHERE="--restart $DIR/run"; fi',
        f'{launch} {py} -m polycrack run "$DIR/case.yaml" $WHERE',
        "",
    ]
    script = root / "sweep.sbatch"
    script.write_text("\n".join(lines))
    script.chmod(0o755)
    return script


def sweep(path: Path | str, log=print, mode: str | None = None, submit: bool = False) -> int:
    """Expand, validate, mesh and run (or write the SLURM array of) a sweep; exit code.

    ``mode`` overrides ``execution.mode``; ``submit`` (slurm) also runs ``sbatch`` on the
    script. 0 all cases finished (or script written), 1 some failed, 143 stopped by
    SIGTERM/SIGINT (rerun to continue).
    """
    sw, cases, root, base_raw = load_sweep(path)
    if mode is not None:
        sw.execution.mode = mode
    base = sw.base if sw.base.is_absolute() else Path(path).parent / sw.base
    root.mkdir(parents=True, exist_ok=True)
    docs = {c.id: _case_doc(c, base_raw, base) for c in cases}
    log(f"sweep {root}: {len(cases)} cases")
    if sw.execution.share_meshes:
        bundles = build_shared_meshes(root, docs, sw.execution.jobs, log)
        for doc in docs.values():
            if not doc["geometry"].get("bundle"):
                doc["geometry"]["bundle"] = str(bundles[geometry_key(doc)].resolve())
    for c in cases:
        if c.status != RunStatus.FINISHED or not c.case_file.is_file():
            _materialise(c, docs[c.id])
    (root / "sweep.json").write_text(
        json.dumps(
            {"sweep_file": str(Path(path).resolve()), "cases": {c.id: c.overrides for c in cases}},
            indent=1,
            default=str,
        )
    )
    if sw.execution.mode == "slurm":
        script = write_slurm(sw, cases, root)
        todo = [c.id for c in cases if c.status != RunStatus.FINISHED]
        log(f"wrote {script} ({len(todo)} of {len(cases)} cases unfinished)")
        if not todo:
            log("every case is finished: nothing to submit")
            return 0
        if not submit:
            log(f"submit with: sbatch {script}")
            return 0
        r = subprocess.run(["sbatch", str(script)], capture_output=True, text=True)
        log((r.stdout + r.stderr).strip())
        return 0 if r.returncode == 0 else 1
    codes = run_local(
        cases, sw.execution.jobs, sw.execution.ranks_per_job, log, root / "sweep_log.jsonl"
    )
    if any(v == 143 for v in codes.values()):
        left = sorted(k for k, v in codes.items() if v != 0)
        log(f"sweep stopped; {len(left)} case(s) unfinished: rerun the same command to continue")
        return 143
    bad = {k: v for k, v in codes.items() if v != 0}
    for k, v in bad.items():
        log(f"{k}: failed with exit code {v}; see {root / k / 'log.txt'}")
    return 1 if bad else 0


def _summary(case: SweepCase) -> dict[str, Any]:
    from ..post.plots import read_table

    row: dict[str, Any] = {"case_id": case.id, **case.overrides, "status": case.status}
    info = case.run_dir / "run.json"
    if info.is_file():
        try:
            j = json.loads(info.read_text())
        except json.JSONDecodeError:
            j = {}
        wt = j.get("wall_time_s")  # of the last run segment (since the last restart)
        row["wall_time_s"] = wt.get("total_s") if isinstance(wt, dict) else wt
        if case.status in (RunStatus.FAILED, RunStatus.INVALID_INPUT):
            row["reason"] = j.get("error", "")
    elif case.status != RunStatus.FINISHED:
        log = case.dir / "log.txt"
        tail = log.read_text().strip().splitlines()[-1:] if log.is_file() else []
        row["reason"] = tail[0] if tail else "not run"
    ev_path = case.dir.parent / "sweep_log.jsonl"
    if ev_path.is_file():  # local runner: every segment (start or restart -> exit) of this case
        evs = [json.loads(x) for x in ev_path.read_text().splitlines() if case.id in x]
        exits = [e for e in evs if e.get("case") == case.id and e.get("event") == "exit"]
        if exits:
            row["segments"] = len(exits)
            row["restarts"] = sum(
                e.get("event") == "restart" for e in evs if e.get("case") == case.id
            )
            row["wall_time_all_segments_s"] = round(sum(e.get("wall_s", 0.0) for e in exits), 1)
    ts_path = case.run_dir / "timeseries.csv"
    if ts_path.is_file():
        ts = read_table(ts_path)
        import numpy as np

        if len(ts.get("time_s", [])):
            v = ts["voltage_V"]
            row["final_voltage_V"] = float(v[-1])
            row["final_capacity_mAh_g"] = float(ts["capacity_mAh_g"][-1])
            row["final_time_h"] = float(ts["time_s"][-1] / 3600)
            hit = np.zeros(0, dtype=int)
            if "damage_fraction" in ts:
                d = ts["damage_fraction"]
                row["final_damage_fraction"] = float(d[-1])
                hit = np.flatnonzero(d > 0)
                row["onset_voltage_V"] = float(v[hit[0]]) if hit.size else None
            top = np.flatnonzero(v >= v.max() - 1e-4)
            row["capacity_at_vmax_mAh_g"] = float(ts["capacity_mAh_g"][top[0]])
            row["time_to_vmax_h"] = float(ts["time_s"][top[0]] / 3600)
            if "crack_area_um2" in ts and np.any(np.isfinite(ts["crack_area_um2"])):
                g = ts["crack_area_um2"]
                share = ts.get("crack_area_gb_share", np.full_like(g, np.nan))
                row["final_crack_area_um2"] = _num(g[-1])
                row["final_crack_area_gb_share"] = _num(share[-1])
                row["crack_area_at_onset_um2"] = _num(g[hit[0]]) if hit.size else None
                row["crack_area_at_vmax_um2"] = _num(g[top[0]])
    return row


def _num(v) -> float | None:
    """A table cell as a float, None (an empty cell) for NaN."""
    v = float(v)
    return None if v != v else v


def collect(sweep_dir: Path | str, log=print) -> Path:
    """Join every case of a sweep directory into ``collect.csv`` and an overlay plot."""
    import csv

    root = Path(sweep_dir)
    meta = root / "sweep.json"
    if not meta.is_file():
        raise InputError(f"{root}: not a sweep directory (no sweep.json)")
    cases = [SweepCase(ov, root) for ov in json.loads(meta.read_text())["cases"].values()]
    rows = [_summary(c) for c in cases]
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    out = root / "collect.csv"
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    try:
        import pyarrow  # noqa: F401
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        pq.write_table(pacsv.read_csv(out), root / "collect.parquet")
    except ImportError:
        pass
    _overlay(cases, root / "overlay.png")
    for r in rows:
        if r["status"] != RunStatus.FINISHED:
            log(f"{r['case_id']}: {r['status']}: {r.get('reason', '')}")
    log(f"wrote {out} ({len(rows)} cases) and {root / 'overlay.png'}")
    return out


def _overlay(cases: list[SweepCase], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..post.plots import read_table

    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16, 4), constrained_layout=True)
    keys = [k for c in cases for k in c.overrides]
    varying = [
        k
        for k in dict.fromkeys(keys)
        if len({json.dumps(c.overrides.get(k), default=str) for c in cases}) > 1
    ]
    for c in cases:
        ts_path = c.run_dir / "timeseries.csv"
        if not ts_path.is_file():
            continue
        ts = read_table(ts_path)
        label = ", ".join(f"{k.split('.')[-1]}={c.overrides.get(k)}" for k in varying) or c.id
        a1.plot(ts["capacity_mAh_g"], ts["voltage_V"], label=label)
        if "damage_fraction" in ts:
            a2.plot(ts["capacity_mAh_g"], ts["damage_fraction"], label=label)
        if "crack_area_um2" in ts:
            a3.plot(ts["capacity_mAh_g"], ts["crack_area_um2"], label=label)
    a1.set(xlabel="capacity (mA h/g)", ylabel="voltage (V)")
    a2.set(xlabel="capacity (mA h/g)", ylabel="damaged fraction (φ ≥ 0.95)")
    a3.set(xlabel="capacity (mA h/g)", ylabel="crack area Γ_l (µm²)")
    if a1.get_legend_handles_labels()[0]:
        a1.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
