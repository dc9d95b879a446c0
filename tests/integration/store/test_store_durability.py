"""kill -9 of nats-server and of a writing client in the middle of a stream of writes: every
acknowledged write is there afterwards with the same resourceVersion, and no object is half
written (JetStream ``sync_interval: always``, one message per object version)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from shared.natsserver import NatsServer
from shared.store import ObjectStore

WRITER = Path(__file__).with_name("store_writer.py")


def read_acks(proc: subprocess.Popen[str], acks: dict[str, tuple[int, int]], errors: dict[str, str],
              wanted: int, timeout: float = 30) -> None:
    """Read the writer's lines until ``wanted`` more acknowledgements arrived."""
    target = len(acks) + wanted
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while len(acks) < target:
        assert time.monotonic() < deadline, "writer too slow"
        line = proc.stdout.readline()
        assert line, f"writer exited ({proc.poll()}): {proc.log_path.read_text()[-2000:]}"  # type: ignore[attr-defined]
        record_line(line, acks, errors)


def record_line(line: str, acks: dict[str, tuple[int, int]], errors: dict[str, str]) -> None:
    """``ACK <name> <step> <rv>`` into ``acks``; ``ERR <name> <reason>`` (outcome unknown) into ``errors``."""
    parts = line.split()
    if parts and parts[0] == "ACK":
        _, name, step, rv = parts
        acks[f"{name}#{step}"] = (int(step), int(rv))
    elif parts and parts[0] == "ERR":
        errors[parts[1]] = " ".join(parts[2:])


def assert_object_complete(obj: dict) -> None:
    spec = obj["spec"]
    assert hashlib.sha256(spec["blob"].encode()).hexdigest() == spec["sha256"], obj["metadata"]["name"]


async def test_acknowledged_writes_survive_kill_9_of_server_and_client(fresh_nats_server: NatsServer, tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    writer_log = tmp_path / "writer.stderr"
    with open(writer_log, "wb") as stderr:
        writer = subprocess.Popen(
            [sys.executable, str(WRITER), fresh_nats_server.url, "dur_"],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
        )
    writer.log_path = writer_log  # type: ignore[attr-defined]  (read by read_acks on failure)
    acks: dict[str, tuple[int, int]] = {}
    errors: dict[str, str] = {}
    try:
        read_acks(writer, acks, errors, 200)
        fresh_nats_server.stop(kill=True)          # server dies mid-stream
        fresh_nats_server.start()
        read_acks(writer, acks, errors, 200)                # the writer carries on after the restart
        writer.kill()                              # the client dies mid-stream too
        writer.wait(timeout=10)
        assert writer.stdout is not None
        for line in writer.stdout.read().splitlines():
            record_line(line, acks, errors)
        fresh_nats_server.stop(kill=True)          # and the server once more, right after
        fresh_nats_server.start()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=10)

    store = await ObjectStore.connect([fresh_nats_server.url], bucket_prefix="dur_")
    try:
        items, _ = await store.list("virtualmachines")
    finally:
        await store.close()
    by_name = {o["metadata"]["name"]: o for o in items}
    for obj in items:
        assert_object_complete(obj)
    last_ack: dict[str, tuple[int, int]] = {}
    for key, (step, rv) in acks.items():
        name = key.split("#")[0]
        if name not in last_ack or step > last_ack[name][0]:
            last_ack[name] = (step, rv)
    assert len(last_ack) >= 60
    newest = max(int(name.split("-")[1]) for name in last_ack)
    for name, (step, rv) in last_ack.items():
        assert name in by_name, f"acknowledged {name} lost"
        stored_rv = int(by_name[name]["metadata"]["resourceVersion"])
        if step == 1 or (int(name.split("-")[1]) < newest and name not in errors):
            # fully acknowledged history: exactly the acknowledged version
            assert (stored_rv, by_name[name]["spec"]["step"]) == (rv, step), (name, acks.get(f"{name}#1"), errors)
        else:
            # a write whose outcome the writer never learnt (it failed, or the client died
            # waiting for it) may have landed after the last acknowledgement
            assert stored_rv >= rv, name


async def test_a_write_stored_before_a_kill_whose_reply_was_lost_reports_its_revision(fresh_nats_server: NatsServer):
    """Fault injection: the first publish reaches the server and is stored, then the server is
    killed before the client sees the reply. The retry must not report a conflict with itself."""
    store = await ObjectStore.connect([fresh_nats_server.url], bucket_prefix="lost_")
    try:
        await store.list("virtualmachines")  # bucket exists
        real_publish = store.kv._acks.publish
        calls = 0

        async def publish_then_lose_reply(*args, **kwargs):
            nonlocal calls
            calls += 1
            ack = await real_publish(*args, **kwargs)
            if calls == 1:
                fresh_nats_server.stop(kill=True)
                fresh_nats_server.start()
                raise TimeoutError("reply lost with the server")
            return ack

        store.kv._acks.publish = publish_then_lose_reply
        created = await store.create("virtualmachines", {"kind": "VirtualMachine",
                                                          "metadata": {"name": "once", "namespace": "default"}})
        store.kv._acks.publish = real_publish
        assert calls >= 2
        assert await store.get("virtualmachines", "default", "once") == created
    finally:
        await store.close()
