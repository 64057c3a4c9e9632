"""A process that owns one DockerBackends set, for the signal and leftover tests.

Usage: ``python docker_child.py DYNAMODB_IMAGE ELASTICMQ_IMAGE TOXIPROXY_IMAGE``. Prints
``starting <set id>`` before the start and ``ready <set id>`` once the set answers, then waits
for end of input. Ctrl-C/SIGTERM anywhere unwind through DockerBackends' cleanup; exit code 130.
"""

from __future__ import annotations

import sys

from pytest_taskqueue._docker import DockerBackends


def main() -> int:
    dynamodb, elasticmq, toxiproxy = sys.argv[1:4]
    backends = DockerBackends(dynamodb_image=dynamodb, elasticmq_image=elasticmq, toxiproxy_image=toxiproxy)
    try:
        print(f"starting {backends.set_id}", flush=True)
        with backends:
            print(f"ready {backends.set_id}", flush=True)
            sys.stdin.read()
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
