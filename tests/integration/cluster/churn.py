"""VM churn through virt-api replicas, as a careful client does it (not a test module).

:class:`FailoverClient` sends each request to one replica and, on a connection error (refused,
or the connection dropped) tries the next, and on ``429``/``5xx`` waits the ``Retry-After`` it
was given and tries again; everything it had to retry is counted by kind in ``retried``, and a
``429``/``5xx`` without ``Retry-After`` is noted in ``problems`` (not retriable by contract).
:func:`churn` is one client writing its own VMs (create, update of ``spec.runStrategy`` and a
value annotation, delete; a deleted VM's name is never reused) and logging every operation for
:mod:`history_check`: ``ok`` when acknowledged, ``fail`` when refused, ``info`` when it gave up
without knowing.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from history_check import Operation

VALUE_ANNOTATION = "history.kubevirt-py.io/value"
VMS_PATH = "/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachines"
RETRIABLE_STATUSES = (429, 500, 502, 503, 504)


class GaveUp(Exception):
    """No replica answered within the client's attempts (the outcome is unknown)."""


@dataclass
class Reply:
    """An answer: HTTP ``status``, JSON ``body``; ``resent``: an earlier attempt may have reached
    the server (its connection dropped, or it answered 5xx)."""

    status: int
    body: Any
    resent: bool


@dataclass
class FailoverClient:
    """A client of several virt-api replicas (``urls``) with bearer ``token`` (see module
    docstring); ``ssl``: how to check the replicas' certificate for https URLs (None: default)."""

    urls: list[str]
    token: str
    ssl: ssl.SSLContext | None = None
    attempts: int = 80
    retried: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    preferred: int = 0
    session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "FailoverClient":
        # a replica cut off from the network answers nothing: give up its connect after 3 s
        self.session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"},
                                             connector=aiohttp.TCPConnector(ssl=self.ssl if self.ssl else True),
                                             timeout=aiohttp.ClientTimeout(total=15, sock_connect=3))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def call(self, method: str, path: str, body: Any = None,
                   content_type: str = "application/json") -> Reply:
        """One request, failing over and retrying as the module docstring says. Raises GaveUp."""
        assert self.session is not None
        resent = False
        for _ in range(self.attempts):
            index = self.preferred % len(self.urls)
            url = self.urls[index]
            try:
                async with self.session.request(method, url + path, json=body,
                                                headers={"Content-Type": content_type}) as resp:
                    status, retry_after = resp.status, resp.headers.get("Retry-After")
                    data = await resp.json(content_type=None)
            except aiohttp.ClientConnectorError:
                self.retried["connection refused"] += 1
                self.preferred = index + 1  # not += 1: concurrent failures at one replica all move on
                await asyncio.sleep(0.05)
                continue
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError,
                    asyncio.TimeoutError):
                self.retried["connection dropped"] += 1
                resent = True
                self.preferred = index + 1
                await asyncio.sleep(0.05)
                continue
            if status in RETRIABLE_STATUSES:
                self.retried[f"{status} Retry-After"] += 1
                if retry_after is None:
                    self.problems.append(f"{method} {path}: {status} without Retry-After: {data}")
                resent = True
                await asyncio.sleep(min(float(retry_after or 1), 1.0))
                continue
            return Reply(status, data, resent)
        raise GaveUp(f"{method} {path}")


def vm_body(name: str, namespace: str, strategy: str, value: str) -> dict[str, Any]:
    """A small VM (no disks, 64Mi) with ``spec.runStrategy`` and the value annotation."""
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": namespace, "annotations": {VALUE_ANNOTATION: value}},
            "spec": {"runStrategy": strategy, "template": {"metadata": {"labels": {"vm": name}}, "spec": {
                "domain": {"devices": {}, "resources": {"requests": {"memory": "64Mi"}}},
                "terminationGracePeriodSeconds": 0}}}}


def value_of(vm: dict[str, Any]) -> str:
    """A VM's value for the checker: ``<runStrategy>|<value annotation>``."""
    annotations = (vm.get("metadata") or {}).get("annotations") or {}
    return f"{(vm.get('spec') or {}).get('runStrategy')}|{annotations.get(VALUE_ANNOTATION)}"


@dataclass
class ChurnLog:
    """What the clients did: ``operations`` for the checker, ``unexpected`` answers."""

    operations: list[Operation] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


async def churn(client_id: str, api: FailoverClient, log: ChurnLog, stop: asyncio.Event, *, namespace: str,
                slots: int = 3, pause: float = 0.15, seed: int = 0) -> None:
    """Write this client's VMs until ``stop`` is set (see module docstring)."""
    rng = random.Random(f"{client_id}-{seed}")
    generation = [0] * slots
    exists: list[bool | None] = [False] * slots
    seq = 0
    path = VMS_PATH.format(ns=namespace)
    while not stop.is_set():
        slot = rng.randrange(slots)
        name = f"{client_id}-s{slot}-g{generation[slot]}"
        seq += 1
        strategy = rng.choice(("Always", "Always", "Halted"))
        value = f"{strategy}|{client_id}-{seq}"
        token = value.split("|", 1)[1]
        if exists[slot] is None:  # an indeterminate create or delete: ask
            try:
                reply = await api.call("GET", f"{path}/{name}")
            except GaveUp:
                continue
            exists[slot] = reply.status == 200 and not (reply.body.get("metadata") or {}).get("deletionTimestamp")
            if reply.status == 200 and not exists[slot]:
                generation[slot] += 1  # being deleted: the name is done
                exists[slot] = False
                continue
        kind = "create" if not exists[slot] else ("update" if rng.random() < 0.75 else "delete")
        try:
            if kind == "create":
                reply = await api.call("POST", path, vm_body(name, namespace, strategy, token))
                outcome = _created(reply, token, log, name)
                log.operations.append(Operation(name, "create", value, outcome))
                exists[slot] = outcome == "ok"
            elif kind == "update":
                patch = {"metadata": {"annotations": {VALUE_ANNOTATION: token}}, "spec": {"runStrategy": strategy}}
                reply = await api.call("PATCH", f"{path}/{name}", patch, "application/merge-patch+json")
                outcome = "ok" if reply.status == 200 else _unexpected(log, "update", name, reply)
                log.operations.append(Operation(name, "update", value, outcome))
            else:
                reply = await api.call("DELETE", f"{path}/{name}")
                ok = reply.status in (200, 202) or (reply.status == 404 and reply.resent)
                outcome = "ok" if ok else _unexpected(log, "delete", name, reply)
                log.operations.append(Operation(name, "delete", None, outcome))
                if outcome == "ok":
                    generation[slot] += 1
                    exists[slot] = False
        except GaveUp:
            log.operations.append(Operation(name, kind, value if kind != "delete" else None, "info"))
            exists[slot] = None
        await asyncio.sleep(pause)


def _created(reply: Reply, token: str, log: ChurnLog, name: str) -> str:
    if reply.status in (200, 201):
        return "ok"
    if reply.status == 409 and reply.resent:  # our own earlier attempt may have made it: tell by the value
        log.unexpected.append(f"create {name}: 409 after a resend")
        return "info"
    return _unexpected(log, "create", name, reply)


def _unexpected(log: ChurnLog, kind: str, name: str, reply: Reply) -> str:
    log.unexpected.append(f"{kind} {name}: {reply.status} {str(reply.body)[:200]}")
    return "fail"
