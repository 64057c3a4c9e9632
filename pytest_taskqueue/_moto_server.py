"""moto's DynamoDB behind a small asyncio HTTP server: the harness's DynamoDB stand-in.

Run as ``python -m pytest_taskqueue._moto_server --host 127.0.0.1 --port N``.

Why not ``moto_server`` itself: it serves each request on its own thread without a lock, and moto's
DynamoDB backend checks a ``ConditionExpression`` and then writes in separate steps. Two racing
conditional writes (``attribute_not_exists(pk)`` on the same idempotency key) can therefore both
pass their check and both succeed. Real DynamoDB applies a conditional write atomically, and the
conformance scenarios race identical submits, so every request here runs alone.

How: one event loop reads requests from any number of connections at once (a listen backlog of
1024), each request *whole* (headers and body) before it touches moto. Only then is moto's WSGI
application called, in the loop's own thread, start to finish (body iteration included), so one
request runs at a time without a lock and without handing the GIL between threads. A client whose
link is slow or faulted (a Toxiproxy slicer, latency, a half-sent body) holds up only its own
connection: nothing waits on its bytes but its own reader. Responses are written the same way.

The WSGI application is the one ``moto.server`` builds (``DomainDispatcherApplication`` over
``create_backend_app``), so what is accepted or rejected, and every answer, is moto's. DynamoDB API
calls (``POST /`` with ``X-Amz-Target: DynamoDB_20120810.<Action>`` and a JSON body, routed by moto's
dispatcher to its DynamoDB app) take a shorter road to the same place (``DynamoDBFastPath``): the
request object Flask would build goes straight to the view moto's route would run, and its answer
becomes the response Flask would send, CORS headers included; Flask's request context, URL routing
and sessions, which change nothing in the answer, are skipped. Every other request goes through
the WSGI application. The dispatcher's host-to-backend lookup, which walks every moto module's URL
patterns on each request, is remembered per host (a pure function of the host name). The DynamoDB
backend app is built before the port opens, so "HTTP answers" means the first real request is fast
too.

Speed-ups of moto itself live in ``_moto_patches`` and are installed by ``build_app``: transactions
back up only the items they touch and key queries read one partition instead of sorting the whole
table (both safe only because requests are serialised), and caches of pure functions moto recomputes
per request (expression syntax trees, the response serializer's field lookups). The answers stay
moto's: ``tests/test_moto_fast_path.py`` plays successes and errors through the stand-in's
application and through unpatched moto and compares them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any, cast
from urllib.parse import unquote, unquote_to_bytes

__all__ = ["DynamoDBFastPath", "SerialisedApp", "build_app", "main", "serve"]

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: Connections the kernel may queue before the loop accepts them.
LISTEN_BACKLOG = 1024
#: Largest request head (request line and headers) and body accepted, bytes.
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Seconds an idle keep-alive connection is kept open.
IDLE_TIMEOUT_S = 120.0

_REASONS = {100: "Continue", 400: "Bad Request", 413: "Payload Too Large", 500: "Internal Server Error"}


class SerialisedApp:
    """WSGI middleware that runs one request at a time, body iteration included.

    The asyncio server already calls it from one thread only; the lock keeps the guarantee for any
    other caller (tests, a threaded WSGI server) and costs nothing uncontended.
    """

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


def build_app(preload: Sequence[str] = ("dynamodb",), *, fast_path: bool = True) -> SerialisedApp:
    """moto's dispatcher application wrapped in ``SerialisedApp``, with ``preload`` backends built.

    With ``fast_path`` (and ``"dynamodb"`` preloaded) DynamoDB API calls skip the Flask layer
    (``DynamoDBFastPath``); without it every request goes through moto's WSGI application.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from pytest_taskqueue._moto_patches import (
        install_condition_cache,
        install_method_name_cache,
        install_partition_queries,
        install_serializer_key_cache,
        install_traversal_memo,
        install_tree_copy,
        install_update_check_memo,
        install_update_expression_cache,
        patch_transactions,
    )

    class Dispatcher(DomainDispatcherApplication):
        """moto's dispatcher, remembering which backend serves which host."""

        def __init__(self) -> None:
            super().__init__(create_backend_app)
            self._backend_of_host: dict[str | None, Any] = {}

        def get_backend_for_host(self, host: str | None) -> Any:
            try:
                return self._backend_of_host[host]
            except KeyError:
                backend = super().get_backend_for_host(host)
                self._backend_of_host[host] = backend
                return backend

    patch_transactions()
    install_partition_queries()
    install_condition_cache()
    install_method_name_cache()
    install_update_expression_cache()
    install_traversal_memo()
    install_tree_copy()
    install_update_check_memo()
    install_serializer_key_cache()
    dispatcher = Dispatcher()
    for service in preload:
        # What the dispatcher would do on the first request for this service, done up front.
        dispatcher.app_instances[service] = create_backend_app(cast(Any, service))
    if fast_path and "dynamodb" in dispatcher.app_instances:
        return SerialisedApp(DynamoDBFastPath(dispatcher, dispatcher.app_instances["dynamodb"]))
    return SerialisedApp(dispatcher)


class DynamoDBFastPath:
    """WSGI middleware: DynamoDB API calls go straight to the view of moto's DynamoDB app.

    A request is a DynamoDB API call when it is a ``POST`` to ``/`` with an ``X-Amz-Target`` of
    ``DynamoDB_20120810.<Action>``, a JSON body (``application/x-amz-json-*``) that is not compressed,
    and moto's dispatcher routes it to the DynamoDB app (it reads the ``Authorization`` header for
    that). Such a call is handed to the view that app's only route runs (``DynamoHandler.dispatch``,
    as ``moto.core.utils.convert_to_flask_response`` calls it) with the request object Flask would
    build, and its answer becomes the response object Flask would send, with the CORS headers
    flask-cors would add. What is skipped is Flask's request context, URL routing and session
    handling, which do not change the answer. Anything else, and everything when the DynamoDB app
    is not shaped as this class knows (checked once, here), goes to ``dispatcher`` unchanged.
    """

    def __init__(self, dispatcher: WsgiApp, dynamodb_app: Any) -> None:
        self.dispatcher = dispatcher
        self.app = dynamodb_app
        self.view, self.cors = _known_dynamodb_app(dynamodb_app)

    def is_dynamodb_call(self, environ: dict[str, Any]) -> bool:
        """True when ``environ`` is a call this middleware answers itself."""
        return (
            self.view is not None
            and environ.get("REQUEST_METHOD") == "POST"
            and environ.get("PATH_INFO") == "/"
            and environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_20120810.")
            and environ.get("CONTENT_TYPE", "").startswith("application/x-amz-json-")
            and "HTTP_CONTENT_ENCODING" not in environ
            and getattr(self.dispatcher, "get_application")(environ) is self.app  # noqa: B009
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self.is_dynamodb_call(environ):
            return self.dispatcher(environ, start_response)
        from botocore.exceptions import ClientError
        from flask_cors.core import ACL_ORIGIN, get_cors_headers, try_match_pattern
        from moto.moto_api import recorder
        from werkzeug.exceptions import HTTPException
        from werkzeug.local import LocalProxy

        app = self.app
        the_request = app.request_class(environ)
        # The limits Flask's request reads from the app's config inside a request context.
        the_request.max_content_length = app.config["MAX_CONTENT_LENGTH"]
        the_request.max_form_memory_size = app.config["MAX_FORM_MEMORY_SIZE"]
        the_request.max_form_parts = app.config["MAX_FORM_PARTS"]
        # moto is handed ``flask.request``, a werkzeug ``LocalProxy``, and tells from the proxy's type
        # that it serves over HTTP (no ``date`` header of its own, for one): hand it a proxy too.
        request: Any = LocalProxy(lambda: the_request)
        try:
            recorder._record_request(request)
            try:
                result = cast(Callable[..., Any], self.view)(request, request.url, dict(request.headers))
            except ClientError as exc:  # as convert_to_flask_response answers it
                result = 400, {}, exc.response["Error"]["Message"]
        except HTTPException:  # rare: let Flask itself turn it into a response, as it would have
            with app.request_context(environ):
                response = app.finalize_request(app.handle_user_exception(sys.exc_info()[1]))
            return cast(Iterable[bytes], response(environ, start_response))
        if len(result) == 3:
            status, headers, content = result
        else:
            status, headers, content = 200, {}, result
        response = app.response_class(response=content, status=status, headers=headers)
        if not response.headers.get(ACL_ORIGIN):
            for pattern, options in self.cors:
                if try_match_pattern(unquote(request.path), pattern, caseSensitive=True):
                    for name, value in get_cors_headers(options, request.headers, request.method).items():
                        response.headers.add(name, value)
                    break
        return cast(Iterable[bytes], response(environ, start_response))


def _known_dynamodb_app(app: Any) -> tuple[Callable[..., Any] | None, list[tuple[Any, Any]]]:
    """The view behind ``POST /`` and flask-cors's resources, or ``(None, [])`` for an unknown shape.

    Known: moto's ``create_backend_app`` for DynamoDB with flask-cors (or none, with
    ``MOTO_DISABLE_GLOBAL_CORS``): one before-request hook (gzip bodies), at most one
    after-request hook (flask-cors's), no error handlers, a route to a ``convert_to_flask_response``.
    """
    from werkzeug.exceptions import HTTPException

    unknown: tuple[None, list[tuple[Any, Any]]] = (None, [])
    try:
        from moto.moto_server.utilities import decompress_request_body
    except ImportError:  # another moto than the one this shape was read from
        return unknown
    try:
        endpoint, arguments = app.url_map.bind("localhost").match("/", method="POST")
    except HTTPException:
        return unknown
    view = getattr(app.view_functions.get(endpoint), "callback", None)
    after = app.after_request_funcs.get(None, [])
    if (
        view is None
        or arguments
        or dict(app.before_request_funcs) != {None: [decompress_request_body]}
        or set(app.after_request_funcs) - {None}
        or any(app.error_handler_spec.values())
        or app.url_value_preprocessors
        or app.url_default_functions
        or len(after) > 1
    ):
        return unknown
    cors: list[tuple[Any, Any]] = []
    if after:
        hook = after[0]
        cells = dict(zip(hook.__code__.co_freevars, hook.__closure__ or (), strict=True))
        if hook.__name__ != "cors_after_request" or "resources" not in cells:
            return unknown
        cors = list(cells["resources"].cell_contents)
    return view, cors


# ------------------------------------------------------------------------------------ HTTP layer


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Request:
    """One parsed HTTP/1.x request, body included."""

    __slots__ = ("body", "headers", "keep_alive", "method", "target", "version")

    def __init__(
        self, method: str, target: str, version: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
        connection = ",".join(v for k, v in headers if k == "connection").lower()
        if version == "HTTP/1.0":
            self.keep_alive = "keep-alive" in connection
        else:
            self.keep_alive = "close" not in connection


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request | None:
    """Read one whole request; None at a clean end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise _BadRequest(400, "connection closed in the middle of a request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise _BadRequest(400, f"request head over {MAX_HEAD_BYTES} bytes") from None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise _BadRequest(400, f"malformed request line {lines[0][:200]!r}") from None
    if not version.startswith("HTTP/1."):
        raise _BadRequest(400, f"unsupported protocol {version[:20]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise _BadRequest(400, f"malformed header line {line[:200]!r}")
        headers.append((name.strip().lower(), value.strip()))
    if (_header(headers, "expect") or "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in (_header(headers, "transfer-encoding") or "").lower():
        body = await _read_chunked(reader)
        headers = [(k, v) for k, v in headers if k not in ("transfer-encoding", "content-length")]
        headers.append(("content-length", str(len(body))))
    else:
        length_text = _header(headers, "content-length") or "0"
        try:
            length = int(length_text)
        except ValueError:
            raise _BadRequest(400, f"malformed Content-Length {length_text[:40]!r}") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise _BadRequest(413, f"Content-Length {length} is outside 0..{MAX_BODY_BYTES}")
        body = await reader.readexactly(length) if length else b""
    return _Request(method, target, version, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadRequest(400, f"malformed chunk size {size_line[:40]!r}") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY_BYTES:
            raise _BadRequest(413, f"chunked body over {MAX_BODY_BYTES} bytes")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _environ(request: _Request, server: tuple[str, int], peer: Any) -> dict[str, Any]:
    """The WSGI environ of ``request`` (as werkzeug's development server builds it)."""
    path, _, query = request.target.partition("?")
    if "://" in path:  # absolute-form request target
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "RAW_URI": request.target,
        "REQUEST_URI": request.target,
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": request.version,
        "REMOTE_ADDR": peer[0] if isinstance(peer, tuple) else "",
        "REMOTE_PORT": str(peer[1]) if isinstance(peer, tuple) else "",
        "CONTENT_LENGTH": str(len(request.body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers:
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name == "content-length":
            continue
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _call(app: WsgiApp, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run the WSGI app to completion: status line, headers, whole body."""
    answer: dict[str, Any] = {}
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer["status"] = status
        answer["headers"] = headers
        return written.append

    result = app(environ, start_response)
    try:
        body = b"".join([*written, *result])
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return answer["status"], answer["headers"], body


def _response(status: str, headers: list[tuple[str, str]], body: bytes, request: _Request) -> bytes:
    lines = [f"HTTP/1.1 {status}"]
    for name, value in headers:
        if name.lower() not in ("content-length", "connection", "transfer-encoding"):
            lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: keep-alive" if request.keep_alive else "Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if request.method == "HEAD" else head + body


def _error(status: int, message: str) -> bytes:
    body = message.encode("utf-8", "replace")
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1") + body


async def serve(
    app: WsgiApp, host: str, port: int, *, started: Callable[[tuple[str, int]], None] | None = None
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; ``started`` gets the bound address."""
    bound: tuple[str, int] = (host, port)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                try:
                    async with asyncio.timeout(IDLE_TIMEOUT_S):
                        request = await _read_request(reader, writer)
                except _BadRequest as exc:
                    writer.write(_error(exc.status, str(exc)))
                    await writer.drain()
                    return
                if request is None:
                    return
                try:
                    status, headers, body = _call(app, _environ(request, bound, peer))
                except Exception as exc:  # what werkzeug's server would answer too
                    print(f"moto raised {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                    writer.write(_error(500, f"{type(exc).__name__}: {exc}"))
                    await writer.drain()
                    return
                writer.write(_response(status, headers, body, request))
                await writer.drain()
                if not request.keep_alive:
                    return
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return  # the client went away or idled out: only this connection ends
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(
        connection, host, port, backlog=LISTEN_BACKLOG, limit=MAX_HEAD_BYTES, reuse_address=True
    )
    async with server:
        bound = cast(tuple[str, int], server.sockets[0].getsockname()[:2])
        if started is not None:
            started(bound)
        await server.serve_forever()


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # Everything moto holds is in memory and is meant to vanish: skip the slow interpreter teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``--host``/``--port`` and serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_taskqueue._moto_server",
        description="moto's DynamoDB with requests serialised (atomic conditional writes).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, required=True, help="port to bind (0: pick a free one)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    app = build_app()

    def started(address: tuple[str, int]) -> None:
        print(f"moto server (requests serialised) listening on http://{address[0]}:{address[1]}", flush=True)

    asyncio.run(serve(app, args.host, args.port, started=started))


if __name__ == "__main__":
    main()
