"""Cost of the coupled problem (x, V, u, φ) per Newton iteration vs mesh size, solver and ranks.

    python benchmarks/perf/coupled_perf.py all            # every configuration of CONFIGS
    python benchmarks/perf/coupled_perf.py all --only 52k # those whose tag contains "52k"
    mpirun -n 2 python benchmarks/perf/coupled_perf.py one --h 0.6 --refine 1 --solver fieldsplit
    python benchmarks/perf/coupled_perf.py plot           # redraw from the JSON

``one`` runs a single configuration in its own process (so that the peak resident set size
belongs to that solver alone): the demo geometry (synthetic 14 µm particle, 50 grains, binder to
20 µm) meshed at ``--h`` µm in the particle and refined ``--refine`` times uniformly in DOLFINx,
the coupled case of examples/demo.yaml (l = 0.8 µm) charged at 1C for ``--steps`` accepted time
steps from rest (dt 60 s, then adaptive), via :class:`polycrack.workflow.run.CoupledRun`. PETSc's own
event log gives, per rank (max over ranks): residual assembly (SNESFunctionEval), Jacobian
assembly (SNESJacobianEval), linear solve (KSPSolve, which includes the preconditioner set-up
PCSetUp: LU factorisation or GAMG hierarchy) and the Newton total (SNESSolve); Newton and Krylov
iteration counts come from the run record. At the end the last assembled Jacobian is solved once
more by a bare PETSc KSP with the same options (set-up + solve, then a second solve reusing the
set-up): ``overhead = (SNESSolve time / Newton iterations) / bare set-up + solve``.

Memory: peak resident set size summed over ranks (``ru_maxrss``), divided by the number of
unknowns; also the same after subtracting each rank's RSS right after the imports (the Python,
DOLFINx and PETSc libraries, ~150-250 MB per rank, which do not grow with the mesh).

``all`` runs the configurations one after the other (``mpirun -n R`` for R > 1), appending to
``benchmarks/results/perf_coupled.json`` (machine, commit, load average, CPU times in every row:
the machine is shared, timings are under load), then draws ``perf_coupled.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
MESHES = REPO / "runs" / "perf_meshes"
OUT_JSON = RESULTS / "perf_coupled.json"

#: (tag, particle mesh size µm, uniform refinements, solver, ranks); tags are approximate unknown
#: counts. ``mumps`` (a fresh LU every Newton iteration) stops at 80 k and ``mumps_lagged`` at
#: 165 k unknowns: a fresh LU took 66 s at 197 k unknowns and 20 GB at 487 k
#: (benchmarks/results/coupled_solvers_*.json), too much for this shared 2-core, 24 GB machine.
CONFIGS: list[tuple[str, float, int, str, int]] = [
    ("40k", 0.6, 0, "mumps", 1),
    ("40k", 0.6, 0, "mumps_lagged", 1),
    ("40k", 0.6, 0, "fieldsplit", 1),
    ("80k", 0.45, 0, "mumps", 1),
    ("80k", 0.45, 0, "mumps_lagged", 1),
    ("80k", 0.45, 0, "fieldsplit", 1),
    ("165k", 0.8, 1, "fieldsplit", 1),
    ("165k", 0.8, 1, "mumps_lagged", 1),
    ("300k", 0.6, 1, "fieldsplit", 1),
    ("300k", 0.6, 1, "fieldsplit", 2),
    ("1M", 0.38, 1, "fieldsplit", 1),
    ("1M", 0.38, 1, "fieldsplit", 2),
]

EVENTS = (
    "SNESSolve",
    "SNESFunctionEval",
    "SNESJacobianEval",
    "SNESLineSearch",
    "KSPSolve",
    "PCSetUp",
    "PCApply",
    "MatLUFactorNum",
    "KSPSetUp",
    "MatCreateSubMat",
    "MatCreateSubMats",
    "MatAssemblyEnd",
    "MatMult",
    "VecNorm",
    "PCSetUpOnBlocks",
    "KSPSetUpOnBlocks",
    "MatLUFactorSym",
    "PCGAMGGraph_AGG",
    "PCGAMGCoarse_AGG",
    "PCGAMGProl_AGG",
    "PCGAMGOptProl_AGG",
    "PCGAMGCreateL",
    "PCGAMG Squ l00",
    "MatPtAP",
)


def _rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux ru_maxrss is in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    """Current resident set size of this process, MB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine() -> dict:
    """Node, CPU count, Python and the load average now (1, 5, 15 min)."""
    return {
        "node": platform.node(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "loadavg": os.getloadavg(),
    }


def geometry(h: float, refine: int) -> dict:
    """The demo geometry (examples/demo.yaml) at particle mesh size ``h`` µm."""
    return {
        "particle": {"source": "synthetic", "diameter_um": 14.0, "shape_seed": 3},
        "grains": {"count": 50, "seed": 1},
        "binder_outer_diameter_um": 20.0,
        "mesh": {"particle_size_um": h, "binder_size_um": 2.5, "refine_levels": refine},
    }


def run_one(h: float, refine: int, solver: str, steps: int, petsc: dict | None = None) -> dict:
    """One configuration in this process (collective); the row of the JSON (rank 0)."""
    rss0 = _current_rss_mb()
    import dolfinx_solver  # noqa: F401
    import polycrack.workflow.run as cr
    from mpi4py import MPI
    from petsc4py import PETSc
    from polycrack.config import GeometryConfig, resolve_case
    from polycrack.physics.domain import ensure_bundle, load_bundle
    from polycrack.physics.mechanics import ParticleDomain
    from polycrack.workflow.exports import git_commit

    comm = MPI.COMM_WORLD
    t_start = time.perf_counter()
    rss_imports = comm.allreduce(_current_rss_mb(), op=MPI.SUM)
    PETSc.Log.begin()
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    geo = GeometryConfig.model_validate(geometry(h, 0))
    bundle = ensure_bundle(geo, MESHES / f"h{h}", comm)
    dom = ParticleDomain.from_domain(load_bundle(bundle, comm, refine_levels=refine))
    t_mesh = time.perf_counter() - t0
    rss_mesh = comm.allreduce(_current_rss_mb(), op=MPI.SUM)
    case = {
        "geometry": geometry(h, refine),
        "material": {"overrides": {"fracture.l_m": 0.8e-6, "fracture.l_gamma_m": 0.8e-6}},
        "protocol": [{"type": "cc", "c_rate": 1.0, "until_voltage_V": 4.3}],
        "physics": {"mechanics": True, "fracture": True},
        "solver": {
            "linear": solver,
            "dt_initial_s": 60.0,
            "dt_max_s": 600.0,
            "petsc_options": petsc or {},
        },
        "output": {"fields_at_voltages_V": [], "checkpoint_every_steps": 0},
    }
    rc = resolve_case(case, None)
    bare: dict = {}
    events: dict = {}
    peak_run: list[float] = []

    def perf(name: str) -> dict:
        i = PETSc.Log.Event(name).getPerfInfo()
        return {
            "count": int(comm.allreduce(i["count"], op=MPI.MAX)),
            "time_s": comm.allreduce(i["time"], op=MPI.MAX),
        }

    class Measured(cr.CoupledProblem):
        """CoupledProblem whose close() first times a bare KSP solve of the last Jacobian."""

        def close(self) -> None:
            events.update({e: perf(e) for e in EVENTS})
            peak_run.append(comm.allreduce(_rss_mb(), op=MPI.SUM))  # before the bare solve
            nw = self.newton
            if nw is not None and nw.problem._A is not None:
                J = nw.problem._A
                blocks = [J]
                if J.getType() == "nest":  # fieldsplit: sum over the non-empty blocks
                    nr, nc = J.getNestSize()
                    blocks = [J.getNestSubMatrix(i, j) for i in range(nr) for j in range(nc)]
                # getInfo() is the global sum over ranks (collective)
                nnz = sum(b.getInfo()["nz_allocated"] for b in blocks if b is not None and b.handle)
                bare["jacobian_nnz"] = nnz
                bare["jacobian_kind"] = J.getType()
                A = nw.problem._A.copy()
                # a random right-hand side of unit size: the last Newton residual is tiny and
                # would stop the Krylov solver early on the absolute tolerance
                b = nw.problem._b.duplicate()
                b.setRandom(PETSc.Random().create(comm=comm))
                b.normalize()
                x = b.duplicate()
                ksp = nw.snes.getKSP()
                ksp.getPC().setReusePreconditioner(False)  # lagged LU: factorise afresh
                ksp.setOperators(A, A)
                comm.barrier()
                t1 = time.perf_counter()
                ksp.setUp()
                t2 = time.perf_counter()
                ksp.solve(b, x)
                t3 = time.perf_counter()
                its1 = ksp.getIterationNumber()
                x.set(0.0)
                ksp.solve(b, x)
                t4 = time.perf_counter()
                bare.update(
                    {
                        "setup_s": comm.allreduce(t2 - t1, op=MPI.MAX),
                        "solve_s": comm.allreduce(t3 - t2, op=MPI.MAX),
                        "krylov_iterations": its1,
                        "resolve_s": comm.allreduce(t4 - t3, op=MPI.MAX),
                        "reason": int(ksp.getConvergedReason()),
                    }
                )
                for o in (A, b, x):
                    o.destroy()
            super().close()

    cr.CoupledProblem = Measured
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(comm.bcast(tmp if comm.rank == 0 else None, root=0))
        t0 = time.perf_counter()
        rec = cr.CoupledRun(
            rc, out / "run", comm, dom=dom, verbose=False, stop_after_steps=steps
        ).run()
        t_run = time.perf_counter() - t0
    peak = comm.allreduce(_rss_mb(), op=MPI.SUM)
    run_peak = peak_run[0] if peak_run else peak
    cpu = comm.allreduce(_cpu_s(), op=MPI.SUM)
    s = rec["solver"]
    n = rec["mesh"]["unknowns"]
    newton = max(int(s["newton_iterations"]), 1)
    snes_t = events["SNESSolve"]["time_s"]
    row: dict = {
        "h_um": h,
        "refine_levels": refine,
        "solver": solver,
        # fieldsplit on a MATNEST Jacobian (one split per field) since 2026-12-02; earlier rows
        # are fieldsplit on one AIJ matrix with an LU of (x, V)
        "variant": solver + (" (nest)" if bare.get("jacobian_kind") == "nest" else ""),
        "ranks": comm.size,
        "petsc_options": petsc or {},
        "cells": rec["mesh"]["cells"],
        "unknowns": n,
        "dofs": rec["mesh"]["dofs"],
        "status": rec["status"],
        "accepted_steps": rec["steps"]["accepted"],
        "newton_iterations": s["newton_iterations"],
        "krylov_iterations": s["linear_iterations"],
        "krylov_per_newton": s["linear_iterations"] / newton,
        "lu_factorisations": events["MatLUFactorNum"]["count"],
        "staggered_solves": s.get("staggered_solves", 0),
        "events": events,
        "bare_ksp": bare,
        "overhead_newton_over_bare": (
            (snes_t / newton) / (bare["setup_s"] + bare["solve_s"]) if bare else None
        ),
        "wall_s": {"mesh_load_refine": t_mesh, "run": t_run, **rec["wall_time_s"]},
        "cpu_s_all_ranks": cpu,
        # the share of a core each rank got (CPU / wall of the process): under load the wall
        # times are inflated by about 1 / share
        "cpu_share_per_rank": cpu / comm.size / (time.perf_counter() - t_start),
        "memory": {
            "peak_rss_mb_all_ranks": peak,
            "rss_after_imports_mb_all_ranks": rss_imports,
            "rss_before_imports_mb_rank0": rss0,
            "rss_after_mesh_mb_all_ranks": rss_mesh,
            "peak_kb_per_unknown": peak * 1024 / n,
            # the run alone: the bare KSP check below copies the Jacobian and sets the
            # preconditioner up again, which can raise the high-water mark
            "peak_rss_before_bare_mb_all_ranks": peak_run[0] if peak_run else None,
            "peak_before_bare_kb_per_unknown": peak_run[0] * 1024 / n if peak_run else None,
            # the run's own memory: before the bare solve (its matrix copy), above the imports
            "peak_minus_imports_kb_per_unknown": (run_peak - rss_imports) * 1024 / n,
        },
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "git_commit": git_commit(),
        "machine": machine(),
    }
    return _derive(row)


def _variant(r: dict) -> str:
    """Solver label of a row: ``fieldsplit (nest)`` for the MATNEST fieldsplit."""
    return r.get("variant", r["solver"])


def _append(row: dict) -> None:
    doc = json.loads(OUT_JSON.read_text()) if OUT_JSON.is_file() else {}
    doc.setdefault("benchmark", "coupled_perf")
    doc["description"] = __doc__.split("\n\n")[0]
    doc["note"] = (
        "Shared 2-core machine with other jobs running (see loadavg in every row): wall times "
        "are inflated and noisy, parallel efficiency under load is unreliable; cpu_s_all_ranks "
        "is the CPU time summed over ranks."
    )
    rows = [
        r
        for r in doc.get("rows", [])
        if (r["h_um"], r["refine_levels"], _variant(r), r["ranks"])
        != (row["h_um"], row["refine_levels"], _variant(row), row["ranks"])
    ]
    rows.append(row)
    rows.sort(key=lambda r: (r["ranks"], r["unknowns"], _variant(r)))
    doc["rows"] = rows
    OUT_JSON.write_text(json.dumps(doc, indent=1, default=str))


def cmd_one(a: argparse.Namespace) -> None:
    petsc = dict(kv.split("=", 1) for kv in a.petsc)
    row = run_one(a.h, a.refine, a.solver, a.steps, petsc)
    from mpi4py import MPI

    if MPI.COMM_WORLD.rank == 0:
        pn = row["per_newton_s"]
        print(
            f"{row['unknowns']:8d} unknowns {row['solver']:12s} np{row['ranks']}: "
            f"{row['newton_iterations']} newton, {row['krylov_per_newton']:.1f} krylov/newton, "
            f"per newton {pn['total']:.2f} s (F {pn['residual_assembly']:.2f}, "
            f"J {pn['jacobian_assembly']:.2f}, KSP+PCSetUp {pn['linear_solve']:.2f}); "
            f"cpu share {row['cpu_share_per_rank']:.2f}; "
            f"overhead {row['overhead_newton_over_bare']}; "
            f"{row['memory']['peak_kb_per_unknown']:.2f} KB/unknown "
            f"({row['memory']['peak_before_bare_kb_per_unknown']:.2f} before the bare solve, "
            f"{row['memory']['peak_minus_imports_kb_per_unknown']:.2f} of it above imports); "
            f"load {row['loadavg_end']}",
            flush=True,
        )
        if a.save:
            _append(row)
        if a.json_out:
            Path(a.json_out).write_text(json.dumps(row, indent=1))


def write_result(name: str, doc: dict) -> Path:
    """Write ``doc`` to ``benchmarks/results/NAME.json`` (indented, final newline) and say so."""
    out = REPO / "benchmarks" / "results" / f"{name}.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
    return out


def spawn_json(args: list[str], ranks: int, env: dict | None = None) -> dict:
    """Run ``python ARGS --json-out FILE`` (under ``mpirun -n RANKS`` for RANKS > 1) in its own
    process, so that its peak memory is its own, and return the JSON it wrote."""
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        cmd = [py, *args, "--json-out", str(out)]
        if ranks > 1:
            cmd = [str(Path(py).with_name("mpirun")), "-n", str(ranks), *cmd]
        env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        return json.loads(out.read_text())


def cmd_all(a: argparse.Namespace) -> None:
    py = sys.executable
    mpirun = str(Path(py).with_name("mpirun"))
    for tag, h, refine, solver, ranks in CONFIGS:
        if a.only and not any(o == f"{tag}/{solver}/np{ranks}" or o == tag for o in a.only):
            continue
        cmd = [
            py,
            __file__,
            "one",
            "--h",
            str(h),
            "--refine",
            str(refine),
            "--solver",
            solver,
            "--steps",
            str(a.steps),
            "--save",
        ]
        if ranks > 1:
            cmd = [mpirun, "-n", str(ranks), *cmd]
        print(f"== {tag} {solver} np{ranks}: {' '.join(cmd)}", flush=True)
        r = subprocess.run(cmd)
        if r.returncode != 0:
            print(f"   failed with exit code {r.returncode}", flush=True)
    plot()


def plot() -> None:
    """perf_coupled.png: time per Newton iteration and peak memory vs unknowns (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = load_rows()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    styles = {"mumps": "o", "mumps_lagged": "s", "fieldsplit": "^", "fieldsplit (nest)": "v"}
    colors = {"mumps": "C1", "mumps_lagged": "C2", "fieldsplit": "C0", "fieldsplit (nest)": "C3"}
    for (solver, ranks), grp in _groups(rows).items():
        n = np.array([r["unknowns"] for r in grp])
        t = np.array([r["per_newton_s"]["total"] for r in grp])
        share = np.array([r["cpu_share_per_rank"] for r in grp])
        mk, c = styles.get(solver, "x"), colors.get(solver, "k")
        ls = "-" if ranks == 1 else "--"
        lab = f"{solver}, {ranks} rank{'s' if ranks > 1 else ''}"
        a1.loglog(n, t, mk + ls, color=c, label=lab + " (wall, under load)")
        a1.loglog(n, t * share, mk + ls, color=c, mfc="none", alpha=0.6, label=lab + " × CPU share")
        if ranks == 1 and solver == "fieldsplit":
            asm = [
                r["per_newton_s"]["residual_assembly"] + r["per_newton_s"]["jacobian_assembly"]
                for r in grp
            ]
            a1.loglog(n, asm, ":", color="gray", label="fieldsplit: assembly F + J (wall)")
        mem = np.array(
            [
                r["memory"].get("peak_rss_before_bare_mb_all_ranks")
                or r["memory"]["peak_rss_mb_all_ranks"]
                for r in grp
            ]
        )
        a2.loglog(n, mem, mk + ls, color=c, label=lab)
    fs = [r for r in rows if r["solver"] == "fieldsplit" and r["ranks"] == 1]
    if fs:
        r0 = min(fs, key=lambda r: r["unknowns"])
        nn = np.logspace(np.log10(r0["unknowns"]), 6.1)
        a1.loglog(nn, r0["per_newton_s"]["total"] * nn / r0["unknowns"], "k:", lw=0.8, label="∝ N")
    nn = np.logspace(4.5, 6.1)
    a2.loglog(nn, 3.0 * nn / 1024, "k:", lw=0.8, label="3 KB per unknown")
    a1.set(
        xlabel="unknowns",
        ylabel="time per Newton iteration (s)",
        title="2-core machine: AIJ rows under load 6-10, nest rows quiet",
    )
    a2.set(xlabel="unknowns", ylabel="peak RSS, all ranks (MB)", title="peak memory")
    a1.legend(fontsize=6)
    a2.legend(fontsize=7)
    out = RESULTS / "perf_coupled.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def _derive(r: dict) -> dict:
    """Per-Newton times (s) from the PETSc events, max over ranks.

    linear solve = KSPSolve + PCSetUp + PCSetUpOnBlocks: the outer set-up (e.g. the LU of
    ``mumps``) and the set-up of fieldsplit's blocks (GAMG hierarchies, the (x, V) LU) run
    before KSPSolve's event starts. Rows recorded before PCSetUpOnBlocks was logged
    (``"on_blocks_inferred": true``) take it as SNESSolve minus everything else, which matched
    PCSetUpOnBlocks to 5 % when both were logged.
    """
    e, n = r["events"], max(r["newton_iterations"], 1)
    t = {k: v["time_s"] for k, v in e.items()}
    rest = t["SNESSolve"] - t["SNESFunctionEval"] - t["SNESJacobianEval"] - t["KSPSolve"]
    rest -= t["PCSetUp"]
    if "PCSetUpOnBlocks" in t:
        blocks = t["PCSetUpOnBlocks"]
    else:
        blocks = max(rest, 0.0) if r["solver"] == "fieldsplit" else 0.0
        r["on_blocks_inferred"] = r["solver"] == "fieldsplit"
    r["per_newton_s"] = {
        "total": t["SNESSolve"] / n,
        "residual_assembly": t["SNESFunctionEval"] / n,
        "jacobian_assembly": t["SNESJacobianEval"] / n,
        "linear_solve": (t["KSPSolve"] + t["PCSetUp"] + blocks) / n,
        "pc_setup": (t["PCSetUp"] + blocks) / n,
        "other": (rest - blocks) / n,
    }
    if "cpu_share_per_rank" not in r:
        wall = r["wall_s"]["mesh_load_refine"] + r["wall_s"]["run"]
        r["cpu_share_per_rank"] = r["cpu_s_all_ranks"] / r["ranks"] / wall
    return r


def load_rows() -> list[dict]:
    """The rows of the JSON with derived fields filled in."""
    return [_derive(r) for r in json.loads(OUT_JSON.read_text())["rows"]]


def table() -> str:
    """Markdown table of the JSON rows (benchmarks/README.md, "Cost per Newton iteration")."""
    rows = load_rows()
    out = [
        "| unknowns | solver | ranks | Newton its | Krylov / Newton | s / Newton (wall) "
        "| assembly F + J | linear solve | other | Newton / bare KSP | CPU share "
        "| peak KB / unknown | above imports |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |",
    ]
    for r in sorted(rows, key=lambda r: (r["unknowns"], r["ranks"], _variant(r))):
        pn, m = r["per_newton_s"], r["memory"]
        peak = m.get("peak_rss_before_bare_mb_all_ranks") or m["peak_rss_mb_all_ranks"]
        out.append(
            f"| {r['unknowns']:,} | {_variant(r)} | {r['ranks']} | {r['newton_iterations']} "
            f"| {r['krylov_per_newton']:.1f} | {pn['total']:.1f} "
            f"| {pn['residual_assembly'] + pn['jacobian_assembly']:.1f} "
            f"| {pn['linear_solve']:.1f} | {pn.get('other', float('nan')):.1f} "
            f"| {r['overhead_newton_over_bare']:.2f} | {r.get('cpu_share_per_rank', float('nan')):.2f} "
            f"| {peak * 1024 / r['unknowns']:.1f} "
            f"| {(peak - m['rss_after_imports_mb_all_ranks']) * 1024 / r['unknowns']:.1f} |"
        )
    return "\n".join(out)


def _groups(rows: list[dict]) -> dict[tuple[str, int], list[dict]]:
    g: dict[tuple[str, int], list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["unknowns"]):
        if r["status"] in ("finished", "interrupted"):
            g.setdefault((_variant(r), r["ranks"]), []).append(r)
    return g


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    one = sub.add_parser("one", help="one configuration (run under mpirun for ranks > 1)")
    one.add_argument("--h", type=float, default=0.6, help="particle mesh size, µm")
    one.add_argument("--refine", type=int, default=0, help="uniform refinements in DOLFINx")
    one.add_argument("--solver", default="fieldsplit")
    one.add_argument("--steps", type=int, default=1, help="accepted time steps")
    one.add_argument("--save", action="store_true", help="append the row to the JSON")
    one.add_argument("--json-out", metavar="FILE", help="also write the row to FILE")
    one.add_argument(
        "--petsc", nargs="*", default=[], metavar="KEY=VALUE", help="solver.petsc_options"
    )
    al = sub.add_parser("all", help="every configuration, one process each")
    al.add_argument("--only", nargs="*", default=[], help="size tags or TAG/SOLVER/npR")
    al.add_argument("--steps", type=int, default=1)
    sub.add_parser("plot", help="redraw the figure from the JSON")
    sub.add_parser("table", help="print the markdown table of the JSON rows")
    a = ap.parse_args()
    cmds = {
        "one": cmd_one,
        "all": cmd_all,
        "plot": lambda _: plot(),
        "table": lambda _: print(table()),
    }
    cmds[a.cmd](a)


if __name__ == "__main__":
    main()
