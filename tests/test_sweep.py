"""Sweeps: expansion, stable ids, up-front validation, skip/restart logic, SLURM script, collect."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from polycrack.errors import InputError
from polycrack.workflow import sweep as sw

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.serial


def _sweep_file(tmp_path, **extra):
    base = yaml.safe_load((REPO / "examples" / "sphere_electrochem.yaml").read_text())
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    doc = {
        "base": "base.yaml",
        "output": "out",
        "grid": {"protocol.0.c_rate": [0.02, 0.05], "fracture.Gc_GB_J_m2": [3.0, 5.0]},
        **extra,
    }
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def _fake_mesher(calls: list | None = None):
    """A stand-in for ``polycrack mesh``: writes the three bundle files (no gmsh)."""

    def cmd(case_file, out):
        if calls is not None:
            calls.append(Path(out).name)
        code = (
            "import pathlib,sys; d=pathlib.Path(sys.argv[1]); d.mkdir(parents=True, exist_ok=True);"
            "[(d/f).write_text('x') for f in ('mesh.msh','grains.csv','mesh.json')]"
        )
        return [sys.executable, "-c", code, str(out)]

    return cmd


def test_expansion_product_zip_and_stable_ids(tmp_path):
    p = _sweep_file(
        tmp_path, zip={"geometry.grains.seed": [1, 2], "electrochemistry.T_K": [298.0, 310.0]}
    )
    _, cases, root, _ = sw.load_sweep(p)
    assert len(cases) == 2 * 2 * 2 and root == tmp_path / "out"
    assert len({c.id for c in cases}) == 8
    seeds_t = {
        (c.overrides["geometry.grains.seed"], c.overrides["electrochemistry.T_K"]) for c in cases
    }
    assert seeds_t == {(1, 298.0), (2, 310.0)}  # zipped, not crossed
    # ids depend on the overrides only: reordering the grid keeps them
    doc = yaml.safe_load(p.read_text())
    doc["grid"] = dict(reversed(list(doc["grid"].items())))
    p.write_text(yaml.safe_dump(doc))
    _, cases2, _, _ = sw.load_sweep(p)
    assert {c.id for c in cases2} == {c.id for c in cases}


def test_bad_sweep_inputs(tmp_path):
    p = _sweep_file(tmp_path, grid={"fracture.Gc_GB_J_m2": [3.0, -1.0]})
    with pytest.raises(InputError, match=r"Gc_GB_J_m2.*greater than 0"):
        sw.load_sweep(p)
    p = _sweep_file(tmp_path, zip={"a.b": [1], "fracture.l_m": [1e-7, 2e-7]})
    with pytest.raises(InputError, match="same length"):
        sw.load_sweep(p)
    p = _sweep_file(tmp_path, execution={"mode": "cluster"})
    with pytest.raises(InputError, match="execution.mode"):
        sw.load_sweep(p)
    p = _sweep_file(tmp_path, grd={})
    with pytest.raises(InputError, match="did you mean 'grid'"):
        sw.load_sweep(p)


def test_slurm_script(tmp_path):
    p = _sweep_file(
        tmp_path,
        execution={
            "mode": "slurm",
            "ranks_per_job": 16,
            "slurm": {"partition": "cpu", "max_parallel": 2},
        },
    )
    assert sw.sweep(p, log=lambda *_: None) == 0
    script = (tmp_path / "out" / "sweep.sbatch").read_text()
    assert "#SBATCH --array=0-3%2" in script and "#SBATCH --ntasks=16" in script
    assert "#SBATCH --partition=cpu" in script and "srun --mpi=pmi2 " in script
    assert "#SBATCH --signal=TERM@300" in script  # cases checkpoint before the time limit
    assert subprocess.run(["bash", "-n", str(tmp_path / "out" / "sweep.sbatch")]).returncode == 0
    ids = (tmp_path / "out" / "cases.txt").read_text().split()
    assert len(ids) == 4
    bundles = set()
    for cid in ids:  # every case file is a valid case, all on the one mesh built at sweep time
        from polycrack.config import load_case

        rc = load_case(tmp_path / "out" / cid / "case.yaml")
        bundles.add(rc.case.geometry.bundle)
    assert len(bundles) == 1
    (bundle,) = bundles
    assert bundle.parent == tmp_path / "out" / "meshes" and sw._bundle_complete(bundle)


def test_slurm_array_lists_only_unfinished(tmp_path, monkeypatch):
    assert sw._ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8" and sw._ranges([3]) == "3"
    monkeypatch.setattr(sw, "_mesh_command", _fake_mesher())
    p = _sweep_file(tmp_path, execution={"mode": "slurm"})
    _, cases, root, _ = sw.load_sweep(p)
    for c in cases[:2]:
        c.run_dir.mkdir(parents=True)
        (c.run_dir / "run.json").write_text(json.dumps({"status": "finished"}))
    msgs = []
    assert sw.sweep(p, log=msgs.append) == 0
    assert "#SBATCH --array=2-3\n" in (root / "sweep.sbatch").read_text()
    assert "2 of 4 cases unfinished" in msgs[-2]
    for c in cases[2:]:
        c.run_dir.mkdir(parents=True)
        (c.run_dir / "run.json").write_text(json.dumps({"status": "finished"}))
    assert sw.sweep(p, log=msgs.append, submit=True) == 0  # nothing left: sbatch not called
    assert msgs[-1] == "every case is finished: nothing to submit"


def test_local_runner_skips_finished_and_restarts(tmp_path, monkeypatch):
    p = _sweep_file(tmp_path)
    _, cases, root, _ = sw.load_sweep(p)
    calls = []

    def fake_command(case, ranks, launcher):
        calls.append((case.id, case.checkpoint is not None))
        code = (
            "import json,sys,pathlib; d=pathlib.Path(sys.argv[1]); d.mkdir(parents=True, exist_ok=True);"
            "(d/'run.json').write_text(json.dumps({'status':'finished','wall_time_s':1.0}));"
            "(d/'timeseries.csv').write_text('step,time_s,voltage_V,capacity_mAh_g,damage_fraction,crack_area_um2,crack_area_gb_share\\n0,0,3.6,0,0,0.5,0.9\\n1,1800,4.2,3,0.002,4.0,0.85\\n2,3600,4.5,5,0.01,7.5,0.8\\n')"
        )
        return [sys.executable, "-c", code, str(case.run_dir)]

    monkeypatch.setattr(sw, "_command", fake_command)
    monkeypatch.setattr(sw, "_mesh_command", _fake_mesher())
    # before the "kill": one case finished, one interrupted (has a checkpoint)
    for c in cases:
        c.dir.mkdir(parents=True)
    cases[0].run_dir.mkdir()
    (cases[0].run_dir / "run.json").write_text(json.dumps({"status": "finished"}))
    cases[1].run_dir.mkdir()
    (cases[1].run_dir / "checkpoint.npz").write_bytes(b"x")
    assert sw.sweep(p, log=lambda *_: None) == 0
    ran = dict(calls)
    assert cases[0].id not in ran  # finished: skipped
    assert ran[cases[1].id] is True  # interrupted: restarted from its checkpoint
    assert len(ran) == 3
    calls.clear()
    assert sw.sweep(p, log=lambda *_: None) == 0 and calls == []  # all finished now
    out = sw.collect(root, log=lambda *_: None)
    text = out.read_text()
    assert text.count("\n") == 5 and "final_damage_fraction" in text
    import csv

    rows = list(csv.DictReader(text.splitlines()))
    done = [r for r in rows if r["final_crack_area_um2"]]
    assert len(done) == 3  # the cases run here (the one finished before has no table)
    for r in done:
        assert (
            float(r["final_crack_area_um2"]) == 7.5 and float(r["final_crack_area_gb_share"]) == 0.8
        )
        assert float(r["onset_voltage_V"]) == 4.2 and float(r["crack_area_at_onset_um2"]) == 4.0
        assert float(r["crack_area_at_vmax_um2"]) == 7.5
    assert (root / "overlay.png").stat().st_size > 5000


def test_collect_lists_failed_with_reason(tmp_path, monkeypatch):
    p = _sweep_file(tmp_path)
    _, cases, root, _ = sw.load_sweep(p)
    monkeypatch.setattr(sw, "_mesh_command", _fake_mesher())
    monkeypatch.setattr(
        sw,
        "_command",
        lambda c, r, l: [
            sys.executable,
            "-c",
            "import sys; print('diverged at step 3'); sys.exit(1)",
        ],
    )
    msgs = []
    assert sw.sweep(p, log=msgs.append) == 1
    assert any("failed with exit code 1" in m for m in msgs)
    sw.collect(root, log=msgs.append)
    assert any("diverged at step 3" in m for m in msgs)
    with pytest.raises(InputError, match="not a sweep directory"):
        sw.collect(tmp_path)


def test_one_mesh_per_distinct_geometry(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(sw, "_mesh_command", _fake_mesher(built))
    p = _sweep_file(
        tmp_path,
        zip={"geometry.grains.seed": [1, 2]},
        execution={"mode": "slurm"},
    )
    msgs = []
    assert sw.sweep(p, log=msgs.append) == 0
    assert len(built) == 2 and len(set(built)) == 2  # 8 cases, 2 geometries
    _, cases, root, _ = sw.load_sweep(p)
    by_seed = {}
    for c in cases:
        doc = yaml.safe_load(c.case_file.read_text())
        by_seed.setdefault(c.overrides["geometry.grains.seed"], set()).add(
            doc["geometry"]["bundle"]
        )
    assert all(len(v) == 1 for v in by_seed.values()) and by_seed[1] != by_seed[2]
    built.clear()
    assert sw.sweep(p, log=msgs.append) == 0 and built == []  # complete bundles are reused
    assert sum("reused" in m for m in msgs) == 2
    # a base that names its own bundle keeps it and nothing is built
    from polycrack.config import GeometryConfig

    own = tmp_path / "own"
    own.mkdir()
    p = _sweep_file(own, execution={"mode": "slurm"})
    base = yaml.safe_load((own / "base.yaml").read_text())
    mine = own / "my_bundle"
    mine.mkdir()
    for f in ("mesh.msh", "grains.csv"):
        (mine / f).write_text("x")
    settings = GeometryConfig.model_validate(base["geometry"]).model_dump(mode="json")
    (mine / "mesh.json").write_text(json.dumps({"settings": settings}))
    base["geometry"]["bundle"] = "my_bundle"
    (own / "base.yaml").write_text(yaml.safe_dump(base))
    assert sw.sweep(p, log=msgs.append) == 0 and built == []
    _, cases, _, _ = sw.load_sweep(p)
    doc = yaml.safe_load(cases[0].case_file.read_text())
    assert doc["geometry"]["bundle"] == str(own / "my_bundle")
    # ... and a sweep over its geometry is refused (the bundle would silently win; issue 21)
    p = _sweep_file(own, zip={"geometry.grains.seed": [1, 2]})
    (own / "base.yaml").write_text(yaml.safe_dump(base))
    with pytest.raises(InputError, match="built for other geometry settings"):
        sw.load_sweep(p)


_SLOW_CASE = """
import json, pathlib, signal, sys, time
d = pathlib.Path(sys.argv[1]); d.mkdir(parents=True, exist_ok=True)
restart = sys.argv[2] == "1"
def stop(signum, frame):
    (d / "checkpoint.npz").write_bytes(b"state")
    (d / "run.json").write_text(json.dumps({"status": "interrupted"}))
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
(d / "run.json").write_text(json.dumps({"status": "running"}))
if sys.argv[3] == "fast" or restart:
    (d / "run.json").write_text(json.dumps({"status": "finished", "wall_time_s": {"total_s": 1}}))
    sys.exit(0)
time.sleep(60)
"""


def test_kill_and_rerun_does_not_redo_finished_cases(tmp_path, monkeypatch):
    """SIGTERM to the sweep reaches the running cases (checkpoint, exit 143); the rerun skips
    the finished case, restarts the interrupted ones with --restart and starts the rest."""
    p = _sweep_file(tmp_path)
    _, cases, root, _ = sw.load_sweep(p)
    fast = cases[0].id
    calls = []
    second_round = []

    def fake_command(case, ranks, launcher):
        calls.append((case.id, case.checkpoint is not None))
        speed = "fast" if case.id == fast or second_round else "slow"
        restart = "1" if case.checkpoint is not None else "0"
        return [sys.executable, "-c", _SLOW_CASE, str(case.run_dir), restart, speed]

    monkeypatch.setattr(sw, "_command", fake_command)
    monkeypatch.setattr(sw, "_mesh_command", _fake_mesher())
    doc = yaml.safe_load(p.read_text())
    doc["execution"] = {"jobs": 2}
    p.write_text(yaml.safe_dump(doc))
    timer = threading.Timer(4.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert sw.sweep(p, log=lambda *_: None) == 143
    finally:
        timer.cancel()
    status = {c.id: c.status for c in cases}
    assert status[fast] == "finished"
    assert sorted(status.values()) == ["finished", "interrupted", "interrupted", "pending"]
    events = [json.loads(x) for x in (root / "sweep_log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("signal") == 1
    assert {e["code"] for e in events if e["event"] == "exit" and e["case"] != fast} == {143}
    interrupted = {c for c, s in status.items() if s == "interrupted"}
    calls.clear()
    second_round.append(True)
    assert sw.sweep(p, log=lambda *_: None) == 0
    ran = dict(calls)
    assert fast not in ran and len(ran) == 3  # finished: not redone
    assert {c for c, restarted in ran.items() if restarted} == interrupted
    assert all(c.status == "finished" for c in cases)
    skipped = [json.loads(x) for x in (root / "sweep_log.jsonl").read_text().splitlines()]
    assert [e["case"] for e in skipped if e["event"] == "skip"] == [fast]
