"""virt-api's ``console`` subresource: a VMI's serial console as a WebSocket.

KubeVirt serves it at ``GET /apis/subresources.kubevirt.io/v1/namespaces/<ns>/
virtualmachineinstances/<name>/console`` (WebSocket upgrade, subprotocol ``plain.kubevirt.io``,
binary frames carrying raw console bytes both ways). Owns: KubeVirt's checks before the
upgrade (404 for a missing VMI; 400 "No serial consoles are present." when
``autoattachSerialConsole`` is false; 409 "VMI is not running" unless Running) and bridging the
WebSocket to a console session of the VMI's virt-handler over NATS (protocol:
:mod:`shared.console`). The WebSocket closes with 1000 and the reason when the session ends on
the handler's side (guest stopped, replaced by a newer reader); a virt-api that stops closes
it with 1001 and the client reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from aiohttp import WSMsgType, web

from services.virt_api.subresource_rules import VMI_NOT_RUNNING, conflict, handler_refusal, request_handler
from shared import console as proto
from shared.api.vocabulary import Phase
from shared.errors import ApiError, BadRequest, ServiceUnavailable

log = logging.getLogger("kubevirt.virt_api.console")

VMIS = "virtualmachineinstances"
SUBPROTOCOL = "plain.kubevirt.io"
OPEN_TIMEOUT = 10.0


def compute_console_refusal(vmi: dict[str, Any]) -> ApiError | None:
    """The error KubeVirt answers for a console request on ``vmi``, or None when it may connect."""
    name = vmi["metadata"]["name"]
    devices = ((vmi.get("spec") or {}).get("domain") or {}).get("devices") or {}
    if devices.get("autoattachSerialConsole") is False:
        return BadRequest("No serial consoles are present.")
    if (vmi.get("status") or {}).get("phase") != Phase.RUNNING or not (vmi.get("status") or {}).get("nodeName"):
        return conflict("virtualmachineinstance", name, VMI_NOT_RUNNING)
    return None


async def serve_console(call: Any) -> web.StreamResponse:
    """The subresource handler (see module docstring). Raises ApiError before the upgrade."""
    vmi = await call.store.get(VMIS, call.namespace, call.name)
    refusal = compute_console_refusal(vmi)
    if refusal is not None:
        raise refusal
    bus = getattr(call.store, "bus", None)
    if bus is None:
        raise ServiceUnavailable("no message bus to reach virt-handler")
    node = vmi["status"]["nodeName"]
    session = secrets.token_hex(12)
    from_guest: asyncio.Queue[bytes | None] = asyncio.Queue()
    closed_reason: list[str] = []
    last_heard = [time.monotonic()]

    async def on_out(msg) -> None:
        last_heard[0] = time.monotonic()
        if msg.data:
            from_guest.put_nowait(msg.data)

    async def on_close(msg) -> None:
        closed_reason.append(msg.data.decode(errors="replace"))
        from_guest.put_nowait(None)

    subscriptions = [await bus.subscribe(proto.session_subject(session, "out"), cb=on_out),
                     await bus.subscribe(proto.session_subject(session, "close"), cb=on_close)]
    try:
        request = proto.ConsoleOpen(namespace=call.namespace, name=call.name, uid=vmi["metadata"].get("uid", ""),
                                    session=session)
        result = await request_handler(bus, node, proto.console_open_subject(node), request, OPEN_TIMEOUT)
        if not result.ok:
            raise handler_refusal(result, call.name)
        # heartbeat: a client that vanished without a close frame is noticed within seconds
        ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), max_msg_size=1 << 20, heartbeat=proto.KEEPALIVE_SECONDS)
        await ws.prepare(call.request)
        await _bridge(ws, bus, session, from_guest, closed_reason, last_heard)
        return ws
    finally:
        for sub in subscriptions:
            try:
                await sub.unsubscribe()
            except Exception:
                pass


async def _bridge(ws: web.WebSocketResponse, bus: Any, session: str, from_guest: asyncio.Queue,
                  closed_reason: list[str], last_heard: list[float]) -> None:
    """Pump until one side ends; tell the handler when the client or virt-api ends it."""

    async def to_client() -> None:
        while True:
            data = await from_guest.get()
            if data is None:
                return
            await ws.send_bytes(data)

    async def to_guest() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await bus.publish(proto.session_subject(session, "in"), msg.data)
            elif msg.type == WSMsgType.TEXT:
                await bus.publish(proto.session_subject(session, "in"), msg.data.encode())
            elif msg.type == WSMsgType.ERROR:
                return

    async def keepalive() -> None:
        while True:
            await asyncio.sleep(proto.KEEPALIVE_SECONDS)
            if time.monotonic() - last_heard[0] > proto.IDLE_TIMEOUT_SECONDS:
                closed_reason.append("virt-handler went silent")
                return
            await bus.publish(proto.session_subject(session, "in"), b"")

    tasks = {asyncio.ensure_future(to_client()), asyncio.ensure_future(to_guest()),
             asyncio.ensure_future(keepalive())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not closed_reason:  # the client left (or virt-api stops): end the handler's session
            try:
                await bus.publish(proto.session_subject(session, "close"), b"client disconnected")
            except Exception as err:
                log.debug("closing console session %s: %s", session, err)
        if not ws.closed:
            if closed_reason:
                await ws.close(code=1000, message=closed_reason[0].encode()[:120])
            else:
                await ws.close(code=1001, message=b"virt-api closing the console")


def register(registry: Any) -> None:
    """Serve ``virtualmachineinstances/<name>/console`` (GET, WebSocket) on virt-api."""
    registry.add(VMIS, "console", "GET", serve_console)
