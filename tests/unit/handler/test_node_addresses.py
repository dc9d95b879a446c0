"""The Node's ``status.addresses`` (services.virt_handler.node, pure): kubelet's InternalIP and
Hostname, the InternalIP being the handler's ``--migration-address``."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from unittest.mock import MagicMock

from services.virt_handler.hypervisor_types import NodeInfo
from services.virt_handler.main import build_node, compute_handler_settings
from services.virt_handler.node import compute_node, compute_node_addresses
from shared.service import CommonSettings

INFO = NodeInfo(cpus=2, memory_bytes=2 << 30, cpu_model="x86_64", cpu_vendor="", cpu_features=(), arch="x86_64",
                hostname="machine", mhz=0)
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_internal_ip_first_then_hostname() -> None:
    assert compute_node_addresses("host2", "10.77.0.3") == [{"type": "InternalIP", "address": "10.77.0.3"},
                                                           {"type": "Hostname", "address": "host2"}]


def test_node_carries_the_given_address_and_a_single_machine_node_loopback() -> None:
    node = compute_node(None, "host2", INFO, NOW, internal_ip="10.77.0.3")
    assert node["status"]["addresses"] == compute_node_addresses("host2", "10.77.0.3")
    # an address a previous handler wrote (another --migration-address) is replaced, not kept
    again = compute_node(node, "host2", INFO, NOW, internal_ip="10.77.0.9")
    assert again["status"]["addresses"][0] == {"type": "InternalIP", "address": "10.77.0.9"}
    assert compute_node(None, "node1", INFO, NOW)["status"]["addresses"] == [
        {"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "node1"}]


def test_handler_heartbeat_publishes_its_migration_address(tmp_path: Path) -> None:
    params = {"node_name": "host3", "libvirt_uri": "test:///default", "image_dir": None, "domain_type": "auto",
              "heartbeat_interval": 5.0, "workers": 1, "migration_address": "10.77.0.4"}
    settings = compute_handler_settings(CommonSettings(service="virt-handler", nats_servers=("nats://x",),
                                                       state_dir=tmp_path, params=params))
    # build_node only wires objects together (nothing connects): stand-ins suffice
    heartbeat, *_ = build_node(MagicMock(), MagicMock(), settings, "qemu")
    assert heartbeat.internal_ip == "10.77.0.4"
