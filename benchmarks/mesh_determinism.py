"""Is the mesh bundle of a case the same under every BLAS kernel, BLAS thread count and CPU?

    python benchmarks/mesh_determinism.py                        # demo, 6 kernels x 1, 2 threads
    python benchmarks/mesh_determinism.py --coretypes Prescott SkylakeX --threads 1
    python benchmarks/mesh_determinism.py --emulate              # + older-CPU emulation rows
    python benchmarks/mesh_determinism.py --tag before           # results/mesh_determinism_before.json

Each row runs ``polycrack mesh CASE -o DIR`` in a child process with ``OPENBLAS_CORETYPE`` and
``OPENBLAS_NUM_THREADS`` set, records the OpenBLAS kernel that the child actually loaded
(threadpoolctl, from a probe process with the same environment), the exit code, tets and the
bundle's content hash (polycrack.meshing.digest: nodes rounded to 1e-12 µm, cells, tags, grains.csv;
not mesh.json). ``--emulate`` adds rows where NumPy's dispatched SIMD loops
(``NPY_DISABLE_CPU_FEATURES``) and glibc's libm variants (``GLIBC_TUNABLES`` hwcaps) are limited
to what an older x86-64 CPU has. Writes benchmarks/results/mesh_determinism[_TAG].json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CORETYPES = ["Prescott", "Nehalem", "Sandybridge", "Haswell", "SkylakeX", "Zen"]
# an x86-64-v2 CPU (no AVX2/FMA/AVX-512) for NumPy's dispatched loops and glibc's libm ifuncs
EMULATE = {
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F,-AVX512DQ,-AVX512BW,-AVX512VL",
}
PROBE = (
    "import json, numpy, scipy.linalg; from threadpoolctl import threadpool_info; "
    "print(json.dumps(sorted({(i.get('architecture'), i['num_threads']) "
    "for i in threadpool_info() if i['internal_api'] == 'openblas'})))"
)


def _bin(name: str) -> str:
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else name


def run_row(case: Path, out: Path, env_extra: dict[str, str]) -> dict:
    """Mesh ``case`` into ``out`` in a child process with ``env_extra``; returns the row."""
    from polycrack.meshing.digest import bundle_digest

    env = {**os.environ, "OMP_NUM_THREADS": "1", **env_extra}
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=False
    )
    row: dict = {"env": env_extra}
    row["openblas"] = json.loads(probe.stdout) if probe.returncode == 0 else probe.stderr[-300:]
    t0 = time.perf_counter()
    p = subprocess.run(
        [_bin("polycrack"), "mesh", str(case), "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    row["returncode"] = p.returncode
    if p.returncode != 0:
        row["stderr_tail"] = p.stderr[-500:]
        return row
    row.update(bundle_digest(out))
    row["min_sicn"] = json.loads((out / "mesh.json").read_text())["min_sicn"]
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--case", type=Path, default=REPO / "examples" / "demo.yaml")
    ap.add_argument("--coretypes", nargs="+", default=CORETYPES)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--emulate", action="store_true", help="add older-CPU emulation rows")
    ap.add_argument("--tag", default="", help="suffix of the JSON file name")
    args = ap.parse_args()

    variants = [
        {"OPENBLAS_CORETYPE": c, "OPENBLAS_NUM_THREADS": str(t)}
        for c in args.coretypes
        for t in args.threads
    ]
    if args.emulate:
        variants += [
            {"OPENBLAS_CORETYPE": c, "OPENBLAS_NUM_THREADS": str(t), **EMULATE}
            for c in (args.coretypes[0], args.coretypes[-1])
            for t in args.threads[:1]
        ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, env in enumerate(variants):
            row = run_row(args.case, Path(tmp) / f"b{k}", env)
            rows.append(row)
            short = row.get("bundle", "")[:12] or f"FAILED rc={row['returncode']}"
            print(
                f"{env.get('OPENBLAS_CORETYPE'):12s} threads={env.get('OPENBLAS_NUM_THREADS')}"
                f"{' emulated' if 'GLIBC_TUNABLES' in env else '':9s} "
                f"kernel={row['openblas']} tets={row.get('n_tets')} {short} {row['wall_s']} s",
                flush=True,
            )
    ok = [r for r in rows if r["returncode"] == 0]
    hashes = sorted({r["bundle"] for r in ok})
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    res = {
        "case": str(args.case.relative_to(REPO) if args.case.is_relative_to(REPO) else args.case),
        "commit": commit,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "cpu_model": next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            None,
        ),
        "rows": rows,
        "distinct_bundle_hashes": len(hashes),
        "tets_by_hash": {
            h[:12]: sorted({r["n_tets"] for r in ok if r["bundle"] == h}) for h in hashes
        },
        "failed": [r["env"] for r in rows if r["returncode"] != 0],
    }
    name = "mesh_determinism" + (f"_{args.tag}" if args.tag else "") + ".json"
    out = REPO / "benchmarks" / "results" / name
    out.write_text(json.dumps(res, indent=1))
    print(f"{len(hashes)} distinct bundle hash(es) over {len(ok)} successful rows -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
