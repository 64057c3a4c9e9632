"""Regenerate the Python stubs in taskqueue_proto/ from proto/taskqueue/v1/taskqueue.proto.

Usage: python proto/generate.py [OUTPUT_DIR]

protoc writes modules that import each other as ``taskqueue.v1.*``; this
script rewrites those imports so the stubs live in the single leaf package
``taskqueue_proto`` that both the reference server and the toolkit import.
tests/test_stubs.py runs it into a temporary folder and compares.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PROTO_FILE = "taskqueue/v1/taskqueue.proto"
GENERATED = (
    "taskqueue_pb2.py",
    "taskqueue_pb2.pyi",
    "taskqueue_pb2_grpc.py",
    "taskqueue_pb2_grpc.pyi",
)


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc  # dev dependency, needed only here

    include = Path(protoc.__file__).resolve().parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--mypy_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            PROTO_FILE,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        src = Path(tmp) / "taskqueue" / "v1"
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in GENERATED:
            text = (src / name).read_text()
            text = text.replace("from taskqueue.v1 import", "from taskqueue_proto import")
            text = text.replace("import taskqueue.v1.taskqueue_pb2", "import taskqueue_proto.taskqueue_pb2")
            text = text.replace("taskqueue.v1.taskqueue_pb2.", "taskqueue_proto.taskqueue_pb2.")
            (out_dir / name).write_text(text)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "taskqueue_proto"
    generate(target)
    print(f"wrote {', '.join(GENERATED)} to {target}")
