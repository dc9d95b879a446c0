"""Pure pieces of the serial console and the main job: pty lookup in domain XML, subjects,
KubeVirt's refusals before the WebSocket upgrade, Ctrl-] handling, console-log lines."""

from __future__ import annotations

import pytest

from services.virt_api.console import compute_console_refusal
from services.virt_handler.console import compute_pty_path
from services.virtctl.console_command import compute_console_url, split_escape
from services.virtctl.kubeconfig import ClusterAccess
from services.virtctl.main_job import compute_console_lines, compute_failure_hint
from shared import console as proto
from shared.errors import BadRequest, Conflict

LIVE_XML = """<domain type='qemu'><name>default_vm</name><devices>
  <serial type='pty'><source path='/dev/pts/7'/><target type='isa-serial' port='0'/></serial>
  <console type='pty' tty='/dev/pts/7'><source path='/dev/pts/7'/><target type='serial' port='0'/></console>
</devices></domain>"""


@pytest.mark.parametrize("xml, expected", [
    pytest.param(LIVE_XML, "/dev/pts/7", id="console-tty"),
    pytest.param("<domain><devices><serial type='pty'><source path='/dev/pts/3'/></serial></devices></domain>",
                 "/dev/pts/3", id="serial-source-only"),
    pytest.param("<domain><devices><serial type='pty'/></devices></domain>", None, id="defined-not-running"),
    pytest.param("<domain><devices><serial type='file'><source path='/tmp/x'/></serial></devices></domain>",
                 None, id="not-a-pty"),
    pytest.param("<domain><devices/></domain>", None, id="no-serial"),
])
def test_compute_pty_path(xml, expected):
    assert compute_pty_path(xml) == expected


def test_session_subjects_and_open_round_trip():
    assert proto.session_subject("ab12", "in") == "kubevirt.v1.console.ab12.in"
    assert proto.console_open_subject("node.example.com") == "kubevirt.v1.handler.node_example_com.console"
    with pytest.raises(ValueError):
        proto.session_subject("ab12", "sideways")
    from shared import events
    request = proto.ConsoleOpen(namespace="default", name="vm", session="ab12", uid="u1")
    assert proto.decode_open(events.encode(request)) == request


def vmi(phase="Running", node="n1", autoattach=None):
    devices = {} if autoattach is None else {"autoattachSerialConsole": autoattach}
    return {"metadata": {"name": "vm"}, "spec": {"domain": {"devices": devices}},
            "status": {"phase": phase, **({"nodeName": node} if node else {})}}


@pytest.mark.parametrize("obj, error, message", [
    pytest.param(vmi(), None, None, id="running"),
    pytest.param(vmi(phase="Scheduling", node=None), Conflict,
                 'Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "vm": VMI is not running',
                 id="not-running"),
    pytest.param(vmi(autoattach=False), BadRequest, "No serial consoles are present.", id="no-serial-console"),
])
def test_console_refusals_are_kubevirts(obj, error, message):
    refusal = compute_console_refusal(obj)
    if error is None:
        assert refusal is None
    else:
        assert isinstance(refusal, error) and str(refusal) == message


@pytest.mark.parametrize("data, expected", [
    pytest.param(b"ls\r", (b"ls\r", False), id="plain"),
    pytest.param(b"ab\x1dcd", (b"ab", True), id="escape-in-the-middle"),
    pytest.param(b"\x1d", (b"", True), id="escape-alone"),
])
def test_split_escape(data, expected):
    assert split_escape(data) == expected


def test_console_url_is_kubevirts_subresource_path():
    access = ClusterAccess(server="https://127.0.0.1:8443/", token="t", ssl_context=None, namespace="default")
    assert compute_console_url(access, "ns1", "vm-demo") == (
        "https://127.0.0.1:8443/apis/subresources.kubevirt.io/v1/namespaces/ns1/virtualmachineinstances/vm-demo/console")


def test_console_lines_drop_control_sequences_and_blank_lines():
    data = b"\x1b[2J\x1b[Hkubevirt-py demo guest\r\n\r\nkernel 6.1\r\n[root@vm ]# \r\nmore\r\n"
    assert compute_console_lines(data, 12) == ["kubevirt-py demo guest", "kernel 6.1", "[root@vm ]# "]
    assert compute_console_lines(data, 1) == ["kubevirt-py demo guest"]


def test_failure_hint_names_the_false_condition():
    vm = {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "ErrImagePull",
                                     "message": "image x not found"}]}}
    assert compute_failure_hint(vm, None) == "Ready: ErrImagePull image x not found"
    assert compute_failure_hint({"status": {}}, None) == ""
