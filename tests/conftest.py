"""Shared pytest fixtures: real nats-server processes and a connected ObjectStore.

``nats_server`` (session) is one JetStream server for the whole run; tests stay apart by using the
``object_store`` fixture, whose bucket prefix is unique per test. ``system_libvirtd`` (session)
makes sure the system ``virtlogd``/``libvirtd`` run for the whole session and stops at the end
only the ones test runs started, once no other run still uses them (two runs share a machine), so a ``virtctl down`` inside one test (which stops only what its ``up``
started) never takes the daemons away from the tests after it. ``fresh_nats_server`` (function)
is a private server for tests that kill or restart it. ``hosts_state`` (function) is the state
directory of a ``virtctl up --hosts N`` of the test, taken down after it. Servers run from ``.venv/bin/nats-server``
on free loopback ports with state in pytest's temporary directories; a fixture stops only the
process it started.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hosts_installation import virtctl
from shared import libvirtd, libvirtd_users
from shared.natsserver import NatsCluster, NatsServer
from shared.store import ObjectStore


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server (JetStream, sync_interval always) shared by the whole session."""
    server = NatsServer(tmp_path_factory.mktemp("nats-session"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def system_libvirtd() -> Iterator[libvirtd.DaemonState]:
    """The system libvirt daemons (``qemu:///system``), started if missing, for the whole session.

    Yields :class:`shared.libvirtd.DaemonState` (``started`` names what this fixture started);
    raises ``LibvirtdError`` when they cannot come up (needs root and scripts/install.sh)."""
    state = libvirtd_users.apply_shared_system_daemons()  # another test run may share them
    try:
        yield state
    finally:
        libvirtd_users.apply_leave_shared_system_daemons()


@pytest.fixture
def hosts_state(tmp_path: Path) -> Iterator[Path]:
    """A state directory for ``virtctl up --hosts N``; ``virtctl down`` of it after the test (its
    processes, guests, daemons, namespaces, links), when the test made hosts there."""
    directory = tmp_path / "state"
    yield directory
    if (directory / "hosts" / "hosts.json").exists():
        virtctl("down", "--state-dir", str(directory), check=False)


@pytest.fixture
def fresh_nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server of this test alone (may be killed and restarted by the test)."""
    server = NatsServer(tmp_path_factory.mktemp("nats-fresh"))
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Three nats-server nodes on loopback (JetStream R3 possible); for failover tests."""
    cluster = NatsCluster(tmp_path_factory.mktemp("nats-cluster"), size=3)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop(kill=True)


def unique_bucket_prefix() -> str:
    """A bucket prefix no other test uses (buckets are ``<prefix><plural>``)."""
    return f"t{uuid.uuid4().hex[:10]}_"


@pytest.fixture
async def object_store(nats_server: NatsServer) -> AsyncIterator[ObjectStore]:
    """An ObjectStore on the session server with buckets private to this test."""
    store = await ObjectStore.connect([nats_server.url], bucket_prefix=unique_bucket_prefix())
    try:
        yield store
    finally:
        await store.close()
