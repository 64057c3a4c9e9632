"""``python -m pytest_taskqueue.load locustfile``: print the path of the shipped Locust user.

For ``locust -f "$(python -m pytest_taskqueue.load locustfile)"``. Any other arguments are
``taskqueue-harness load``'s.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    """Print the locustfile's path, or run ``taskqueue-harness load`` with the arguments."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments == ["locustfile"]:
        print(Path(__file__).with_name("locust_user.py"))  # not imported here: Locust patches on import
        return 0
    from pytest_taskqueue.cli import main as harness

    return harness(["load", *arguments])


if __name__ == "__main__":
    sys.exit(main())
