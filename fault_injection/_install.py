"""Build the Toxiproxy server with ``go install`` into the toolkit's cache, once.

The toolkit uses Shopify's real Toxiproxy, never a proxy of its own. It is not on PyPI, so the
first run builds it from the Go module proxy; later runs reuse the cached binary. Several
pytest-xdist workers may ask for it at the same moment, so the build runs under an exclusive
``fcntl`` lock held in the cache folder, and the binary only appears (by an atomic rename) once
it is complete.

``go install`` alone would leave Toxiproxy's version variable at its source default, ``git``; the
build sets it (``-ldflags -X``) to the release, so ``GET /version`` answers ``2.12.0`` as the
released binaries and images do. A stamp beside the binary records how it was built: a binary
built otherwise (by an older toolkit) is rebuilt once.

The build itself is run by the caller's ``run`` (``BuildRunner``): the toolkit passes one that runs
it as a supervised process, stopped on every exit path and killed with the harness, so a build
interrupted by Ctrl-C or by the harness's death does not go on orphaned.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable

__all__ = ["TOXIPROXY_VERSION", "BuildRunner", "ToxiproxyInstallError", "ensure_toxiproxy"]

TOXIPROXY_VERSION = "v2.12.0"
"""The Toxiproxy release the toolkit builds and is tested against."""

_MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
_VERSION_VARIABLE = "github.com/Shopify/toxiproxy/v2.Version"
"""Toxiproxy's version variable (its version.go; the release builds set it the same way)."""
_LDFLAGS = f"-X {_VERSION_VARIABLE}={TOXIPROXY_VERSION.removeprefix('v')}"
_BINARY_NAME = "toxiproxy-server"
_STAMP_NAME = "toxiproxy-server.build"
_STAMP = f"{_MODULE}@{TOXIPROXY_VERSION} -ldflags={_LDFLAGS}\n"
"""What the stamp file holds for a binary built the current way."""
_LOG_NAME = "go-install.log"
_LOG_TAIL_CHARS = 2000

BuildRunner = Callable[[list[str], dict[str, str], pathlib.Path], "int | None"]
"""Runs a build: ``run(argv, env, log_path)`` with ``env`` as the whole environment and the output
in ``log_path``; returns the exit status, or None when the build did not finish in time (it is then
stopped). It must stop the build on every exit path, an interrupt included."""


class ToxiproxyInstallError(RuntimeError):
    """Toxiproxy could not be provided: Go is missing or ``go install`` failed."""


def ensure_toxiproxy(cache_dir: pathlib.Path, *, run: BuildRunner) -> pathlib.Path:
    """Return the path of a Toxiproxy server binary, building it on first use.

    The binary lives at ``<cache_dir>/toxiproxy-v2.12.0/toxiproxy-server``. If it is missing it
    is built with ``go install``, run by ``run`` (one line on stderr says so), as is a binary whose
    stamp says it was built another way; a concurrent caller waits on the lock and then finds the
    finished binary.

    Raises:
        ToxiproxyInstallError: ``go`` is not on PATH, or the build failed (the message carries
            the command line and the tail of its output).
    """
    target_dir = cache_dir / f"toxiproxy-{TOXIPROXY_VERSION}"
    binary = target_dir / _BINARY_NAME
    stamp = target_dir / _STAMP_NAME
    if _is_current(binary, stamp):
        return binary

    target_dir.mkdir(parents=True, exist_ok=True)
    lock_path = cache_dir / f"toxiproxy-{TOXIPROXY_VERSION}.lock"
    with open(lock_path, "a+b") as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            # Another process may have finished the build while this one waited for the lock.
            if _is_current(binary, stamp):
                return binary
            _build(target_dir, binary, run)
            partial = target_dir / f"{_STAMP_NAME}.{os.getpid()}.tmp"
            partial.write_text(_STAMP)
            os.replace(partial, stamp)
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
    return binary


def _is_executable(path: pathlib.Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _is_current(binary: pathlib.Path, stamp: pathlib.Path) -> bool:
    """The binary exists and its stamp says it was built as this version of the toolkit builds it."""
    try:
        return _is_executable(binary) and stamp.read_text() == _STAMP
    except OSError:
        return False


def _build(target_dir: pathlib.Path, binary: pathlib.Path, run: BuildRunner) -> None:
    """Run ``go install`` into a scratch GOBIN and move the result into place atomically."""
    go = shutil.which("go")
    if go is None:
        raise ToxiproxyInstallError(
            f"Toxiproxy {TOXIPROXY_VERSION} is built from source on first use and needs Go: "
            "install Go >= 1.22 (https://go.dev/dl/) and put `go` on PATH"
        )
    print(
        f"building Toxiproxy {TOXIPROXY_VERSION} with go install (first run only)...",
        file=sys.stderr,
        flush=True,
    )
    log_path = target_dir / _LOG_NAME
    with tempfile.TemporaryDirectory(prefix=".build-", dir=target_dir) as scratch:
        command = [go, "install", f"-ldflags={_LDFLAGS}", "-v", f"{_MODULE}@{TOXIPROXY_VERSION}"]
        env = dict(os.environ, GOBIN=scratch, CGO_ENABLED="0")
        returncode = run(command, env, log_path)
        if returncode is None:
            raise ToxiproxyInstallError(
                f"`GOBIN={scratch} {shlex.join(command)}` did not finish in time (log: {log_path})"
            )
        built = pathlib.Path(scratch) / "server"
        if returncode != 0 or not _is_executable(built):
            try:
                output = log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
            except OSError:
                output = ""
            raise ToxiproxyInstallError(
                f"`GOBIN={scratch} {shlex.join(command)}` failed (exit {returncode}); output tail:\n{output}"
            )
        os.replace(built, binary)
