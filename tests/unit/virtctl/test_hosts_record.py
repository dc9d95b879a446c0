"""The record and command lines of ``virtctl up --hosts N`` (services.virtctl.hosts, no processes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from services.virtctl.hosts import (
    HostsError,
    HostsRecord,
    compute_hosts_record,
    compute_nats_urls,
    compute_service_argv,
    compute_specs,
    nats_server,
)
from services.virtctl.layout import Layout
from shared.node_fencing import FailureTiming


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "state", api_port=8443, nats_port=1, nats_http_port=2)


@pytest.fixture
def record(layout: Layout) -> HostsRecord:
    return compute_hosts_record(layout, None, 3, None, [])


def address(record: HostsRecord, host: str) -> str:
    return str(record.plan.host(host).address)


def test_new_record_has_a_plan_and_distinct_host_uuids(record: HostsRecord) -> None:
    assert [h.name for h in record.plan.hosts] == ["host1", "host2", "host3"]
    assert len(set(record.host_uuids.values())) == 3 and record.libvirt_uri is None
    assert HostsRecord.from_json(record.to_json()) == record


def test_recorded_installation_keeps_its_count_and_libvirt(layout: Layout, record: HostsRecord) -> None:
    assert compute_hosts_record(layout, record, None, None, []) is record
    assert compute_hosts_record(layout, record, 3, None, []) is record
    with pytest.raises(HostsError, match="has 3 hosts; run 'virtctl down' first to make 2"):
        compute_hosts_record(layout, record, 2, None, [])
    with pytest.raises(HostsError, match="change --libvirt-uri"):
        compute_hosts_record(layout, record, None, "test:///default", [])
    with pytest.raises(HostsError, match="give --hosts N"):
        compute_hosts_record(layout, None, None, None, [])


def test_every_python_service_connects_to_every_nats_server(layout: Layout, record: HostsRecord) -> None:
    urls = [f"tls://{address(record, h)}:4222" for h in ("host1", "host2", "host3")]
    assert compute_nats_urls(record) == urls
    argv = compute_service_argv(layout, record, "virt-controller", "host3")
    assert argv[:3] == [sys.executable, "-m", "services.virt_controller.main"]
    assert argv[3:] == ["--nats", urls[0], "--nats", urls[1], "--nats", urls[2],
                        "--nats-credentials", str(layout.state_dir / "nats/credentials/virt-controller.json"),
                        "--nats-ca", str(layout.state_dir / "api/pki/ca.crt"), "--store-replicas", "3",
                        "--health-host", address(record, "host3"), "--health-port", "8181",
                        "--id", "virt-controller-host3", "--heartbeat-timeout", "40", "--fence-margin", "10",
                        "--state-dir", str(layout.state_dir / "hosts/host3/virt-controller")]


def test_handler_and_api_arguments(layout: Layout, record: HostsRecord) -> None:
    handler = compute_service_argv(layout, record, "virt-handler", "host2")
    tail = handler[handler.index("--state-dir"):]
    assert tail[:4] == ["--state-dir", str(layout.state_dir / "hosts/host2/virt-handler"), "--node-name", "host2"]
    assert tail[tail.index("--libvirt-uri") + 1].startswith("qemu+unix:///system?socket=/run/kubevirt-py/nodes/")
    assert tail[tail.index("--migration-address") + 1] == address(record, "host2")
    assert tail[-4:] == ["--heartbeat-interval", "5", "--fence-after", "20"]  # the installation's one timing
    api = compute_service_argv(layout, record, "virt-api", "host2")
    assert api[api.index("--host") + 1] == address(record, "host2") and api[api.index("--port") + 1] == "8443"
    assert [api[i + 1] for i, a in enumerate(api) if a == "--tls-san"] == [
        address(record, h) for h in ("host1", "host2", "host3")]
    assert api[api.index("--state-dir") + 1] == str(layout.api_dir)  # one token and CA for both replicas


def test_nats_cluster_routes_over_the_host_addresses(layout: Layout, record: HostsRecord) -> None:
    config = nats_server(layout, record, "host2").compute_config()
    here = address(record, "host2")
    assert f"listen: {here}:4222" in config and "name: \"kubevirt-py\"" in config
    routes = ", ".join(f"nats-route://{address(record, h)}:6222" for h in ("host1", "host2", "host3"))
    assert f"routes: [{routes}]" in config
    assert f"http: {here}:8222" in config
    assert str(layout.state_dir / "hosts/host2/nats/pki/server.crt") in config


def test_specs_in_start_order_run_inside_their_host(record: HostsRecord) -> None:
    specs = compute_specs(record)
    names = [spec.name for spec in specs]
    assert names[:4] == ["nats-server-host1", "nats-server-host2", "nats-server-host3", "virt-api-host1"]
    assert names[-3:] == ["virt-handler-host1", "virt-handler-host2", "virt-handler-host3"]
    assert len(names) == 3 + 10 + 3
    spec = specs[names.index("virt-handler-host2")]
    assert spec.wrap is not None and spec.wrap(["x"]) == ["ip", "netns", "exec", record.plan.host("host2").netns, "x"]


def test_testing_knobs_recorded_and_passed_on(layout: Layout) -> None:
    timing = FailureTiming(heartbeat_interval=1, fence_after=6, heartbeat_timeout=12, fence_margin=4)
    record = compute_hosts_record(layout, None, 3, None, [], libvirt_driver="test", failure_timing=timing)
    assert HostsRecord.from_json(record.to_json()) == record
    handler = compute_service_argv(layout, record, "virt-handler", "host2")
    assert handler[handler.index("--libvirt-uri") + 1].startswith("test+unix:///default?socket=/run/kubevirt-py/nodes/")
    assert handler[-4:] == ["--heartbeat-interval", "1", "--fence-after", "6"]
    controller = compute_service_argv(layout, record, "virt-controller", "host2")
    assert controller[controller.index("--heartbeat-timeout"):][:4] == [
        "--heartbeat-timeout", "12", "--fence-margin", "4"]
    assert compute_service_argv(layout, record, "scheduler-bridge", "host2")[-2:] == ["--heartbeat-timeout", "12"]
    assert compute_hosts_record(layout, record, 3, None, [], libvirt_driver="test", failure_timing=timing) is record
    with pytest.raises(HostsError, match="another failure timing"):
        compute_hosts_record(layout, record, None, None, [], failure_timing=FailureTiming())
    with pytest.raises(HostsError, match="serve the test driver"):
        compute_hosts_record(layout, record, None, None, [], libvirt_driver="qemu")
    with pytest.raises(HostsError, match="unknown libvirt driver 'xen'"):
        compute_hosts_record(layout, None, 3, None, [], libvirt_driver="xen")


def test_record_of_an_older_up_gets_the_defaults(record: HostsRecord) -> None:
    data = record.to_json()
    del data["libvirtDriver"], data["failureTiming"]
    assert HostsRecord.from_json(data) == record


def test_test_driver_for_every_handler(layout: Layout) -> None:
    record = compute_hosts_record(layout, None, 2, "test:///default", [])
    argv = compute_service_argv(layout, record, "virt-handler", "host1")
    assert argv[argv.index("--libvirt-uri") + 1] == "test:///default"
    assert record.placement.store_replicas == 2
