"""docs/implementers.md's Go path, as written: generate the stubs from the proto and build a server.

The plugins are installed with ``go install`` into a scratch GOBIN, the code is generated with
grpcio-tools' protoc (``python -m grpc_tools.protoc``), and a small ``main`` in a fresh module
(``example.com/yourserver``) registers the service, health and reflection; ``go build`` must pass.
Skipped without Go. The first run downloads the modules from the Go module proxy.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTO = ROOT / "proto" / "taskqueue" / "v1" / "taskqueue.proto"
_TIMEOUT_S = 1500.0

_MAIN_GO = """package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	taskqueuev1 "example.com/yourserver/gen/taskqueue/v1"
)

type server struct {
	taskqueuev1.UnimplementedTaskQueueServer
}

func (server) GetServerInfo(
	context.Context, *taskqueuev1.GetServerInfoRequest,
) (*taskqueuev1.ServerInfo, error) {
	return &taskqueuev1.ServerInfo{Implementation: "go-sketch", Version: "0"}, nil
}

func main() {
	port := flag.Int("port", 50051, "port to listen on, 127.0.0.1")
	flag.Parse()
	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer()
	taskqueuev1.RegisterTaskQueueServer(s, server{})
	healthpb.RegisterHealthServer(s, health.NewServer())
	reflection.Register(s)
	log.Fatal(s.Serve(listener))
}
"""


def _run(args: list[str | pathlib.Path], cwd: pathlib.Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=_TIMEOUT_S
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}"


@pytest.mark.skipif(shutil.which("go") is None, reason="needs Go")
def test_go_stubs_generate_and_a_server_builds(tmp_path: pathlib.Path) -> None:
    gobin = tmp_path / "bin"
    env = {**os.environ, "GOBIN": str(gobin), "PATH": f"{gobin}{os.pathsep}{os.environ['PATH']}"}
    for plugin in (
        "google.golang.org/protobuf/cmd/protoc-gen-go@latest",
        "google.golang.org/grpc/cmd/protoc-gen-go-grpc@latest",
    ):
        _run(["go", "install", plugin], tmp_path, env)
    module = tmp_path / "yourserver"
    (module / "proto" / "taskqueue" / "v1").mkdir(parents=True)
    shutil.copy2(PROTO, module / "proto" / "taskqueue" / "v1" / PROTO.name)
    (module / "gen").mkdir()
    _run(["go", "mod", "init", "example.com/yourserver"], module, env)
    _run(
        [
            *(sys.executable, "-m", "grpc_tools.protoc", "-I", "proto"),
            *("--go_out=gen", "--go_opt=paths=source_relative"),
            *("--go-grpc_out=gen", "--go-grpc_opt=paths=source_relative"),
            "taskqueue/v1/taskqueue.proto",
        ],
        module,
        env,
    )
    generated = sorted(path.name for path in (module / "gen" / "taskqueue" / "v1").iterdir())
    assert generated == ["taskqueue.pb.go", "taskqueue_grpc.pb.go"]
    assert "package taskqueuev1" in (module / "gen" / "taskqueue" / "v1" / "taskqueue.pb.go").read_text()
    (module / "cmd" / "server").mkdir(parents=True)
    (module / "cmd" / "server" / "main.go").write_text(_MAIN_GO)
    _run(["go", "get", "google.golang.org/grpc", "google.golang.org/protobuf"], module, env)
    _run(["go", "mod", "tidy"], module, env)
    _run(["go", "build", "-o", str(tmp_path / "my-server"), "./cmd/server"], module, env)
    assert os.access(tmp_path / "my-server", os.X_OK)
