"""A request its client ends is no server error: virt-api's ``apiserver_request_total`` counts a
watch the client closed with the 200 it was sent, and a console whose client went away with its
101 (kube-apiserver's instrumentation records the status its response writer wrote). Real
aiohttp server with virt-api's settings (handler cancellation on), real client disconnects."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from prometheus_client import REGISTRY

from shared.natsserver import pick_free_port
from shared.request_metrics import (
    api_request_middleware,
    compute_ended_request_code,
    compute_request_labels,
    remember_prepared_response,
)

WATCH = "/apis/kubevirt.io/v1/namespaces/ns-ended/virtualmachineinstancemigrations"
CONSOLE = "/apis/subresources.kubevirt.io/v1/namespaces/ns-ended/virtualmachineinstances/vm1/console"
SLOW_GET = "/apis/kubevirt.io/v1/namespaces/ns-ended/virtualmachines/vm1"


def _count(verb: str, group: str, resource: str, sub: str, code: str) -> float:
    return REGISTRY.get_sample_value("apiserver_request_total", {
        "verb": verb, "group": group, "resource": resource, "subresource": sub, "code": code}) or 0.0


async def _watch(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=200)
    await resp.prepare(request)
    await resp.write(b'{"type":"ADDED","object":{}}\n')
    await asyncio.sleep(3600)  # a watch with nothing more to send, until the client leaves
    return resp


async def _console(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for _ in ws:
        pass
    await asyncio.sleep(3600)  # virt-api keeps bridging until the cancel arrives
    return ws


async def _slow_get(request: web.Request) -> web.Response:
    await asyncio.sleep(3600)
    return web.Response(text="{}")


async def _served():
    app = web.Application(middlewares=[api_request_middleware(compute_request_labels)])
    app.on_response_prepare.append(remember_prepared_response)
    app.router.add_get(WATCH, _watch)
    app.router.add_get(CONSOLE, _console)
    app.router.add_get(SLOW_GET, _slow_get)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    port = pick_free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def _until(check, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "the request was never counted"
        await asyncio.sleep(0.02)


async def test_client_ended_watch_console_and_get_are_not_counted_as_500():
    labels = {"watch": ("watch", "kubevirt.io", "virtualmachineinstancemigrations", ""),
              "console": ("get", "subresources.kubevirt.io", "virtualmachineinstances", "console"),
              "get": ("get", "kubevirt.io", "virtualmachines", "")}
    before = {(k, code): _count(*v, code) for k, v in labels.items() for code in ("200", "101", "500", "0")}
    runner, base = await _served()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base + WATCH, params={"watch": "1"}) as resp:
                assert resp.status == 200
                await resp.content.readline()
            ws = await session.ws_connect(base + CONSOLE)
            await ws.close()
            try:
                async with session.get(base + SLOW_GET, timeout=aiohttp.ClientTimeout(total=0.3)):
                    pass
            except TimeoutError:
                pass

        def delta(kind: str, code: str) -> float:
            return _count(*labels[kind], code) - before[(kind, code)]

        await _until(lambda: delta("watch", "200") == 1 and delta("console", "101") == 1 and delta("get", "0") == 1)
        assert [delta(kind, "500") for kind in labels] == [0, 0, 0]
    finally:
        await runner.cleanup()


def test_the_code_counted_is_the_status_sent():
    assert compute_ended_request_code(web.StreamResponse(status=200)) == 200
    assert compute_ended_request_code(web.Response(status=101)) == 101
    assert compute_ended_request_code(None) == 0
