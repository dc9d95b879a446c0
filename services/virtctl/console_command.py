"""``virtctl console <vmi>``: the serial console of a VMI through virt-api's WebSocket.

Connects to ``/apis/subresources.kubevirt.io/v1/namespaces/<ns>/virtualmachineinstances/<name>/console``
with the kubeconfig's server, CA and bearer token (subprotocol ``plain.kubevirt.io``, raw bytes
both ways), puts the terminal in raw mode while attached, and leaves on Ctrl-] (as KubeVirt's
virtctl and ``virsh console`` do). When the connection drops for another reason (virt-api
restarted, the VMI is restarting) it reconnects until ``--timeout`` seconds pass, so a console
survives a virt-api restart. A close with code 1000 (the guest stopped, another reader took
over) ends the command with that reason.
"""

from __future__ import annotations

import asyncio
import os
import sys
import termios
import time
import tty
from typing import Any

import aiohttp
import click

from services.virtctl.client import compute_error, resource_path
from services.virtctl.kubeconfig import ClusterAccess, load_cluster_access
from services.virtctl.main import cli, client_options, resolve_kubeconfig, selected_namespace
from shared import errors

ESCAPE = b"\x1d"  # Ctrl-]
SUBPROTOCOL = "plain.kubevirt.io"
#: answers that may change while the VMI starts or virt-api restarts: keep trying
RETRYABLE = {409, 500, 502, 503, 504}


class ConsoleClosed(Exception):
    """The server ended the console for good (close code 1000); the message is its reason."""


class Left(Exception):
    """The user pressed Ctrl-]."""


def compute_console_url(access: ClusterAccess, namespace: str, name: str) -> str:
    """The WebSocket URL of ``namespace/name``'s console on ``access.server``."""
    path = resource_path("subresources.kubevirt.io", "v1", "virtualmachineinstances", namespace, name, "console")
    return access.server.rstrip("/") + path


def split_escape(data: bytes) -> tuple[bytes, bool]:
    """``(bytes to send, True when Ctrl-] was pressed)``: everything before the escape byte."""
    index = data.find(ESCAPE)
    return (data, False) if index < 0 else (data[:index], True)


class _Stdin:
    """Raw-mode stdin delivering chunks through an asyncio queue (restores the terminal on exit)."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._saved: list[Any] | None = None

    def __enter__(self) -> _Stdin:
        if os.isatty(self.fd):
            self._saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd, termios.TCSANOW)  # TCSAFLUSH would drop what was typed ahead
        try:
            asyncio.get_running_loop().add_reader(self.fd, self._readable)
        except PermissionError:
            # epoll refuses regular files and /dev/null (stdin redirected from a file): they
            # never block, so their whole content is queued at once
            while data := os.read(self.fd, 65536):
                self.queue.put_nowait(data)
        return self

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            data = b""
        if not data:  # end of input (a pipe): stop reading, keep showing output
            asyncio.get_running_loop().remove_reader(self.fd)
            return
        self.queue.put_nowait(data)

    def __exit__(self, *exc: object) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)


def _note(message: str) -> None:
    sys.stderr.write(f"\r\n{message}\r\n")
    sys.stderr.flush()


async def _attach_once(session: aiohttp.ClientSession, url: str, access: ClusterAccess, stdin: _Stdin,
                       on_connected: Any) -> None:
    """One WebSocket connection; calls ``on_connected()`` once it is up and returns when it drops
    (to reconnect). Raises ``Left``, ``ConsoleClosed`` or an ``ApiError`` for an error answer."""
    headers = {"Authorization": f"Bearer {access.token}"} if access.token else {}
    ssl = access.ssl_context if access.ssl_context else False
    try:
        ws = await session.ws_connect(url, protocols=(SUBPROTOCOL,), headers=headers, ssl=ssl, heartbeat=10.0)
    except aiohttp.WSServerHandshakeError:
        # the refusal's Status body comes with a plain GET (the checks run before any session opens)
        async with session.get(url, headers=headers, ssl=ssl) as resp:
            raise compute_error(resp.status, await resp.read()) from None
    on_connected()
    out = sys.stdout.buffer
    closing: list[tuple[int | None, str]] = []

    async def to_terminal() -> None:
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                out.write(msg.data)
                out.flush()
            elif msg.type == aiohttp.WSMsgType.TEXT:
                out.write(msg.data.encode())
                out.flush()
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                closing.append((msg.data, msg.extra or ""))
                return
            elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return

    async def to_guest() -> None:
        while True:
            data, leave = split_escape(await stdin.queue.get())
            if data:
                await ws.send_bytes(data)
            if leave:
                raise Left()

    tasks = [asyncio.ensure_future(to_terminal()), asyncio.ensure_future(to_guest())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # Left propagates
    finally:
        await ws.close()  # first: tells virt-api (and the handler) the reader left
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if closing and closing[0][0] == 1000:
        raise ConsoleClosed(closing[0][1] or "the console was closed by the server")


async def run_console(access: ClusterAccess, namespace: str, name: str, timeout: float) -> str:
    """Attach to the console until Ctrl-] (returns "left") or a final close (returns its reason).
    Raises ApiError when the VMI cannot be reached within ``timeout`` seconds (at once for
    answers that cannot change by waiting: 400, 401, 403, 404)."""
    url = compute_console_url(access, namespace, name)
    deadline = time.monotonic() + timeout
    state = {"attached_before": False, "lost": False}

    def on_connected() -> None:
        if not state["attached_before"]:
            _note(f"Successfully connected to {name} console. The escape sequence is ^]")
        elif state["lost"]:
            _note("virtctl: console reconnected")
        state.update(attached_before=True, lost=False)

    async with aiohttp.ClientSession() as session:
        with _Stdin() as stdin:
            while True:
                try:
                    await _attach_once(session, url, access, stdin, on_connected)
                    state["lost"] = True
                    _note("virtctl: console connection lost; reconnecting")
                    deadline = time.monotonic() + timeout
                except Left:
                    return "left"
                except ConsoleClosed as closed:
                    return str(closed)
                except errors.ApiError as err:
                    if err.code not in RETRYABLE or time.monotonic() > deadline:
                        raise
                except (TimeoutError, aiohttp.ClientError, OSError) as err:
                    if time.monotonic() > deadline:
                        raise errors.ServiceUnavailable(f"console of {name} not reachable: {err}") from None
                await asyncio.sleep(1.0)


@cli.command()
@client_options
@click.argument("name")
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds to keep trying to (re)connect while the VMI or virt-api is not reachable.")
@click.pass_context
def console(ctx: click.Context, name: str, timeout: float) -> None:
    """Connect to the serial console of a VirtualMachineInstance (Ctrl-] leaves)."""
    access = load_cluster_access(resolve_kubeconfig(ctx))
    namespace = selected_namespace(ctx) or access.namespace
    outcome = asyncio.run(run_console(access, namespace, name, timeout))
    if outcome != "left":
        _note(f"virtctl: console closed: {outcome}")
