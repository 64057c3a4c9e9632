"""What importing the pytest plugin costs: every pytest run on a machine where it is installed pays it.

    python benchmarks/bench_import.py [--runs 15] [--module pytest_taskqueue.plugin] [--root PATH]

Runs ``python -X importtime -c "import MODULE"`` in a fresh interpreter ``--runs`` times, with the
source tree at ``--root`` (default: this checkout) first on the path, and prints the median,
minimum and maximum of the module's cumulative import time (pytest's own import included, since
the plugin imports it), the same without pytest's own import, how many of the modules it loaded
are grpc, docker/testcontainers or boto, and the machine's load average: the numbers only mean
something beside it (the minimum is the least disturbed by other load).
"""

from __future__ import annotations

import argparse
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


def one_run(module: str, root: Path) -> tuple[float, float, dict[str, int]]:
    """(cumulative ms of ``import module``, the part of it that is pytest's own import, heavy
    modules loaded by kind) from one fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=env,
        cwd=root,  # ``-c`` puts the current folder first on sys.path
        capture_output=True,
        text=True,
        check=True,
    )
    cumulative_us = pytest_us = 0
    heavy = dict.fromkeys(_HEAVY, 0)
    for line in done.stderr.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        name = match["name"].strip()
        if name == module:
            cumulative_us = int(match["cumulative"])
        elif name == "pytest":
            pytest_us = int(match["cumulative"])
        for kind, pattern in _HEAVY.items():
            if pattern.search(name):
                heavy[kind] += 1
    return cumulative_us / 1000.0, pytest_us / 1000.0, heavy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--module", default="pytest_taskqueue.plugin")
    parser.add_argument("--root", type=Path, default=ROOT, help="source tree to import from")
    args = parser.parse_args()
    times: list[float] = []
    own: list[float] = []
    heavy: dict[str, int] = {}
    for _ in range(args.runs):
        took, pytest_part, heavy = one_run(args.module, args.root.resolve())
        times.append(took)
        own.append(took - pytest_part)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"import {args.module} ({args.root}): median {statistics.median(times):.1f} ms, "
        f"min {min(times):.1f}, max {max(times):.1f} over {args.runs} runs; without pytest's own "
        f"import: median {statistics.median(own):.1f} ms, min {min(own):.1f}; modules loaded: "
        + ", ".join(f"{kind} {count}" for kind, count in heavy.items())
        + f"; load average {load}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
