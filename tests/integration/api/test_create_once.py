"""One create is one create: a create whose first attempt was stored by nats-server, which was
then killed (``kill -9``) before the ack reached virt-api, is answered 201 with the object that
attempt stored — even after another process (as virt-controller does) updated it before the
retry, so the key's latest record is no longer the create's own message. A name taken by another
object still gets Kubernetes' 409 AlreadyExists.

Real nats-server (killed and restarted), virt-api served from this process over HTTP, the other
writer a separate process. The fault: a hook in nats-py's message dispatch of virt-api's
connection drops the first publish ack (the server stored the message: the ack carries its
sequence), kills and restarts the server, and lets the other process update the object, all
before virt-api's connection notices the restart and retries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from services.virt_api.app import create_app
from shared.natsserver import NatsServer
from shared.store import ObjectStore
from tests.integration.api.vm_factory import VMS, make_vm

pytestmark = pytest.mark.timeout(90)
PREFIX = "once_"
NS = "default"
VMS_PATH = f"/apis/kubevirt.io/v1/namespaces/{NS}/{VMS}"
PROJECT_ROOT = Path(__file__).resolve().parents[3]

#: The other writer: labels the VM through its own store connection (a separate process, so it
#: runs while this test's event loop is held inside the nats-py hook).
TOUCH = """
import asyncio, sys
from shared.store import ObjectStore

async def main(url, name):
    store = await ObjectStore.connect([url], bucket_prefix=sys.argv[3])
    try:
        vm = await store.get("virtualmachines", "default", name)
        vm["metadata"].setdefault("labels", {})["touched-by"] = "other-writer"
        print((await store.update("virtualmachines", vm))["metadata"]["resourceVersion"])
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def touch_in_other_process(server: NatsServer, name: str) -> str:
    """Update VM ``name`` from a separate process; returns the resourceVersion it wrote."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", TOUCH, server.url, name, PREFIX], capture_output=True, text=True,
                          env=env, timeout=30, check=True)
    return done.stdout.strip()


class LoseFirstAck:
    """Wraps ``nats.aio.client.Client._process_msg`` of virt-api's connection: the first JetStream
    ack to a store write is dropped, then the server is killed and restarted and the other
    writer updates the object — synchronously, so virt-api sees nothing of it until the hook
    returns. ``ack`` is the dropped ack (JSON)."""

    def __init__(self, store: ObjectStore, server: NatsServer, name: str) -> None:
        self.store, self.server, self.name = store, server, name
        self.client = store.bus.client
        self.real = self.client._process_msg
        self.ack: dict | None = None
        self.touched_rv = ""

    async def __call__(self, sid, subject, reply, data, headers):
        inbox = self.store.kv._acks._prefix.encode()
        if self.ack is None and inbox and subject.startswith(inbox):
            self.ack = json.loads(data)
            self.server.stop(kill=True)
            self.server.start()
            self.touched_rv = touch_in_other_process(self.server, self.name)
            return None
        return await self.real(sid, subject, reply, data, headers)

    def __enter__(self) -> "LoseFirstAck":
        self.client._process_msg = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.client._process_msg = self.real


@pytest.fixture
async def served(fresh_nats_server):
    """(virt-api session without authentication, its store) on the test's own nats-server."""
    store = await ObjectStore.connect([fresh_nats_server.url], bucket_prefix=PREFIX)
    await store.list(VMS)  # the bucket exists before the fault
    server = TestServer(create_app(store, token=None))
    await server.start_server()
    async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
        yield http, store
    await server.close()
    await store.close()


async def vms_in_store(server: NatsServer) -> list[dict]:
    store = await ObjectStore.connect([server.url], bucket_prefix=PREFIX)
    try:
        items, _ = await store.list(VMS, NS)
        return items
    finally:
        await store.close()


async def test_a_create_whose_stored_attempt_lost_its_ack_answers_201_with_that_object(fresh_nats_server, served):
    http, store = served
    with LoseFirstAck(store, fresh_nats_server, "once") as fault:
        async with http.post(VMS_PATH, json=make_vm("once")) as resp:
            body = await resp.json()
            assert resp.status == 201, body
    assert fault.ack is not None and fault.ack["seq"] >= 1 and "error" not in fault.ack  # stored, ack lost
    uid = body["metadata"]["uid"]
    stored = await vms_in_store(fresh_nats_server)
    assert [(o["metadata"]["name"], o["metadata"]["uid"]) for o in stored] == [("once", uid)]
    # the answer is the object as stored now: the first attempt plus the other process's update
    assert body["metadata"]["resourceVersion"] == fault.touched_rv == stored[0]["metadata"]["resourceVersion"]
    assert body["metadata"]["labels"]["touched-by"] == "other-writer"
    assert body["spec"] == stored[0]["spec"]


async def test_a_name_taken_by_another_create_is_409_already_exists(fresh_nats_server, served):
    http, store = served
    other = await ObjectStore.connect([fresh_nats_server.url], bucket_prefix=PREFIX)
    try:
        theirs = await other.create(VMS, {**make_vm("taken"), "metadata": {"name": "taken", "namespace": NS}})
    finally:
        await other.close()
    async with http.post(VMS_PATH, json=make_vm("taken")) as resp:
        status = await resp.json()
        assert resp.status == 409, status
    assert status == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": 'virtualmachines.kubevirt.io "taken" already exists', "reason": "AlreadyExists",
                      "details": {"name": "taken", "group": "kubevirt.io", "kind": "virtualmachines"}, "code": 409}
    assert [o["metadata"]["uid"] for o in await vms_in_store(fresh_nats_server)] == [theirs["metadata"]["uid"]]
