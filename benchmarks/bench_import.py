"""What importing the pytest plugin costs: every pytest run on a machine where it is installed pays it.

    python benchmarks/bench_import.py [--runs 21] [--module pytest_taskqueue.plugin] [--root PATH]

Each run is a fresh interpreter (``python -X importtime``, the source tree at ``--root`` first on
the path, default this checkout) that imports pytest, then the module. It prints, over the runs:

- the CPU time of importing the module once pytest is loaded (``time.process_time``: what the plugin
  adds to a pytest run; CPU time is far less disturbed by other load than wall-clock time);
- ``-X importtime``'s wall-clock figure for the module, pytest's import excluded;
- how many modules the import added, and how many of them are grpc, docker/testcontainers or boto;
- the machine's load average, beside which the numbers must be read.

Measured (2 shared cores, load average 25, 15 runs each): before the plugin's imports were made
lazy (commit 12baaf6), CPU median 240 ms (min 206), 129 modules added, grpc 27 of them and
``pytest_taskqueue._docker``; after, CPU median 122 ms (min 89), 52 modules added, no grpc, Docker
or boto module. Most of what remains is pytest-asyncio, which pytest loads anyway when installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_LINE = re.compile(r"^import time:\s+(?P<self>\d+)\s+\|\s+(?P<cumulative>\d+)\s+\|(?P<name>.*)$")
_HEAVY = {
    "grpc": re.compile(r"^grpc(\.|_|$)"),
    "docker": re.compile(r"^(docker|testcontainers)(\.|$)|^pytest_taskqueue\._docker$"),
    "boto": re.compile(r"^(boto3|botocore|aioboto3|aiobotocore)(\.|$)"),
}
_SCRIPT = """
import json, sys, time
import pytest
before, loaded = time.process_time(), len(sys.modules)
import {module}
print(json.dumps({{"cpu_s": time.process_time() - before, "added": len(sys.modules) - loaded}}))
"""


def one_run(module: str, root: Path) -> dict[str, float]:
    """One fresh interpreter's figures for ``import module`` after pytest."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _SCRIPT.format(module=module)],
        env=env,
        cwd=root,  # ``-c`` puts the current folder first on sys.path
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["wall_ms"] = 0.0
    figures.update(dict.fromkeys(_HEAVY, 0))
    for line in done.stderr.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        name = match["name"].strip()
        if name == module:
            figures["wall_ms"] = int(match["cumulative"]) / 1000.0
        for kind, pattern in _HEAVY.items():
            if pattern.search(name):
                figures[kind] += 1
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--module", default="pytest_taskqueue.plugin")
    parser.add_argument("--root", type=Path, default=ROOT, help="source tree to import from")
    args = parser.parse_args()
    runs = [one_run(args.module, args.root.resolve()) for _ in range(args.runs)]
    cpu = [run["cpu_s"] * 1000.0 for run in runs]
    wall = [run["wall_ms"] for run in runs]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"import {args.module} after pytest ({args.root}), {args.runs} runs: "
        f"CPU median {statistics.median(cpu):.1f} ms (min {min(cpu):.1f}); "
        f"wall median {statistics.median(wall):.1f} ms (min {min(wall):.1f}); "
        f"modules added {int(statistics.median(run['added'] for run in runs))}, of them "
        + ", ".join(f"{kind} {int(runs[-1][kind])}" for kind in _HEAVY)
        + f"; load average {load}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
