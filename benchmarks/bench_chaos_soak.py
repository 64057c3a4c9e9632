"""Chaos soak: a 10-minute chaos run against the reference stack with process faults on.

    python benchmarks/bench_chaos_soak.py [--seed 7] [--duration 600] [--out /tmp/soak]

Runs ``taskqueue-harness chaos`` (every link faulted, the API server and the worker killed and
paused, seeded) and prints one JSON line: operations, tasks, faults and process faults applied,
liveness figures, anomalies by rule, wall time and the machine's load before and after (the
machine may be shared: read figures beside the load). Passes (exit 0) with at least 5,000
operations and no anomaly. Not part of CI: it takes about 12 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
MIN_OPERATIONS = 5000


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--out", type=pathlib.Path, help="folder for the report, history and timeline")
    args = parser.parse_args()
    out = args.out or pathlib.Path(tempfile.mkdtemp(prefix="chaos-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / "soak.json"
    load_before = _load()
    began = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "pytest_taskqueue.cli",
        "chaos",
        "--seed",
        str(args.seed),
        "--duration",
        str(args.duration),
        "--report",
        str(report_path),
    ]
    done = subprocess.run(command, cwd=ROOT, check=False)
    wall = time.monotonic() - began
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    history = report.get("history") or {}
    faults = report.get("faults") or {}
    summary = {
        "seed": args.seed,
        "duration_s": args.duration,
        "exit": done.returncode,
        "verdict": report.get("verdict"),
        "operations": history.get("operations"),
        "operations_by_kind": history.get("operations_by_kind"),
        "tasks": history.get("tasks"),
        "faults_applied": len(faults.get("applied", [])),
        "process_faults": len(faults.get("process", [])),
        "liveness": history.get("liveness"),
        "anomalies_by_rule": history.get("anomalies_by_rule"),
        "wall_s": round(wall, 1),
        "load_before": load_before,
        "load_after": _load(),
        "report": str(report_path),
        "timeline": report.get("timeline"),
    }
    print(json.dumps(summary))
    ok = done.returncode == 0 and (history.get("operations") or 0) >= MIN_OPERATIONS
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
