"""``python -m pytest_taskqueue.cli``: the same as ``taskqueue-harness``."""

import sys

from pytest_taskqueue.cli import main

sys.exit(main())
