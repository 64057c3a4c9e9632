"""ManagedProcess and the wait strategies, with real child processes (small Python programs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_taskqueue._procs import BackendStartError, ManagedProcess, free_port, free_ports, read_process
from pytest_taskqueue._waits import AllOf, GrpcHealthWait, HttpWait, LogLineWait, TcpWait
from tests.process_tools import descendants, poll_until, still_running

PY = sys.executable


def script(body: str) -> list[str]:
    """A command running the Python program ``body``."""
    return [PY, "-c", textwrap.dedent(body)]


def waits_forever(line: str = "ready") -> list[str]:
    """A program that prints ``line`` and then waits for a signal."""
    return script(f"import signal; print({line!r}, flush=True); signal.pause()")


def http_server(port: int) -> list[str]:
    return [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert all(1024 <= port <= 65535 for port in ports)
    assert isinstance(free_port(), int)


def test_start_http_wait_then_stop_is_idempotent(tmp_path: Path) -> None:
    port = free_port()
    process = ManagedProcess(
        "http", http_server(port), log_path=tmp_path / "http.log", wait=HttpWait(f"http://127.0.0.1:{port}/")
    )
    with process:
        assert process.running
        record = read_process(process.pid or 0)
        assert record is not None and record.pgid == process.pid  # its own process group
        assert TcpWait("127.0.0.1", port).probe(process)
    assert not process.running
    assert not still_running(record)
    assert process.returncode == -signal.SIGTERM
    assert process.stop() == -signal.SIGTERM  # idempotent
    assert "pytest-taskqueue: start 1 of http" in (tmp_path / "http.log").read_text()


def test_log_line_wait_only_sees_the_current_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran-once"
    program = script(
        f"""
        import pathlib, signal
        marker = pathlib.Path({str(marker)!r})
        if not marker.exists():
            marker.write_text("x")
            print("service ready", flush=True)
        else:
            print("second run: never ready", flush=True)
        signal.pause()
        """
    )
    process = ManagedProcess(
        "twice",
        program,
        log_path=tmp_path / "twice.log",
        wait=LogLineWait(r"service ready"),
        start_timeout=1.0,
    )
    process.start()
    first_pid = process.pid
    with pytest.raises(BackendStartError) as caught:
        process.restart()  # the old "service ready" line must not count for the new run
    assert process.pid != first_pid
    assert "not ready after 1.0 s" in caught.value.summary
    assert "second run: never ready" in str(caught.value)
    assert not process.running


def test_kill_is_sigkill_and_start_again_works(tmp_path: Path) -> None:
    process = ManagedProcess(
        "sleeper", waits_forever(), log_path=tmp_path / "s.log", wait=LogLineWait("ready")
    )
    process.start()
    process.kill()
    assert process.returncode == -signal.SIGKILL
    assert not process.crashed  # a deliberate kill is not a crash
    process.start()
    assert process.running and process.starts == 2
    process.stop()


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    program = script(
        """
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        signal.pause()
        """
    )
    process = ManagedProcess(
        "stubborn", program, log_path=tmp_path / "stubborn.log", wait=LogLineWait("ready"), stop_timeout=0.3
    )
    process.start()
    assert process.stop() == -signal.SIGKILL


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    program = script(
        f"""
        import signal, subprocess
        subprocess.Popen([{PY!r}, "-c", "import signal; signal.pause()"])
        print("ready", flush=True)
        signal.pause()
        """
    )
    process = ManagedProcess("parent", program, log_path=tmp_path / "p.log", wait=LogLineWait("ready"))
    process.start()
    assert process.pid is not None
    poll_until(lambda: len(descendants(process.pid or 0)) == 1, 10, "grandchild started")
    family = descendants(process.pid)
    process.stop()
    # The grandchild is not ours to reap: its exit after the group's signal is asynchronous.
    poll_until(lambda: not any(still_running(record) for record in family), 10, "the group gone")


def test_early_exit_names_backend_command_and_log_tail(tmp_path: Path) -> None:
    program = script(
        """
        import sys
        print("loading configuration")
        print("fatal: no such table 'widgets'", flush=True)
        sys.exit(3)
        """
    )
    process = ManagedProcess(
        "WidgetDB", program, log_path=tmp_path / "widget.log", wait=TcpWait("127.0.0.1", free_port())
    )
    with pytest.raises(BackendStartError) as caught:
        process.start()
    error = caught.value
    assert "\n" not in error.summary
    assert error.summary.startswith("WidgetDB: exited with code 3 before it was ready")
    assert "sys.exit(3)" in error.summary  # the command line
    assert str(tmp_path / "widget.log") in error.summary
    assert "fatal: no such table 'widgets'" in str(error)  # the log tail
    assert not process.running


def test_timeout_reports_last_probe_and_stops_the_process(tmp_path: Path) -> None:
    port = free_port()
    process = ManagedProcess(
        "slowpoke",
        waits_forever("still warming up"),
        log_path=tmp_path / "slow.log",
        wait=HttpWait(f"http://127.0.0.1:{port}/health"),
        start_timeout=0.5,
    )
    with pytest.raises(BackendStartError) as caught:
        process.start()
    assert "not ready after 0.5 s" in caught.value.summary
    assert f"HTTP GET http://127.0.0.1:{port}/health" in caught.value.summary
    assert "ConnectionRefusedError" in caught.value.summary
    assert "still warming up" in str(caught.value)
    assert not process.running


def test_missing_program_is_a_start_error(tmp_path: Path) -> None:
    process = ManagedProcess(
        "ghost", ["/nonexistent/ghost-server", "--port", "1"], log_path=tmp_path / "g.log"
    )
    with pytest.raises(BackendStartError, match=r"ghost: cannot run /nonexistent/ghost-server"):
        process.start()


def test_grpc_health_wait_and_all_of(tmp_path: Path) -> None:
    port = free_port()
    program = script(
        f"""
        import signal, sys
        from concurrent import futures
        import grpc
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        server = grpc.server(futures.ThreadPoolExecutor(2))
        servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        server.add_insecure_port("127.0.0.1:{port}")
        server.start()
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        servicer.set("sick", health_pb2.HealthCheckResponse.NOT_SERVING)
        print("grpc up", flush=True)
        signal.pause()
        """
    )
    target = f"127.0.0.1:{port}"
    with ManagedProcess(
        "health",
        program,
        log_path=tmp_path / "h.log",
        wait=AllOf(LogLineWait("grpc up"), GrpcHealthWait(target)),
        start_timeout=30,
    ) as process:
        sick = GrpcHealthWait(target, "sick")
        assert not sick.probe(process)
        assert sick.last_error == "health status NOT_SERVING"
        sick.close()


def test_parent_death_signal_kills_children_started_from_ended_threads(tmp_path: Path) -> None:
    """SIGKILL of the harness takes its children along, even one started from a thread that ended."""
    program = textwrap.dedent(
        f"""
        import signal, sys, threading
        from pathlib import Path
        from pytest_taskqueue._procs import ManagedProcess
        from pytest_taskqueue._waits import LogLineWait

        def start():
            child = ManagedProcess(
                "orphan-candidate",
                [sys.executable, "-c", "import signal; print('ready', flush=True); signal.pause()"],
                log_path=Path({str(tmp_path / "child.log")!r}),
                wait=LogLineWait("ready"),
            )
            child.start()
            print(child.pid, flush=True)

        thread = threading.Thread(target=start)
        thread.start()
        thread.join()
        print("thread ended", flush=True)
        signal.pause()
        """
    )
    harness = subprocess.Popen([PY, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        assert harness.stdout is not None
        child_pid = int(harness.stdout.readline())
        assert harness.stdout.readline().strip() == "thread ended"
        child = read_process(child_pid)
        assert child is not None and still_running(child), "the child died with its starting thread"
        os.kill(harness.pid, signal.SIGKILL)
        harness.wait(10)
        poll_until(lambda: not still_running(child), 10, "child gone after its parent was SIGKILLed")
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
