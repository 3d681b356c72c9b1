"""Record of a sweep exercise (kill + rerun) as JSON, from a sweep directory.

    python benchmarks/perf/sweep_record.py runs/demo_sweep benchmarks/results/sweep_demo_2x2.json

Reads ``sweep_log.jsonl`` (every start / restart / skip / exit / signal of the local runner, with
times), each case's ``run/run.json`` and ``log.txt`` (the ``restart from step N`` lines) and
``collect.csv`` (run ``polycrack collect`` first), and writes per case: overrides, final status,
wall time of every segment (s), whether it was restarted and from which step, and the collect
table; plus machine, commit and load average. Copies ``overlay.png`` next to the JSON as
``<name>_overlay.png``.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path


def main(sweep_dir: Path, out: Path, note: str = "") -> None:
    """Write the record of ``sweep_dir`` to ``out`` (see the module docstring)."""
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    events = [json.loads(x) for x in (sweep_dir / "sweep_log.jsonl").read_text().splitlines()]
    with open(sweep_dir / "collect.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    cases = {}
    for cid, ov in meta["cases"].items():
        run = sweep_dir / cid / "run"
        info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
        log = (sweep_dir / cid / "log.txt").read_text() if (sweep_dir / cid).is_dir() else ""
        restarts = [int(m) for m in re.findall(r"restart from step (\d+)", log)]
        ev = [e for e in events if e.get("case") == cid]
        segs = [
            {"event": e["event"], "time": e["time"]}
            | ({"exit_code": e["code"], "wall_s": round(e["wall_s"], 1)} if "code" in e else {})
            for e in ev
        ]
        cases[cid] = {
            "overrides": {k: v for k, v in ov.items() if k in ("protocol.0.c_rate",)}
            | {k: v for k, v in ov.items() if k.startswith("fracture.")},
            "status": info.get("status"),
            "restarted": bool(restarts),
            "restarted_from_step": restarts,
            "accepted_steps": info.get("steps", {}).get("accepted"),
            "wall_s_total_over_segments": round(sum(e.get("wall_s", 0.0) for e in ev), 1),
            "wall_s_last_segment_run_json": (info.get("wall_time_s") or {}).get("total_s"),
            "events": segs,
        }
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    rec = {
        "benchmark": "sweep_demo_2x2",
        "note": note,
        "machine": {"node": platform.node(), "cpus": os.cpu_count()},
        "loadavg_at_record": os.getloadavg(),
        "git_commit": commit,
        "sweep_file": meta["sweep_file"],
        "common_overrides": {
            k: v
            for k, v in next(iter(meta["cases"].values())).items()
            if k not in ("protocol.0.c_rate",) and not k.startswith("fracture.")
        },
        "cases": cases,
        "sweep_events": [e for e in events if "case" not in e],
        "collect_table": table,
    }
    out.write_text(json.dumps(rec, indent=1, default=str))
    shutil.copy(sweep_dir / "overlay.png", out.with_name(out.stem + "_overlay.png"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "")
