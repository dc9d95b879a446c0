"""The main job finds the VMI's node's handler (services.virtctl.main_job, pure): its state
directory (the console log) and its log, for one machine, ``--nodes`` and ``--hosts``; and says
what it waited for when the time is up."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.virtctl.extra_nodes import ExtraNode
from services.virtctl.hosts import HostsRecord, compute_hosts_record
from services.virtctl.layout import Layout
from services.virtctl.main_job import (
    HandlerPlace,
    compute_handler_logs,
    compute_handler_place,
    compute_timeout_message,
    console_log,
)

VMI = {"metadata": {"uid": "u-1"}, "status": {"nodeName": "host2"}}


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "state", 8443, 1, 2, node_name="machine")


@pytest.fixture
def record(layout: Layout) -> HostsRecord:
    return compute_hosts_record(layout, None, 3, None, [])


def test_a_hosts_vmi_lives_under_its_host(layout: Layout, record: HostsRecord) -> None:
    state = layout.state_dir
    place = compute_handler_place(layout, record, [], "host2")
    assert place == HandlerPlace("host2", state / "hosts/host2/virt-handler", state / "logs/virt-handler-host2.log")
    assert console_log(place, VMI) == state / "hosts/host2/virt-handler/vmis/u-1/console.log"
    # the one-machine handler's directory is not a hosts installation's, even when left there
    assert compute_handler_place(layout, record, [], "machine") is None
    assert compute_handler_logs(layout, record, []) == [state / f"logs/virt-handler-host{i}.log" for i in (1, 2, 3)]


def test_one_machine_and_its_extra_nodes(layout: Layout) -> None:
    state = layout.state_dir
    node2 = ExtraNode("machine-node2", "uuid", 1234)
    assert compute_handler_place(layout, None, [node2], "machine") == HandlerPlace(
        "machine", state / "virt-handler", state / "logs/virt-handler.log")
    assert compute_handler_place(layout, None, [node2], "machine-node2") == HandlerPlace(
        "machine-node2", state / "nodes/machine-node2/virt-handler", state / "logs/virt-handler-machine-node2.log")
    assert compute_handler_place(layout, None, [node2], "host2") is None
    assert compute_handler_logs(layout, None, [node2]) == [state / "logs/virt-handler.log",
                                                          state / "logs/virt-handler-machine-node2.log"]


def test_timeout_messages_say_what_was_missing(layout: Layout, record: HostsRecord) -> None:
    place = compute_handler_place(layout, record, [], "host2")
    assert place is not None
    logs = compute_handler_logs(layout, record, [])
    log2 = layout.state_dir / "logs/virt-handler-host2.log"
    assert compute_timeout_message("vm-demo", "Starting", 300, "Ready: NotReady x", VMI, place, logs) == (
        f"VM vm-demo is Starting, not Running, after 300 s (Ready: NotReady x); see {log2}")
    assert compute_timeout_message("vm-demo", "Running", 300, "", VMI, place, logs) == (
        f"VM vm-demo is Running but node host2's virt-handler has no files for it in {place.state_dir} after "
        f"300 s (a VMI left Running by 'virtctl down' that its handler has not failed yet); see {log2}")
    unknown = {"metadata": {"uid": "u-1"}, "status": {"nodeName": "elsewhere"}}
    assert compute_timeout_message("vm-demo", "Running", 300, "", unknown, None, logs) == (
        "VM vm-demo is Running on node elsewhere, which this installation does not run, after 300 s; "
        f"see {', '.join(map(str, logs))}")
    assert compute_timeout_message("vm-demo", "Stopped", 300, "", None, None, logs).startswith(
        "VM vm-demo is Stopped, not Running, after 300 s; see ")
