"""NatsServer process handling, the bus wrapper's fail-fast connect, and bucket settings."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from store_objects import make_vm

from shared.bus import connect
from shared.errors import ServiceUnavailable
from shared.natsserver import NatsServer, pick_free_port
from shared.store import ObjectStore


def varz(server: NatsServer) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/varz", timeout=2) as resp:
        return json.load(resp)


def test_server_fsyncs_every_write(nats_server: NatsServer):
    assert varz(nats_server)["jetstream"]["config"]["sync_always"] is True


async def test_restart_keeps_url_and_data_and_stops_only_its_own_process(tmp_path: Path, nats_server: NatsServer):
    server = NatsServer(tmp_path / "own")
    server.start()
    url, pid = server.url, server.pid
    store = await ObjectStore.connect([url], bucket_prefix="own_")
    try:
        created = await store.create("virtualmachines", make_vm("kept"))
        server.restart()
        assert server.url == url and server.pid != pid
        assert await store.get("virtualmachines", "default", "kept") == created
    finally:
        await store.close()
        server.stop()
    assert not server.is_running()
    assert nats_server.is_running()  # the session server was not touched


def test_start_failure_reports_the_server_log(tmp_path: Path, nats_server: NatsServer):
    clash = NatsServer(tmp_path / "clash", port=nats_server.port)
    with pytest.raises(RuntimeError) as err:
        clash.start(wait=5)
    assert "exited" in str(err.value) or "not healthy" in str(err.value)
    assert not clash.is_running()


async def test_connect_to_nothing_fails_fast_with_one_line():
    port = pick_free_port()
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as err:
        await connect([f"nats://127.0.0.1:{port}"], name="nobody")
    assert time.monotonic() - started < 5
    assert str(err.value).startswith(f"cannot connect to NATS at nats://127.0.0.1:{port}")
    assert "\n" not in str(err.value)
    assert err.value.code == 503


async def test_buckets_keep_history_and_read_from_the_leader(object_store: ObjectStore):
    await object_store.create("virtualmachines", make_vm("x"))
    info = await object_store.bus.jetstream().stream_info(f"KV_{object_store.prefix}virtualmachines")
    assert info.config.max_msgs_per_subject == 10
    assert not info.config.allow_direct
    assert info.config.num_replicas == 1
    assert str(getattr(info.config.storage, "value", info.config.storage)) == "file"
