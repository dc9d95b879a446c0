"""``virtctl trace`` and ``virtctl events`` as a user with only a kubeconfig runs them: virt-api
(with the subresource modules its main loads, the bearer token on) served from this process on
the test's store, a kubeconfig naming it, and the CLI reading nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp.test_utils import TestServer
from click.testing import CliRunner, Result

import services.virtctl.events_command  # noqa: F401 - registers `virtctl events`
import services.virtctl.trace_command  # noqa: F401 - registers `virtctl trace`
from services.virt_api.app import create_app
from services.virt_api.subresources import SubresourceRegistry, apply_subresource_modules
from services.virtctl.kubeconfig import apply_kubeconfig, compute_kubeconfig
from services.virtctl.main import cli
from shared import trace_store, tracing


@contextlib.asynccontextmanager
async def served_virt_api(store, namespace: str = "default") -> AsyncIterator[tuple[TestServer, str, Path]]:
    """(server, token, kubeconfig path): virt-api on ``store`` at http://127.0.0.1:<port>, the
    kubeconfig's context namespace ``namespace``."""
    registry = SubresourceRegistry()
    assert "services.virt_api.trace_subresource" in apply_subresource_modules(registry)
    token = secrets.token_urlsafe(16)
    server = TestServer(create_app(store, token=token, subresources=registry), host="127.0.0.1")
    await server.start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="kubeconfig-") as tmp:
            kubeconfig = Path(tmp) / "config"
            apply_kubeconfig(kubeconfig, compute_kubeconfig(str(server.make_url("")).rstrip("/"), None, token,
                                                            namespace=namespace))
            yield server, token, kubeconfig
    finally:
        await server.close()


async def flush_spans() -> None:
    """Every finished span exported and published to the JetStream trace store."""
    await asyncio.to_thread(tracing.force_flush)
    for processor in tracing._state.fanout.processors:  # the JetStream exporters: wait for the publishes
        exporter = getattr(processor, "span_exporter", None)
        if isinstance(exporter, trace_store.JetStreamSpanExporter):
            await exporter.drain()


async def virtctl_trace(store, target: str, *extra: str) -> Result:
    """Flush the spans, then run ``virtctl --kubeconfig <k> trace TARGET *extra`` against a
    virt-api on ``store`` (in a thread: virtctl runs its own event loop). Returns the click result."""
    await flush_spans()
    async with served_virt_api(store) as (_, _, kubeconfig):
        args = ["--kubeconfig", str(kubeconfig), "trace", target, *extra]
        return await asyncio.to_thread(CliRunner().invoke, cli, args)
