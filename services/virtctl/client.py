"""A small async client for virt-api, configured from a kubeconfig (for virtctl's client commands).

Owns: turning a kubeconfig context into HTTP calls (bearer token, the CA from the kubeconfig),
JSON in and out, and mapping a Kubernetes ``Status`` error answer back to the matching
:mod:`shared.errors` exception so commands can print its message in one line. Fail-over: when
the server cannot be connected to (the request was never sent, so nothing is done twice), the
next cluster of the same kubeconfig and user is tried (another virt-api replica, as ``up --hosts``
writes them). Paths are the
Kubernetes ones; helpers build them for KubeVirt's resources and subresources.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from services.virtctl.kubeconfig import ClusterAccess, load_failover_access
from shared import errors

#: Seconds a TCP (and TLS) connect may take before the next replica is tried.
CONNECT_TIMEOUT = 5.0

#: Failures that mean the request never reached the server: safe to send elsewhere.
_NOT_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)

_ERRORS_BY_REASON: dict[str, type[errors.ApiError]] = {
    "BadRequest": errors.BadRequest, "Unauthorized": errors.Unauthorized, "Forbidden": errors.Forbidden,
    "NotFound": errors.NotFound, "MethodNotAllowed": errors.MethodNotAllowed,
    "AlreadyExists": errors.AlreadyExists, "Conflict": errors.Conflict, "Expired": errors.Gone,
    "Gone": errors.Gone, "RequestEntityTooLarge": errors.RequestTooLarge,
    "UnsupportedMediaType": errors.UnsupportedMediaType, "Invalid": errors.Invalid,
    "TooManyRequests": errors.TooManyRequests, "InternalError": errors.InternalError,
    "ServiceUnavailable": errors.ServiceUnavailable,
}


def compute_error(status_code: int, body: bytes) -> errors.ApiError:
    """The exception for an error answer: from its Status body when it has one, else by code."""
    try:
        status = msgspec.json.decode(body)
    except msgspec.DecodeError:
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status":
        cls = _ERRORS_BY_REASON.get(status.get("reason") or "", errors.ApiError)
        details = status.get("details") or {}
        causes = [errors.StatusCause(c.get("field", ""), c.get("message", ""), c.get("reason", ""))
                  for c in details.get("causes") or []]
        err = cls(status.get("message") or f"HTTP {status_code}", causes=causes)
        err.code = status_code
        return err
    return errors.ApiError(f"HTTP {status_code}: {body[:200].decode(errors='replace')}", code=status_code,
                           reason="Unknown")


def resource_path(group: str, version: str, plural: str, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    """``/apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>[/<sub>]]`` (``/api/v1`` for core)."""
    path = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if namespace is not None:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{name}"
        if subresource is not None:
            path += f"/{subresource}"
    return path


class ApiClient:
    """``async with ApiClient.from_kubeconfig(path) as api: await api.get(path)``.

    Methods raise :mod:`shared.errors` exceptions for error answers and ServiceUnavailable when
    no server can be reached. ``fallbacks`` are tried in order when ``access``'s server cannot
    be connected to; :attr:`access` is the one in use.
    """

    def __init__(self, access: ClusterAccess, timeout: float = 30.0,
                 fallbacks: Sequence[ClusterAccess] = ()) -> None:
        self.access = access
        self.namespace = access.namespace
        self._fallbacks = list(fallbacks)
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_TIMEOUT)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path, context: str | None = None, timeout: float = 30.0) -> ApiClient:
        """A client of ``context`` (default: current) with the kubeconfig's other servers of the
        same user as fail-over (:func:`services.virtctl.kubeconfig.load_failover_access`)."""
        first, *others = load_failover_access(path, context)
        return cls(first, timeout, fallbacks=others)

    def _open_session(self) -> None:
        headers = {"Accept": "application/json"}
        if self.access.token:
            headers["Authorization"] = f"Bearer {self.access.token}"
        connector = aiohttp.TCPConnector(ssl=self.access.ssl_context if self.access.ssl_context else False)
        self._session = aiohttp.ClientSession(self.access.server, headers=headers, connector=connector,
                                              timeout=self._timeout)

    async def _fail_over(self) -> bool:
        """Turn to the next fallback server (True), or False when none is left."""
        if not self._fallbacks:
            return False
        if self._session is not None:
            await self._session.close()
        self.access = self._fallbacks.pop(0)
        self._open_session()
        return True

    async def __aenter__(self) -> ApiClient:
        self._open_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, body: Any = None, *,
                      content_type: str = "application/json", params: dict[str, str] | None = None) -> Any:
        """Send one request; returns the decoded JSON answer (None for an empty body)."""
        assert self._session is not None, "use 'async with ApiClient(...)'"
        data = None if body is None else (body if isinstance(body, bytes) else msgspec.json.encode(body))
        headers = {"Content-Type": content_type} if data is not None else {}
        while True:
            try:
                async with self._session.request(method, path, data=data, headers=headers, params=params) as resp:
                    raw = await resp.read()
                    if resp.status >= 400:
                        raise compute_error(resp.status, raw)
                break
            except _NOT_CONNECTED as err:
                if not await self._fail_over():
                    raise errors.ServiceUnavailable(f"cannot reach {self.access.server}: {err}") from err
            except aiohttp.ClientError as err:
                raise errors.ServiceUnavailable(f"cannot reach {self.access.server}: {err}") from err
        return msgspec.json.decode(raw) if raw.strip() else None

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return await self.request("GET", path, params=params)

    async def put(self, path: str, body: Any = None) -> Any:
        return await self.request("PUT", path, body)

    async def post(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body)

    async def patch(self, path: str, body: Any, patch_type: str = "application/merge-patch+json") -> Any:
        return await self.request("PATCH", path, body, content_type=patch_type)

    async def delete(self, path: str, body: Any = None) -> Any:
        return await self.request("DELETE", path, body)

    async def watch(self, path: str, params: dict[str, str] | None = None,
                    timeout: float | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """Watch a list ``path`` (``?watch=1`` plus ``params``: ``fieldSelector``,
        ``resourceVersion``, ...): yields each event ``{"type", "object"}`` as the server streams
        it, until the server ends the stream (``timeoutSeconds``) or ``timeout`` seconds of
        silence pass (then TimeoutError). An ``ERROR`` event is raised as its Status's error."""
        assert self._session is not None, "use 'async with ApiClient(...)'"
        query = {**(params or {}), "watch": "1"}
        stream_timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout, sock_connect=CONNECT_TIMEOUT)
        while True:
            try:
                async with self._session.get(path, params=query, timeout=stream_timeout) as resp:
                    if resp.status >= 400:
                        raise compute_error(resp.status, await resp.read())
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        event = msgspec.json.decode(line)
                        if event.get("type") == "ERROR":
                            status = event.get("object") or {}
                            raise compute_error(int(status.get("code") or 500), msgspec.json.encode(status))
                        yield event
                return
            except _NOT_CONNECTED as err:
                if not await self._fail_over():
                    raise errors.ServiceUnavailable(f"cannot reach {self.access.server}: {err}") from err
            except aiohttp.ClientError as err:
                raise errors.ServiceUnavailable(f"cannot reach {self.access.server}: {err}") from err
