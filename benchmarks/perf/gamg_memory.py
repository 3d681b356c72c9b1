"""Peak memory of the iterative path on 2 ranks for preconditioner variants of the u split.

    python benchmarks/perf/gamg_memory.py            # every variant, ~1 min each
    python benchmarks/perf/gamg_memory.py --ranks 1  # the same on one rank

Each variant is one ``coupled_perf.py one`` run (the demo geometry at h = 0.8 µm refined once
in DOLFINx, 167 k unknowns, one 1C step from rest, 5 Newton iterations) in its own
``mpirun`` process, so that its peak resident set size is its own. The table and
``benchmarks/results/gamg_memory_np<R>.json`` give, per variant: Newton and Krylov
iterations, seconds per Newton iteration (assembly, linear solve with the preconditioner
set-up) and the peak memory summed over ranks per unknown, above the memory right after the
imports (the libraries, ~220 MB per rank). One easy step: the hard steps of a long run (damage
onset, see coupled_solvers_400_*) need more Krylov vectors, and the variants differ there.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
from coupled_perf import spawn_json, write_result  # noqa: E402
from polycrack.workflow.exports import git_commit  # noqa: E402

PERF = Path(__file__).with_name("coupled_perf.py")
ALL3 = ("f0", "f2", "f3")  # x, u, phi: the GAMG splits

#: (label, PETSC_OPTIONS, solver.petsc_options)
VARIANTS: list[tuple[str, str, dict]] = [
    ("default", "", {}),
    ("unsmoothed u", "", {"fieldsplit_f2_pc_gamg_agg_nsmooths": 0}),
    ("CG eigen-estimate", "", {f"fieldsplit_{f}_mg_levels_esteig_ksp_type": "cg" for f in ALL3}),
    (
        "unsmoothed u + CG eigen-estimate",
        "",
        {
            "fieldsplit_f2_pc_gamg_agg_nsmooths": 0,
            **{f"fieldsplit_{f}_mg_levels_esteig_ksp_type": "cg" for f in ALL3},
        },
    ),
    ("allatonce PtAP", "-matptap_via allatonce", {}),
    (
        "allatonce PtAP + unsmoothed u",
        "-matptap_via allatonce",
        {"fieldsplit_f2_pc_gamg_agg_nsmooths": 0},
    ),
]


def run(label: str, env_opts: str, petsc: dict, ranks: int) -> dict:
    args = [str(PERF), "one", "--h", "0.8", "--refine", "1", "--solver", "fieldsplit"]
    args += ["--petsc", *(f"{k}={v}" for k, v in petsc.items())]
    r = spawn_json(args, ranks, {"PETSC_OPTIONS": env_opts})
    pn, mem = r["per_newton_s"], r["memory"]
    return {
        "variant": label,
        "PETSC_OPTIONS": env_opts or "(none)",
        "solver.petsc_options": petsc,
        "unknowns": r["unknowns"],
        "newton": r["newton_iterations"],
        "krylov_per_newton": round(r["krylov_per_newton"], 1),
        "s_per_newton": round(pn["total"], 2),
        "s_assembly_F_J": round(pn["residual_assembly"] + pn["jacobian_assembly"], 2),
        "s_linear_solve_incl_pcsetup": round(pn["linear_solve"], 2),
        "peak_before_bare_kb_per_unknown": round(mem["peak_before_bare_kb_per_unknown"], 2),
        "kb_per_unknown_above_imports": round(mem["peak_minus_imports_kb_per_unknown"], 2),
        "cpu_share_per_rank": round(r["cpu_share_per_rank"], 2),
        "loadavg_1min_end": r["loadavg_end"][0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=[], help="variant labels to run")
    a = ap.parse_args()
    rows = []
    hdr = f"{'variant':34s} {'Krylov/N':>8s} {'s/N':>6s} {'KB/unknown':>10s}"
    print(hdr)
    for label, env_opts, petsc in VARIANTS:
        if a.only and label not in a.only:
            continue
        r = run(label, env_opts, petsc, a.ranks)
        rows.append(r)
        print(
            f"{label:34s} {r['krylov_per_newton']:8.1f} {r['s_per_newton']:6.2f} "
            f"{r['kb_per_unknown_above_imports']:10.2f}",
            flush=True,
        )
    doc = {
        "benchmark": f"gamg_memory_np{a.ranks}",
        "what": __doc__.strip().splitlines()[0],
        "command": " ".join(["python", "benchmarks/perf/gamg_memory.py", *sys.argv[1:]]),
        "machine": {"node": os.uname().nodename, "cpus": os.cpu_count()},
        "git_commit": git_commit(),
        "mpi_ranks": a.ranks,
        "rows": rows,
    }
    write_result(f"gamg_memory_np{a.ranks}", doc)


if __name__ == "__main__":
    main()
