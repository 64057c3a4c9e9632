"""A small typed client of the Toxiproxy 2.x HTTP API (stdlib only).

Why not toxiproxy-python: it works for the basic calls against Toxiproxy 2.12, but keeps the
server address in class attributes shared by the whole process, sends every request without a
timeout (a stuck API hangs the caller forever), maps only 400/404/409 to exceptions (with
misleading names, and silently returns other failures) and needs the Python 2 ``future`` shim.
The toolkit talks to more than one Toxiproxy per process and waits only with deadlines, so this
module speaks the HTTP API directly; tests/fault_injection/test_toxiproxy_python_compat.py
records what the library did against the real server.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fault_injection._backoff import Backoff

__all__ = ["Proxy", "Stream", "Toxic", "Toxiproxy", "ToxiproxyError"]

Stream = Literal["upstream", "downstream"]
"""A Toxiproxy toxic direction: ``upstream`` is client -> server, ``downstream`` server -> client."""

_DEFAULT_TIMEOUT_S = 10.0


class ToxiproxyError(RuntimeError):
    """A Toxiproxy API call failed.

    ``status`` is the HTTP status, or ``None`` when the API could not be reached at all (then
    ``body`` holds the connection error).
    """

    def __init__(self, method: str, url: str, status: int | None, body: str) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.body = body
        what = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"Toxiproxy {method} {url} failed: {what}: {body.strip()}")


@dataclass(frozen=True)
class Toxic:
    """One toxic as the server reports it (``attributes`` are the type's own settings)."""

    name: str
    type: str
    stream: Stream
    toxicity: float = 1.0
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Toxic:
        """Build a Toxic from the API's JSON object."""
        stream = data.get("stream", "downstream")
        if stream not in ("upstream", "downstream"):
            raise ValueError(f"unexpected toxic stream {stream!r} in {data!r}")
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            stream=stream,
            toxicity=float(data.get("toxicity", 1.0)),
            attributes=dict(data.get("attributes") or {}),
        )


class Toxiproxy:
    """Client of one Toxiproxy server's HTTP API, e.g. ``Toxiproxy("http://127.0.0.1:8474")``.

    Holds no global state; each call has a timeout (``timeout_s``) and raises ToxiproxyError on
    any failure.
    """

    def __init__(self, api_url: str, *, timeout_s: float = _DEFAULT_TIMEOUT_S) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"Toxiproxy({self.api_url!r})"

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Send one API request and return its decoded JSON (``None`` for an empty answer)."""
        url = self.api_url + path
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw: bytes = resp.read()
        except urllib.error.HTTPError as exc:
            raise ToxiproxyError(method, url, exc.code, exc.read().decode("utf-8", "replace")) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ToxiproxyError(method, url, None, str(reason)) from exc
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def version(self) -> str:
        """The server's version string (``"git"`` for a binary built with ``go install``)."""
        answer = self.request("GET", "/version")
        if isinstance(answer, dict):
            return str(answer.get("version", ""))
        return str(answer).strip()

    def wait_ready(self, timeout_s: float) -> str:
        """Probe ``GET /version`` until it answers or ``timeout_s`` passes; return the version.

        Raises ToxiproxyError carrying the last failure when the deadline passes.
        """
        backoff = Backoff(timeout_s, first=0.01, cap=0.2)
        while True:
            try:
                return self.version()
            except ToxiproxyError:
                if not backoff.sleep():
                    raise

    def create_proxy(self, name: str, listen: str, upstream: str, enabled: bool = True) -> Proxy:
        """Create a proxy listening on ``listen`` (``"127.0.0.1:0"`` picks a port) to ``upstream``.

        Raises ToxiproxyError with status 409 if the name is taken.
        """
        answer = self.request(
            "POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        )
        return Proxy._from_json(self, answer)

    def get_proxy(self, name: str) -> Proxy:
        """The proxy called ``name`` (ToxiproxyError with status 404 if there is none)."""
        return Proxy._from_json(self, self.request("GET", f"/proxies/{_quote(name)}"))

    def proxies(self) -> dict[str, Proxy]:
        """Every proxy of the server, by name."""
        answer = self.request("GET", "/proxies") or {}
        return {name: Proxy._from_json(self, data) for name, data in answer.items()}

    def delete_proxy(self, name: str) -> None:
        """Delete the proxy called ``name``, closing its connections."""
        self.request("DELETE", f"/proxies/{_quote(name)}")

    def reset(self) -> None:
        """Enable every proxy and remove every toxic (``POST /reset``)."""
        self.request("POST", "/reset")


@dataclass
class Proxy:
    """One Toxiproxy proxy; ``enabled`` is the state last seen or set by this object."""

    client: Toxiproxy = field(repr=False)
    name: str
    listen: str
    upstream: str
    enabled: bool

    @classmethod
    def _from_json(cls, client: Toxiproxy, data: Mapping[str, Any]) -> Proxy:
        return cls(
            client=client,
            name=str(data["name"]),
            listen=str(data["listen"]),
            upstream=str(data["upstream"]),
            enabled=bool(data["enabled"]),
        )

    @property
    def host(self) -> str:
        """Host part of the listen address."""
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        """Port the proxy listens on (the real one, also when created with port 0)."""
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def _path(self) -> str:
        return f"/proxies/{_quote(self.name)}"

    def refresh(self) -> Proxy:
        """Reload this proxy's fields from the server; return self."""
        fresh = self.client.get_proxy(self.name)
        self.listen, self.upstream, self.enabled = fresh.listen, fresh.upstream, fresh.enabled
        return self

    def _set_enabled(self, enabled: bool) -> None:
        self.client.request("POST", self._path, {"enabled": enabled})
        self.enabled = enabled

    def enable(self) -> None:
        """Listen and forward again (the listen address is kept)."""
        self._set_enabled(True)

    def disable(self) -> None:
        """Stop listening and close every open connection: a partition of this link."""
        self._set_enabled(False)

    def add_toxic(
        self,
        type: str,
        *,
        name: str | None = None,
        stream: Stream = "downstream",
        toxicity: float = 1.0,
        attributes: Mapping[str, Any] | None = None,
    ) -> Toxic:
        """Add a toxic of ``type`` (e.g. ``"latency"``) on one direction and return it.

        Without ``name`` the server names it ``<type>_<stream>``; a taken name is HTTP 409.
        """
        body: dict[str, Any] = {
            "type": type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": dict(attributes or {}),
        }
        if name is not None:
            body["name"] = name
        return Toxic.from_json(self.client.request("POST", f"{self._path}/toxics", body))

    def update_toxic(self, name: str, attributes: Mapping[str, Any]) -> Toxic:
        """Change some attributes of an existing toxic."""
        answer = self.client.request(
            "POST", f"{self._path}/toxics/{_quote(name)}", {"attributes": dict(attributes)}
        )
        return Toxic.from_json(answer)

    def remove_toxic(self, name: str) -> None:
        """Remove the toxic called ``name`` (ToxiproxyError with status 404 if absent)."""
        self.client.request("DELETE", f"{self._path}/toxics/{_quote(name)}")

    def toxics(self) -> list[Toxic]:
        """The toxics currently on this proxy, both directions."""
        return [Toxic.from_json(item) for item in self.client.request("GET", f"{self._path}/toxics") or []]

    def delete(self) -> None:
        """Delete this proxy from the server."""
        self.client.delete_proxy(self.name)


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")
