"""The real local backends of the reference stack: ElasticMQ (SQS), moto (DynamoDB), Toxiproxy.

Each backend is a context manager (or ``start()``/``stop()``) that runs one ``ManagedProcess`` on a
127.0.0.1 port chosen when the object is made, so ``endpoint`` is known before it starts. What a
backend needs from outside is fetched into the cache folder on first use, with a progress line on
stderr: ElasticMQ's classpath is resolved by Maven (the jars stay in Maven's ``~/.m2``) and the
Toxiproxy binary is built with ``go install`` by ``fault_injection.ensure_toxiproxy``. A missing
``java``, ``mvn`` or ``go`` raises ``MissingToolError`` with one line saying what to install.

ElasticMQ starts in about 1.3 s on this kind of machine; a Java class-data-sharing archive of its
classes (written to the cache when the first run exits) brings later starts to about 0.5 s.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypedDict, Unpack

from fault_injection import Backoff
from pytest_taskqueue._cache import cache_dir, cache_lock
from pytest_taskqueue._procs import (
    BackendStartError,
    ManagedProcess,
    MissingToolError,
    display_command,
    free_port,
)
from pytest_taskqueue._waits import HttpWait, WaitStrategy

__all__ = [
    "ELASTICMQ_ARTIFACT",
    "ELASTICMQ_VERSION",
    "BackendOptions",
    "ElasticMQ",
    "LocalBackend",
    "LocalBackends",
    "MotoServer",
    "ProxyEndpoint",
    "ToxiproxyServer",
    "child_environment",
    "dynamodb_ready",
    "ensure_elasticmq",
    "require_tool",
    "sqs_ready",
    "toxiproxy_ready",
]

ELASTICMQ_VERSION = "1.6.16"
"""ElasticMQ release (1.6.16 is the first with the JSON protocol that current botocore speaks)."""
ELASTICMQ_ARTIFACT = f"org.elasticmq:elasticmq-server_2.13:{ELASTICMQ_VERSION}"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_MAVEN_TIMEOUT_S = 1800.0
_GO_BUILD_TIMEOUT_S = 1800.0
_PROGRESS_EVERY_S = 2.0

JAVA_HINT = "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
MAVEN_HINT = "install Apache Maven (Debian: apt-get install maven)"
GO_HINT = "install Go >= 1.22 (https://go.dev/dl/) and put `go` on PATH"

_ROOT = Path(__file__).resolve().parent.parent


def require_tool(program: str, why: str, hint: str) -> str:
    """Absolute path of ``program`` on PATH, else MissingToolError('<program> not found ...: <hint>')."""
    found = shutil.which(program)
    if found is None:
        raise MissingToolError(program, f"{program} not found on PATH ({why}): {hint}")
    return found


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child, with this source tree importable by ``python -m``."""
    env = dict(os.environ)
    if (_ROOT / "pyproject.toml").is_file():  # a source checkout, maybe not installed
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if str(_ROOT) not in paths:
            env["PYTHONPATH"] = os.pathsep.join([str(_ROOT), *paths])
    env.update(extra or {})
    return env


# ----------------------------------------------------------------------------------- readiness


def sqs_ready(endpoint: str, *, probe_timeout: float = 1.0) -> WaitStrategy:
    """SQS (ElasticMQ) is ready when it answers ``ListQueues`` with 200."""
    url = f"{endpoint}/?Action=ListQueues"
    return HttpWait(url, accept=lambda status: status == 200, probe_timeout=probe_timeout)


def dynamodb_ready(endpoint: str, *, any_answer: bool = False, probe_timeout: float = 1.0) -> WaitStrategy:
    """DynamoDB is ready when it answers a (fake-)signed ``ListTables``: with 200, or with anything
    (``any_answer``: an image that may check the signature)."""
    return HttpWait(
        endpoint + "/",
        method="POST",
        body=b"{}",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Authorization": (
                "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/dynamodb/aws4_request, "
                "SignedHeaders=host, Signature=0"
            ),
        },
        accept=(lambda status: True) if any_answer else (lambda status: status == 200),
        probe_timeout=probe_timeout,
    )


def toxiproxy_ready(endpoint: str, *, probe_timeout: float = 1.0) -> WaitStrategy:
    """Toxiproxy is ready when its API answers ``GET /version`` with 200."""
    return HttpWait(f"{endpoint}/version", accept=lambda status: status == 200, probe_timeout=probe_timeout)


# ------------------------------------------------------------------------------------ base class


@dataclass(frozen=True)
class ProxyEndpoint:
    """A Toxiproxy proxy slot of a backend set: the ``listen`` to create it with (as Toxiproxy
    sees it) and where a client on the host reaches it."""

    name: str
    listen: str
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port`` a client on the host connects to."""
        return f"{self.host}:{self.port}"


class BackendOptions(TypedDict, total=False):
    """``LocalBackend``'s arguments, which every backend takes too."""

    port: int
    host: str
    log_dir: Path | None
    start_timeout: float
    progress: IO[str] | None


class LocalBackend:
    """One backend process on ``host:port`` (port 0: a free one, chosen now); a context manager."""

    name = "backend"
    log_name = "backend.log"

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        log_dir: Path | None = None,
        start_timeout: float = 60.0,
        progress: IO[str] | None = sys.stderr,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="taskqueue-"))
        self.start_timeout = start_timeout
        self.progress = progress
        self.process: ManagedProcess | None = None
        self._prepared = False

    @property
    def endpoint(self) -> str:
        """The backend's URL, e.g. ``http://127.0.0.1:4566``."""
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the process writes its output."""
        return self.log_dir / self.log_name

    @property
    def pid(self) -> int | None:
        """The process id while it runs (or of the last run)."""
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.running

    def prepare(self) -> None:
        """Fetch or build what the process needs (may download on first use); default: nothing."""

    def ensure_prepared(self) -> None:
        """``prepare()`` once per instance (thread-safe only in the sense that it is idempotent)."""
        if not self._prepared:
            self.prepare()
            self._prepared = True

    def command(self) -> list[str]:
        """The command line of the process."""
        raise NotImplementedError

    def wait_strategy(self) -> WaitStrategy:
        """How readiness is probed."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """The process's environment (default: this process's, see ``child_environment``)."""
        return child_environment()

    def _make_process(self) -> ManagedProcess:
        return ManagedProcess(
            self.name,
            self.command(),
            log_path=self.log_path,
            wait=self.wait_strategy(),
            env=self.environment(),
            start_timeout=self.start_timeout,
        )

    def spawn(self) -> None:
        """Prepare (may download on first use) and spawn the process without waiting for it."""
        if self.running:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.ensure_prepared()
        self.process = self._make_process()
        self.process.start(wait=False)

    def wait_ready(self) -> None:
        """Wait until the spawned process is ready; BackendStartError (after stopping it) if not."""
        if self.process is None:
            raise RuntimeError(f"{self.name} was never spawned")
        self.process.wait_ready()

    def start(self) -> Self:
        """Spawn and wait until ready; BackendStartError (after cleaning up) when it cannot."""
        if not self.running:
            self.spawn()
            self.wait_ready()
        return self

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL); idempotent."""
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.endpoint} pid={self.pid} running={self.running}>"


# ------------------------------------------------------------------------------------- ElasticMQ


def _say(progress: IO[str] | None, line: str) -> None:
    if progress is not None:
        print(line, file=progress, flush=True)


def _classpath_usable(classpath_file: Path) -> bool:
    """True when the stored classpath exists and every jar in it is still on disk."""
    try:
        classpath = classpath_file.read_text().strip()
    except OSError:
        return False
    return bool(classpath) and all(Path(jar).is_file() for jar in classpath.split(os.pathsep))


_POM = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by pytest-taskqueue: resolves ElasticMQ's runtime classpath; nothing is built. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.pytest-taskqueue</groupId>
  <artifactId>elasticmq-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.elasticmq</groupId>
      <artifactId>elasticmq-server_2.13</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


def ensure_elasticmq(cache: Path | None = None, *, progress: IO[str] | None = sys.stderr) -> Path:
    """Return the file holding ElasticMQ's classpath, resolving it with Maven on first use.

    The classpath file is ``<cache>/elasticmq-<version>/classpath.txt``; Maven keeps the jars in
    its own repository (``~/.m2``). Concurrent callers (xdist workers) wait on a lock and then find
    the finished file. Raises MissingToolError without ``mvn``, BackendStartError if Maven fails.
    """
    cache = cache if cache is not None else cache_dir()
    folder = cache / f"elasticmq-{ELASTICMQ_VERSION}"
    classpath_file = folder / "classpath.txt"
    if _classpath_usable(classpath_file):
        return classpath_file
    folder.mkdir(parents=True, exist_ok=True)
    with cache_lock(cache, f"elasticmq-{ELASTICMQ_VERSION}"):
        if _classpath_usable(classpath_file):
            return classpath_file
        mvn = require_tool("mvn", f"needed once to fetch ElasticMQ {ELASTICMQ_VERSION}", MAVEN_HINT)
        (folder / "pom.xml").write_text(_POM.format(version=ELASTICMQ_VERSION))
        partial = folder / f"classpath.txt.{os.getpid()}.tmp"
        argv = [
            mvn,
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(folder / "pom.xml"),
            f"{_DEPENDENCY_PLUGIN}:build-classpath",
            f"-Dmdep.outputFile={partial}",
        ]
        _run_maven(argv, folder / "maven.log", progress)
        os.replace(partial, classpath_file)
    return classpath_file


def run_build(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    progress: IO[str] | None,
    timeout_s: float,
    count: Callable[[str], int],
    describe: Callable[[int, float], str],
) -> int | None:
    """Run a one-off build step (Maven, ``go install``) as a ``ManagedProcess``, output in ``log_path``.

    Every ``_PROGRESS_EVERY_S`` a line ``describe(count(output so far), seconds)`` goes to
    ``progress`` (once ``count`` is not 0). Returns the exit status, or None when it did not finish
    within ``timeout_s``. Like every process the toolkit starts, it is stopped (its whole process
    group) on every exit path, an interrupt included, and dies with the harness.
    """
    log_path.unlink(missing_ok=True)
    started = time.monotonic()
    process = ManagedProcess(name, argv, log_path=log_path, env=env)
    process.start(wait=False)
    last_report = started
    backoff = Backoff(timeout_s, first=0.1, cap=max(0.1, _PROGRESS_EVERY_S))
    try:
        while process.running:
            done = count(process.output())
            now = time.monotonic()
            if done and now - last_report >= _PROGRESS_EVERY_S:
                _say(progress, describe(done, now - started))
                last_report = now
            pause = backoff.pause()
            if pause is None:
                break
            process.wait_for_exit(pause)
        return process.returncode
    finally:
        process.stop()


def _run_maven(argv: list[str], log_path: Path, progress: IO[str] | None) -> None:
    """Run Maven (supervised, its output in ``log_path``), printing a download count every few seconds."""
    _say(progress, f"downloading ElasticMQ {ELASTICMQ_VERSION} with Maven (first run only)...")
    started = time.monotonic()
    code = run_build(
        "Maven",
        argv,
        log_path,
        progress=progress,
        timeout_s=_MAVEN_TIMEOUT_S,
        count=lambda output: output.count("Downloaded from"),
        describe=lambda downloaded, seconds: f"  ... {downloaded} files downloaded ({seconds:.0f} s)",
    )
    output = log_path.read_text(errors="replace")
    if code != 0:
        raise BackendStartError(
            "ElasticMQ",
            f"Maven could not resolve {ELASTICMQ_ARTIFACT} "
            + (f"(exit {code})" if code is not None else f"(not done after {_MAVEN_TIMEOUT_S:.0f} s)"),
            command=display_command(argv),
            log_path=log_path,
            log_tail="\n".join(output.splitlines()[-25:]),
        )
    _say(
        progress,
        f"ElasticMQ {ELASTICMQ_VERSION} ready in the cache ({output.count('Downloaded from')} files "
        f"downloaded, {time.monotonic() - started:.1f} s)",
    )


_ELASTICMQ_CONF = """# Written by pytest-taskqueue for one ElasticMQ process.
include classpath("application.conf")
node-address {{ protocol = http, host = "{host}", port = {port}, context-path = "" }}
rest-sqs {{ enabled = true, bind-port = {port}, bind-hostname = "{host}", sqs-limits = strict }}
rest-stats {{ enabled = false }}
"""


class ElasticMQ(LocalBackend):
    """ElasticMQ, the real SQS-compatible server, run with ``java`` from its Maven Central jars.

    Args:
        cds: use (and on the first run, write) a class-data-sharing archive in the cache.
    """

    name = "ElasticMQ"
    log_name = "elasticmq.log"

    def __init__(
        self, *, cache: Path | None = None, cds: bool = True, **options: Unpack[BackendOptions]
    ) -> None:
        super().__init__(**options)
        self.cache = cache
        self.cds = cds and os.environ.get("TASKQUEUE_ELASTICMQ_CDS", "1") != "0"
        self._java = ""
        self._argfile: Path | None = None
        self._archive: Path | None = None
        self._dumping: Path | None = None

    @property
    def archive_path(self) -> Path | None:
        """The class-data-sharing archive this instance uses or writes (known after ``prepare``)."""
        return self._archive if self.cds else None

    def prepare(self) -> None:
        self._java = require_tool("java", "ElasticMQ runs on the JVM", JAVA_HINT)
        classpath_file = ensure_elasticmq(self.cache, progress=self.progress)
        folder = classpath_file.parent
        classpath = classpath_file.read_text().strip()
        # A java @argfile keeps the long classpath out of the command line (and error messages).
        self._argfile = folder / "classpath.args"
        quoted = '"' + classpath.replace("\\", "\\\\").replace('"', '\\"') + '"'
        wanted = f"-cp\n{quoted}\n"
        with contextlib.suppress(OSError):
            if self._argfile.read_text() == wanted:
                wanted = ""
        if wanted:
            partial = folder / f"classpath.args.{os.getpid()}.tmp"
            partial.write_text(wanted)
            os.replace(partial, self._argfile)
        java_real = Path(self._java).resolve()
        key_source = f"{java_real}\n{java_real.stat().st_mtime_ns}\n{classpath}"
        key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
        self._archive = folder / f"elasticmq-{key}.jsa"
        _remove_stale_dumps(folder)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.log_dir / "elasticmq.conf").write_text(_ELASTICMQ_CONF.format(host=self.host, port=self.port))

    def _jvm_options(self) -> list[str]:
        # C1 only and SerialGC: a short-lived JVM spends less on compiling and collecting. Measured in
        # the stack (benchmarks/bench_stack_cpu.py): C2 doubled the first burst's CPU; a 50 ms Pekko
        # scheduler tick saved idle CPU but slowed bursts; -XX:-UsePerfData, -XX:CICompilerCount=1 and
        # a smaller heap changed nothing measurable.
        options = [
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-Xshare:auto",
            f"-XX:ErrorFile={self.log_dir / 'hs_err_pid%p.log'}",
        ]
        self._dumping = None
        if self.cds and self._archive is not None:
            options += ["-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
            if self._archive.is_file():
                options.append(f"-XX:SharedArchiveFile={self._archive}")
            else:
                self._dumping = self._archive.with_name(f"{self._archive.name}.{os.getpid()}.{self.port}.tmp")
                options.append(f"-XX:ArchiveClassesAtExit={self._dumping}")
        return options

    def command(self) -> list[str]:
        return [
            self._java,
            *self._jvm_options(),
            f"-Dconfig.file={self.log_dir / 'elasticmq.conf'}",
            f"@{self._argfile}",
            "org.elasticmq.server.Main",
        ]

    def wait_strategy(self) -> WaitStrategy:
        return sqs_ready(self.endpoint)

    def _make_process(self) -> ManagedProcess:
        process = super()._make_process()
        process.cwd = self.log_dir  # anything the JVM writes to its working folder lands with the log
        if self._dumping is not None:
            process.stop_timeout = 20.0  # the archive is written while the JVM exits
        return process

    def wait_ready(self) -> None:
        try:
            super().wait_ready()
        except BackendStartError as error:
            archive = self._archive
            used_archive = self.cds and self._dumping is None and archive is not None
            if not used_archive or archive is None or "exited with code" not in error.reason:
                self.stop()
                raise
            # A damaged or foreign archive can crash the JVM at start: drop it and start without.
            with contextlib.suppress(OSError):
                archive.unlink()
            self.cds = False
            self.spawn()
            super().wait_ready()

    def stop(self) -> None:
        super().stop()
        dumping, self._dumping = self._dumping, None
        if dumping is None or self._archive is None:
            return
        process = self.process
        exited_cleanly = process is not None and process.returncode in (0, 143)
        if exited_cleanly and dumping.is_file() and dumping.stat().st_size > 0:
            os.replace(dumping, self._archive)
        else:
            with contextlib.suppress(OSError):
                dumping.unlink()


def _remove_stale_dumps(folder: Path) -> None:
    """Delete half-written archives left by harness processes that no longer exist."""
    for leftover in folder.glob("*.jsa.*.tmp"):
        try:
            owner = int(leftover.name.split(".")[-3])
        except (IndexError, ValueError):
            continue
        if owner != os.getpid() and not Path(f"/proc/{owner}").exists():
            with contextlib.suppress(OSError):
                leftover.unlink()


# ------------------------------------------------------------------------------------------- moto


class MotoServer(LocalBackend):
    """The DynamoDB stand-in: ``python -m pytest_taskqueue._moto_server`` (requests serialised)."""

    name = "moto (DynamoDB)"
    log_name = "moto.log"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pytest_taskqueue._moto_server",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]

    def wait_strategy(self) -> WaitStrategy:
        return dynamodb_ready(self.endpoint)


# -------------------------------------------------------------------------------------- Toxiproxy


def run_go_build(argv: list[str], env: dict[str, str], log_path: Path) -> int | None:
    """``fault_injection.ensure_toxiproxy``'s build runner: ``run_build`` with a package count
    (``go install -v`` names each package it compiles), for at most ``_GO_BUILD_TIMEOUT_S``."""
    return run_build(
        "go install",
        argv,
        log_path,
        env=env,
        progress=sys.stderr,
        timeout_s=_GO_BUILD_TIMEOUT_S,
        count=lambda output: len(output.splitlines()),
        describe=lambda packages, seconds: (
            f"  still building Toxiproxy: {packages} packages so far, {seconds:.0f} s"
        ),
    )


def ensure_toxiproxy_binary(cache: Path | None = None) -> Path:
    """The Toxiproxy server binary from ``fault_injection.ensure_toxiproxy`` (built on first use)."""
    from fault_injection import ToxiproxyInstallError, ensure_toxiproxy

    try:
        return ensure_toxiproxy(cache if cache is not None else cache_dir(), run=run_go_build)
    except ToxiproxyInstallError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        if shutil.which("go") is None:
            raise MissingToolError(
                "go", f"go not found on PATH (needed once to build Toxiproxy): {GO_HINT}"
            ) from error
        raise BackendStartError("Toxiproxy", first, log_tail=str(error)) from error


class ToxiproxyServer(LocalBackend):
    """Shopify's Toxiproxy server (its HTTP API at ``endpoint``).

    Args:
        cache: the toolkit cache holding the binary (default: ``cache_dir()``).
        log_level: Toxiproxy's ``LOG_LEVEL`` (``warn`` keeps it from logging every request);
            None: its default.
    """

    name = "Toxiproxy"
    log_name = "toxiproxy.log"

    def __init__(
        self, *, cache: Path | None = None, log_level: str | None = None, **options: Unpack[BackendOptions]
    ) -> None:
        options.setdefault("start_timeout", 30.0)
        super().__init__(**options)
        self.cache = cache
        self.log_level = log_level
        self._binary: Path | None = None

    def prepare(self) -> None:
        self._binary = ensure_toxiproxy_binary(self.cache)

    def command(self) -> list[str]:
        return [str(self._binary), "-host", self.host, "-port", str(self.port)]

    def environment(self) -> dict[str, str]:
        return child_environment({"LOG_LEVEL": self.log_level} if self.log_level else None)

    def wait_strategy(self) -> WaitStrategy:
        return toxiproxy_ready(self.endpoint)


# ----------------------------------------------------------------------------------- the local set


class LocalBackends:
    """The local backend set of a stack: ElasticMQ (SQS), moto (DynamoDB) and Toxiproxy, as processes.

    ``start()`` fills the cache for them side by side (first run: Maven and ``go install``), spawns
    all three (ElasticMQ first: the slowest) and returns their readiness waits by name, for the
    caller to run beside its own. Everything is on 127.0.0.1; ``ports`` are (sqs, dynamodb,
    toxiproxy) and ``proxy_ports`` those of the proxies by name, chosen by the caller.
    """

    server_host = "127.0.0.1"
    """Where a process the proxies reach listens."""

    def __init__(
        self,
        ports: tuple[int, int, int],
        proxy_ports: Mapping[str, int],
        *,
        log_dir: Path,
        start_timeout: float,
        progress: IO[str] | None,
        cache: Path | None,
    ) -> None:
        self.sqs = ElasticMQ(
            port=ports[0], log_dir=log_dir, start_timeout=start_timeout, progress=progress, cache=cache
        )
        self.dynamodb = MotoServer(
            port=ports[1], log_dir=log_dir, start_timeout=start_timeout, progress=progress
        )
        # warn: its info level logs every connection (35 MB in a 60 s chaos run)
        self.toxiproxy = ToxiproxyServer(
            port=ports[2],
            log_dir=log_dir,
            start_timeout=start_timeout,
            progress=progress,
            cache=cache,
            log_level="warn",
        )
        self.proxies = {
            name: ProxyEndpoint(name, f"127.0.0.1:{port}", "127.0.0.1", port)
            for name, port in proxy_ports.items()
        }
        """Each proxy slot by name: it listens on 127.0.0.1 where the host reaches it."""

    @property
    def sqs_endpoint(self) -> str:
        """ElasticMQ's URL."""
        return self.sqs.endpoint

    @property
    def dynamodb_endpoint(self) -> str:
        """moto's URL."""
        return self.dynamodb.endpoint

    @property
    def toxiproxy_url(self) -> str:
        """Toxiproxy's HTTP API."""
        return self.toxiproxy.endpoint

    @property
    def sqs_upstream(self) -> str:
        """ElasticMQ's address as a proxy's upstream."""
        return f"{self.sqs.host}:{self.sqs.port}"

    @property
    def dynamodb_upstream(self) -> str:
        """moto's address as a proxy's upstream."""
        return f"{self.dynamodb.host}:{self.dynamodb.port}"

    @property
    def by_role(self) -> dict[str, LocalBackend]:
        """The backends by role: ``sqs``, ``dynamodb``, ``toxiproxy``."""
        return {"sqs": self.sqs, "dynamodb": self.dynamodb, "toxiproxy": self.toxiproxy}

    def start(self) -> dict[str, Callable[[], None]]:
        """Prepare and spawn all three; return their readiness waits: elasticmq, moto, toxiproxy."""
        preparing = (self.sqs, self.toxiproxy)
        with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="taskqueue-prepare") as pool:
            futures = [pool.submit(backend.ensure_prepared) for backend in preparing]
        for future in futures:
            future.result()
        for backend in (self.sqs, self.dynamodb, self.toxiproxy):
            backend.spawn()
        return {
            "elasticmq": self.sqs.wait_ready,
            "moto": self.dynamodb.wait_ready,
            "toxiproxy": self.toxiproxy.wait_ready,
        }

    def processes(self) -> dict[str, ManagedProcess]:
        """The backend processes spawned so far, by name."""
        return {
            backend.name: backend.process
            for backend in (self.sqs, self.dynamodb, self.toxiproxy)
            if backend.process is not None
        }

    def stop(self) -> None:
        """Stop Toxiproxy, ElasticMQ and moto, in that order; idempotent."""
        for backend in (self.toxiproxy, self.sqs, self.dynamodb):
            with contextlib.suppress(Exception):
                backend.stop()
