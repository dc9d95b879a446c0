"""Real service processes for the failure tests (not a test module): replicas of every
leader-elected service, virt-api replicas and virt-handlers on libvirt's test driver, all on one
store (a nats-server or a loopback NATS cluster), each a child process this harness started and
alone stops.

:class:`Cluster` builds the command lines (short leases, stable ``--id <service>-r<i>``),
starts, signals and restarts replicas, and answers who leads (the Lease) and who is healthy
(``/healthz``). A handler may run on a private libvirtd serving the test driver
(``test+unix:///default?socket=...``), so the test reads its domains through a second connection
(:meth:`Cluster.guests`). :class:`History` watches buckets from the start and keeps every version of every
object it saw, so a test can tell what was done how often.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from history_check import Guest
from hosts_installation import read_guests
from services.virt_handler.simulated_node import apply_test_node_file
from shared import libvirtd, netns
from shared.errors import NotFound
from shared.natsserver import pick_free_port

ROOT = Path(__file__).resolve().parents[3]
NS = "default"
VMS = "virtualmachines"
VMIS = "virtualmachineinstances"
VMIMS = "virtualmachineinstancemigrations"
SNAPSHOTS = "virtualmachinesnapshots"
CONTENTS = "virtualmachinesnapshotcontents"

#: leader election timing of every replica (seconds): lease, renew deadline, retry period
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 3.0, 2.0, 0.5

#: service -> (module, Lease name)
LEADER_ELECTED = {
    "virt-controller": ("services.virt_controller.main", "virt-controller"),
    "scheduler-bridge": ("services.scheduler_bridge.main", "scheduler-bridge"),
    "virt-migration": ("services.virt_migration.main", "virt-migration"),
    "virt-snapshot": ("services.virt_snapshot.main", "virt-snapshot"),
}


@dataclass
class Replica:
    """One process: ``name`` is also its ``--id``; ``health_port`` its /healthz port (None: none)."""

    service: str
    name: str
    argv: list[str]
    log: Path
    health_port: int | None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        """Launch the process (output appended to ``log``)."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.starts += 1

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """``kill -9`` and reap."""
        if self.is_running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL."""
        if not self.is_running():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def get(self, path: str) -> tuple[int, Any]:
        """GET ``http://127.0.0.1:<health_port><path>``: (status, JSON body), (0, None) when unreachable."""
        if self.health_port is None:
            return 0, None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=1) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, None
        except (urllib.error.URLError, OSError):
            return 0, None
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode(errors="replace")  # plain text (virt-api's "ok")

    def is_healthy(self) -> bool:
        """Running and /healthz 200 (running is all a process without a reachable port can show)."""
        if self.health_port is None:
            return self.is_running()
        return self.is_running() and self.get("/healthz")[0] == 200

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


@dataclass
class Cluster:
    """The processes of one test on ``nats_urls`` with bucket prefix ``prefix`` (see module docstring)."""

    tmp: Path
    nats_urls: list[str]
    prefix: str
    replicas: dict[str, Replica] = field(default_factory=dict)
    daemons: dict[str, libvirtd.NodeDaemons] = field(default_factory=dict)  # node -> its private libvirtd

    def common(self, *, log_level: str = "INFO") -> list[str]:
        nats = [arg for url in self.nats_urls for arg in ("--nats", url)]
        return [*nats, "--bucket-prefix", self.prefix, "--log-format", "text", "--log-level", log_level]

    def _add(self, service: str, name: str, argv: list[str], health_port: int | None) -> Replica:
        (self.tmp / "logs").mkdir(parents=True, exist_ok=True)
        replica = Replica(service, name, argv, self.tmp / "logs" / f"{name}.log", health_port)
        self.replicas[name] = replica
        return replica

    def add_leader_elected(self, service: str, count: int = 2, extra: list[str] | None = None) -> list[Replica]:
        """``count`` replicas of ``service`` with identities ``<service>-r<i>``."""
        module = LEADER_ELECTED[service][0]
        added = []
        for i in range(1, count + 1):
            name = f"{service}-r{i}"
            port = pick_free_port()
            argv = [sys.executable, "-m", module, *self.common(), "--id", name, "--health-port", str(port),
                    "--lease-duration", str(LEASE_DURATION), "--renew-deadline", str(RENEW_DEADLINE),
                    "--retry-period", str(RETRY_PERIOD), "--state-dir", str(self.tmp / name), *(extra or [])]
            if service == "virt-snapshot":
                argv += ["--storage-dir", str(self.tmp / "storage")]
            added.append(self._add(service, name, argv, port))
        return added

    def add_handler(self, node: str, extra: list[str] | None = None, *, daemon: bool = False,
                    host: netns.HostPlan | None = None) -> Replica:
        """A virt-handler of Node ``node`` on a private libvirt test-driver host (``daemon``: served
        by a libvirtd of its own, so :meth:`guests` sees its domains; a short base path, since a
        unix socket path has at most 107 bytes); ``host``: run it inside that network namespace
        (its libvirtd socket is a file, reached from any namespace; its health port is not)."""
        if daemon:
            base = Path(tempfile.mkdtemp(prefix=f"kvf-{node}-"))
            self.daemons[node] = libvirtd.apply_node_daemons(base, node, str(uuid.uuid4()))
            uri = f"test+unix:///default?socket={self.daemons[node].socket}"
        else:
            uri = apply_test_node_file(self.tmp / node / "host.xml", cpus=16, memory_bytes=64 * 2**30)
        port = pick_free_port()
        argv = [sys.executable, "-m", "services.virt_handler.main", *self.common(), "--node-name", node,
                "--libvirt-uri", uri, "--domain-type", "test", "--state-dir", str(self.tmp / node / "state"),
                "--health-port", str(port), "--pvc-root", str(self.tmp / "storage" / "pvcs"), *(extra or [])]
        if host is not None:
            return self._add("virt-handler", f"virt-handler-{node}", netns.netns_argv(host, argv), None)
        return self._add("virt-handler", f"virt-handler-{node}", argv, port)

    async def guests(self) -> list[Guest]:
        """Every kubevirt-py domain on the nodes with a private libvirtd (name ``<ns>_<vm>``)."""
        return await read_guests({node: f"test+unix:///default?socket={daemons.socket}"
                                  for node, daemons in self.daemons.items()})

    def add_api(self, count: int = 2) -> list[Replica]:
        """``count`` virt-api replicas serving plain HTTP (one state dir: the same token, written
        here first so that the replicas do not race to create it)."""
        token_file = self.tmp / "virt-api" / "token"
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.touch(mode=0o600)
        token_file.write_text(uuid.uuid4().hex + "\n")
        added = []
        for i in range(1, count + 1):
            port = pick_free_port()
            argv = [sys.executable, "-m", "services.virt_api.main", *self.common(), "--state-dir",
                    str(self.tmp / "virt-api"), "--port", str(port), "--insecure-http"]
            replica = self._add("virt-api", f"virt-api-r{i}", argv, None)
            replica.health_port = port  # the API port serves /healthz too
            added.append(replica)
        return added

    @property
    def api_token(self) -> str:
        return (self.tmp / "virt-api" / "token").read_text().strip()

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{r.health_port}" for r in self.of("virt-api")]

    def of(self, service: str) -> list[Replica]:
        return [r for r in self.replicas.values() if r.service == service]

    def start_all(self) -> None:
        for replica in self.replicas.values():
            replica.start()

    def stop_all(self) -> None:
        for replica in self.replicas.values():
            if replica.is_running():
                assert replica.proc is not None
                replica.proc.send_signal(signal.SIGTERM)
        for replica in self.replicas.values():
            replica.terminate(timeout=10)
        for daemons in self.daemons.values():
            libvirtd.apply_stop_node(daemons)
            shutil.rmtree(daemons.base, ignore_errors=True)
        self.daemons.clear()

    def check_alive(self) -> None:
        """Raise AssertionError with its log tail when a process that should run has exited."""
        for replica in self.replicas.values():
            if replica.proc is not None and replica.proc.poll() is not None and replica.proc.returncode != -9:
                raise AssertionError(f"{replica.name} exited with {replica.proc.returncode}:\n{replica.log_tail()}")

    async def wait_healthy(self, replicas: list[Replica] | None = None, timeout: float = 90.0) -> None:
        """Until every replica (default: all) answers /healthz 200."""
        pending = list(replicas if replicas is not None else self.replicas.values())
        deadline = time.monotonic() + timeout
        while pending:
            self.check_alive()
            pending = [r for r in pending if not await asyncio.to_thread(r.is_healthy)]
            if time.monotonic() > deadline:
                raise AssertionError(f"not healthy after {timeout:.0f}s: {[r.name for r in pending]}\n"
                                     + "\n".join(r.log_tail(5) for r in pending))
            await asyncio.sleep(0.2)


async def lease_holder(store: Any, service: str) -> str | None:
    """``holderIdentity`` of the service's Lease (None: no Lease or released)."""
    try:
        lease = await store.get("leases", "kubevirt", LEADER_ELECTED[service][1])
    except NotFound:
        return None
    return (lease.get("spec") or {}).get("holderIdentity") or None


async def lease_transitions(store: Any, service: str) -> int:
    lease = await store.get("leases", "kubevirt", LEADER_ELECTED[service][1])
    return int((lease.get("spec") or {}).get("leaseTransitions") or 0)


async def wait_until(check: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll the async ``check`` until truthy; its value. AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.1f}s")
        await asyncio.sleep(interval)


class History:
    """Every version of every object of some buckets, as watched from the start (dicts)."""

    def __init__(self, store: Any, plurals: list[str], namespace: str | None = NS) -> None:
        self.store = store
        self.namespace = namespace
        self.versions: dict[str, list[dict[str, Any]]] = defaultdict(list)  # plural -> versions in order
        self.tasks = [asyncio.get_running_loop().create_task(self._watch(p)) for p in plurals]

    async def _watch(self, plural: str) -> None:
        while True:
            try:
                async for event in self.store.watch(plural, self.namespace, resource_version="0"):
                    if event.type in ("ADDED", "MODIFIED", "DELETED"):
                        self.versions[plural].append({"type": event.type, "object": event.object})
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the store restarted: watch again from the start
                await asyncio.sleep(0.2)

    def uids_by_name(self, plural: str) -> dict[str, set[str]]:
        """name -> every uid an object of that name had."""
        out: dict[str, set[str]] = defaultdict(set)
        for version in self.versions[plural]:
            meta = version["object"]["metadata"]
            out[meta["name"]].add(meta["uid"])
        return out

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
