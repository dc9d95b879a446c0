"""KvLayer._attempt: one try of a NATS call in the caller's task, abandoned with TimeoutError
when the connection is re-established meanwhile; the caller's own cancellation stays a cancel."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.store.kv import KvLayer


class _FakeBus:
    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def jetstream(self, timeout: float = 5.0) -> object:
        return object()

    def add_reconnect_listener(self, listener: Any) -> None:
        self.listeners.append(listener)


def _layer() -> tuple[KvLayer, _FakeBus]:
    bus = _FakeBus()
    return KvLayer(bus), bus  # type: ignore[arg-type]


async def test_attempt_returns_the_result_and_leaves_the_task_uncancelled():
    kv, _ = _layer()

    async def call() -> int:
        await asyncio.sleep(0)
        return 7

    assert await kv._attempt(call) == 7
    assert asyncio.current_task().cancelling() == 0


async def test_a_reconnect_abandons_the_call_with_timeout_error():
    kv, bus = _layer()
    started = asyncio.Event()

    async def call() -> int:
        started.set()
        await asyncio.sleep(60)
        return 1

    async def run() -> str:
        try:
            await kv._attempt(call)
        except TimeoutError:
            return f"timeout, cancelling={asyncio.current_task().cancelling()}"
        return "finished"

    task = asyncio.create_task(run())
    await started.wait()
    for listener in bus.listeners:
        listener()
    assert await task == "timeout, cancelling=0"


async def test_a_reconnect_after_the_call_finished_does_not_cancel_the_caller_later():
    kv, bus = _layer()

    async def call() -> int:
        return 3

    async def run() -> int:
        value = await kv._attempt(call)
        for listener in bus.listeners:
            listener()
        await asyncio.sleep(0.01)  # a late cancel would land here
        return value

    assert await asyncio.create_task(run()) == 3


async def test_the_callers_cancel_stays_a_cancel():
    kv, bus = _layer()
    started = asyncio.Event()

    async def call() -> int:
        started.set()
        await asyncio.sleep(60)
        return 1

    task = asyncio.create_task(kv._attempt(call))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
