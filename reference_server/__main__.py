"""``python -m reference_server serve|worker|all [flags]``: see reference_server.config for the flags."""

from __future__ import annotations

import sys

from reference_server.config import parse_args
from reference_server.server import main

if __name__ == "__main__":
    mode, config = parse_args()
    sys.exit(main(mode, config))
