"""A failure on one MPI rank ends every rank with the same exit code, a message printed once by
rank 0 and no traceback (issue 21, item 1): the agreement points of polycrack.collective, each
fault-injected on rank 0 only and on rank 1 only under ``mpirun -n 2``, the three inputs that
used to hang, and the MPI_Abort last resort of ``polycrack`` for errors that reach ``main`` on
one rank only. Subprocesses with a 60 s timeout: a hang fails the test instead of the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from polycrack.collective import FAULT_ENV, AgreedInputError, agree, collective, make_dir
from polycrack.errors import InputError, SolverFailure

pytestmark = pytest.mark.serial
REPO = Path(__file__).resolve().parent.parent
MPIRUN = Path(sys.executable).with_name("mpirun")
TIMEOUT_S = 60

CASE = {
    "name": "collective",
    "geometry": {
        "particle": {"source": "sphere", "diameter_um": 10.0},
        "grains": {"count": 8, "seed": 1},
        "binder_outer_diameter_um": 14.0,
        "mesh": {"particle_size_um": 1.6, "binder_size_um": 3.0},
    },
    "protocol": [{"type": "cc", "c_rate": 1.0, "until_voltage_V": 3.9}],
    "physics": {"mechanics": True, "fracture": True},
}


# -- in-process: the helper itself ------------------------------------------------------------


def test_agree_serial_raises_the_agreed_error():
    with pytest.raises(AgreedInputError, match="x: bad"):
        agree(None, InputError("x: bad"))
    agree(None, None)  # nothing failed: no error


def test_collective_names_the_work_for_foreign_exceptions():
    with pytest.raises(InputError, match=r"reading f.msh: boom \(RuntimeError\)"):
        with collective(None, "reading f.msh"):
            raise RuntimeError("boom")
    with pytest.raises(InputError, match="No such file or directory: /nope"):
        with collective(None, "reading"):
            open("/nope")  # noqa: SIM115
    with pytest.raises(SolverFailure, match="diverged"):
        with collective(None, "solve"):
            raise SolverFailure("diverged")


def test_fault_injection_only_on_the_named_rank_and_point(monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "0:here")
    with pytest.raises(InputError, match="fault injected on rank 0"):
        with collective(None, "work", "here"):
            pass
    with collective(None, "work", "elsewhere"):
        pass
    monkeypatch.setenv(FAULT_ENV, "1:here")
    with collective(None, "work", "here"):
        pass


def test_make_dir_messages(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="is a file, not a directory"):
        make_dir(f, None, "run directory")
    with pytest.raises(InputError, match="above it, is a file"):
        make_dir(f / "sub", None, "run directory")
    with pytest.raises(InputError, match="cannot create it or write to it"):
        make_dir(Path("/proc/polycrack_test"), None, "run directory")
    assert make_dir(tmp_path / "a" / "b", None).is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the write probe is removed


# -- under mpirun -n 2 --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A small mesh bundle (8 grains, ~2 k tets) and a case file that names it."""
    from polycrack.config import GeometryConfig
    from polycrack.meshing import build_bundle

    root = tmp_path_factory.mktemp("collective")
    geo = GeometryConfig.model_validate(CASE["geometry"])
    build_bundle(geo, root / "bundle", verbose=False)
    case = {**CASE, "geometry": {**CASE["geometry"], "bundle": str(root / "bundle")}}
    (root / "case_bundle.yaml").write_text(yaml.safe_dump(case))
    (root / "case.yaml").write_text(yaml.safe_dump(CASE))
    return root


def mpirun(*args: str, env: dict | None = None, cwd: Path = REPO, script: str | None = None):
    """``mpirun -n 2 polycrack ARGS`` (or a script) with a timeout; a hang fails the test."""
    if not MPIRUN.is_file():
        pytest.skip("needs mpirun beside the interpreter")
    cmd = [str(MPIRUN), "-n", "2", sys.executable]
    cmd += ["-c", script, *args] if script else ["-m", "polycrack", *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full_env.pop(FAULT_ENV, None)
    full_env.update(env or {})
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, cwd=cwd, env=full_env, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"hang: {' '.join(args)} did not end within {TIMEOUT_S} s")


def _assert_clean_exit(r, code: int, *needles: str) -> None:
    assert r.returncode == code, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    for n in needles:
        assert n in r.stderr, (n, r.stderr[-3000:])


# agreement point -> the command that passes through it
POINTS = {
    "load_case": ("run", "case_bundle.yaml", "--dry-run"),
    "size_guard": ("run", "case_bundle.yaml", "--dry-run"),
    "run_dir": ("run", "case_bundle.yaml", "-o", "{tmp}/run"),
    "make_dir": ("mesh", "case.yaml", "-o", "{tmp}/mesh"),
    "load_bundle.info": ("run", "case_bundle.yaml", "-o", "{tmp}/run"),
    "load_bundle.read": ("run", "case_bundle.yaml", "-o", "{tmp}/run"),
    "load_bundle.grains": ("run", "case_bundle.yaml", "-o", "{tmp}/run"),
    "ensure_bundle": ("run", "case.yaml", "-o", "{tmp}/run"),
    "mesh.build": ("mesh", "case.yaml", "-o", "{tmp}/mesh"),
}


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("point", list(POINTS))
def test_fault_on_one_rank_ends_both_with_exit_2(bundle, tmp_path, point, rank):
    args = [a.format(tmp=tmp_path) for a in POINTS[point]]
    args[1] = str(bundle / args[1])
    if point == "size_guard" and rank == 1:
        pytest.skip("the mesh stage checks on rank 0 only; run's check covers rank 1 below")
    r = mpirun(*args, env={FAULT_ENV: f"{rank}:{point}"})
    _assert_clean_exit(r, 2, f"fault injected on rank {rank}")
    assert r.stderr.count("polycrack: error:") == 1, r.stderr  # printed once, by rank 0


def test_size_guard_fault_on_rank_1_under_run(bundle, tmp_path):
    r = mpirun(
        "run",
        str(bundle / "case_bundle.yaml"),
        "-o",
        str(tmp_path / "run"),
        env={FAULT_ENV: "1:size_guard"},
    )
    _assert_clean_exit(r, 2, "fault injected on rank 1")


def test_truncated_mesh_msh(bundle, tmp_path):
    """Reported hang 1: mesh.msh cut to half its size."""
    half = tmp_path / "half"
    shutil.copytree(bundle / "bundle", half)
    data = (half / "mesh.msh").read_bytes()
    (half / "mesh.msh").write_bytes(data[: len(data) // 2])
    case = {**CASE, "geometry": {**CASE["geometry"], "bundle": str(half)}}
    (tmp_path / "case.yaml").write_text(yaml.safe_dump(case))
    r = mpirun("run", str(tmp_path / "case.yaml"), "-o", str(tmp_path / "run"))
    _assert_clean_exit(r, 2, "mesh.msh: damaged mesh file")


def test_output_names_an_existing_file(bundle, tmp_path):
    """Reported hang 2: ``-o`` naming an existing file."""
    f = tmp_path / "afile"
    f.write_text("x")
    r = mpirun("run", str(bundle / "case_bundle.yaml"), "-o", str(f))
    _assert_clean_exit(r, 2, "is not a directory")


def test_raw_dtype_floaty(tmp_path):
    """Reported hang 3: ``raw_dtype: floaty`` for a .raw CT volume (now refused at parse time)."""
    (tmp_path / "v.raw").write_bytes(bytes(512))
    case = {
        **CASE,
        "geometry": {
            **CASE["geometry"],
            "particle": {
                "source": "ct",
                "file": "v.raw",
                "voxel_size_um": 0.5,
                "raw_shape": [8, 8, 8],
                "raw_dtype": "floaty",
            },
        },
    }
    (tmp_path / "case.yaml").write_text(yaml.safe_dump(case))
    r = mpirun("mesh", str(tmp_path / "case.yaml"), "-o", str(tmp_path / "mesh"))
    _assert_clean_exit(r, 2, "raw_dtype: not a numeric NumPy data type 'floaty'")


def test_ct_read_failure_on_rank_0_while_meshing(tmp_path):
    """A CT volume that passes the cheap checks but fails to load inside build_bundle (rank 0)."""
    import numpy as np

    np.save(tmp_path / "flat.npy", np.zeros((20, 20, 20), dtype=np.uint8))  # nothing to segment
    case = {
        **CASE,
        "geometry": {
            **CASE["geometry"],
            "particle": {
                "source": "ct",
                "file": "flat.npy",
                "voxel_size_um": 0.5,
                "diameter_um": 10.0,
            },
        },
    }
    (tmp_path / "case.yaml").write_text(yaml.safe_dump(case))
    r = mpirun("mesh", str(tmp_path / "case.yaml"), "-o", str(tmp_path / "mesh"))
    _assert_clean_exit(r, 2, "the volume is constant")


# A command whose work fails on one rank only, outside any agreement point: main() must end the
# job with MPI_Abort and the right code instead of returning on one rank.
LAST_RESORT = """
import sys
import polycrack.cli as cli

def work(args):
    comm = cli._world()
    if comm.rank == int(sys.argv[1]):
        exc = {"input": cli.InputError("bad thing on one rank"),
               "internal": RuntimeError("a bug on one rank")}[sys.argv[2]]
        raise exc
    comm.barrier()  # the other rank waits here forever without the last resort
    return 0

cli._cmd_check = work
sys.exit(cli.main(["check", "unused.yaml"]))
"""


@pytest.mark.parametrize(
    "rank, kind, code", [(0, "input", 2), (1, "input", 2), (1, "internal", 1), (0, "internal", 1)]
)
def test_last_resort_abort(rank, kind, code):
    r = mpirun(str(rank), kind, script=LAST_RESORT)
    assert r.returncode == code, (r.returncode, r.stderr[-3000:])
    needle = "bad thing on one rank" if kind == "input" else "internal error: RuntimeError"
    assert needle in r.stderr, r.stderr[-3000:]
