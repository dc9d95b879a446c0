"""shared.libvirtd: /dev/kvm access fix and daemon detection (the daemons themselves are
exercised by tests/e2e/test_demo_guest_boots.py)."""

from __future__ import annotations

import grp
import os

import pytest

from shared import libvirtd, libvirtd_users


def test_kvm_device_access_gets_group_kvm_and_0660(tmp_path):
    try:
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        pytest.skip("no kvm group on this machine")
    node = tmp_path / "kvm"
    node.write_bytes(b"")
    node.chmod(0o600)
    assert libvirtd.apply_kvm_device_access(node) is True
    st = node.stat()
    assert st.st_gid == kvm_gid and st.st_mode & 0o777 == 0o660
    assert libvirtd.apply_kvm_device_access(node) is False  # already right


def test_missing_device_is_left_alone(tmp_path):
    assert libvirtd.apply_kvm_device_access(tmp_path / "none") is False


def test_pid_probe():
    assert libvirtd.is_pid_alive(os.getpid())
    assert not libvirtd.is_pid_alive(2**22 + 12345)


def test_apply_stop_leaves_daemons_it_did_not_start():
    state = libvirtd.DaemonState(started=[], pids={"libvirtd": os.getpid()})
    libvirtd.apply_stop(state)
    assert libvirtd.is_pid_alive(os.getpid())


@pytest.mark.parametrize(("conf", "expected_lines"), [
    pytest.param("", ['host_uuid = "u-1"'], id="empty"),
    pytest.param('#listen_tls = 0\nhost_uuid = "old"\n', ["#listen_tls = 0", 'host_uuid = "u-1"'], id="replaces"),
])
def test_node_config_sets_host_uuid_once(conf, expected_lines):
    assert libvirtd.compute_node_config(conf, "u-1").splitlines() == expected_lines


def test_node_uri_points_at_the_node_socket(tmp_path):
    node = libvirtd.NodeDaemons(name="n1", base=tmp_path, host_uuid="u")
    assert node.uri == f"qemu+unix:///system?socket={tmp_path}/run/libvirt-sock"


def test_the_last_of_the_sharing_runs_stops_what_the_runs_started(tmp_path):
    import json
    import signal
    import subprocess

    # stands for a daemon a test run started: not our child (a daemon detaches), so init reaps it
    daemon_pid = int(subprocess.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], capture_output=True,
                                    text=True, check=True).stdout)
    other_run = subprocess.Popen(["sleep", "60"])  # another test run still using it
    try:
        (tmp_path / "started.json").write_text(json.dumps({"sleep": daemon_pid}))
        (tmp_path / f"user-{other_run.pid}").touch()
        (tmp_path / f"user-{os.getpid()}").touch()
        assert libvirtd_users.apply_leave_shared_system_daemons(users_dir=tmp_path) == []
        assert libvirtd.is_pid_alive(daemon_pid)  # the other run still uses it
        other_run.kill()
        other_run.wait()
        (tmp_path / f"user-{os.getpid()}").touch()
        assert libvirtd_users.apply_leave_shared_system_daemons(users_dir=tmp_path) == ["sleep"]
        assert not libvirtd.is_pid_alive(daemon_pid)
        assert not (tmp_path / "started.json").exists() and not list(tmp_path.glob("user-*"))
    finally:
        if other_run.poll() is None:
            other_run.kill()
            other_run.wait()
        if libvirtd.is_pid_alive(daemon_pid):
            os.kill(daemon_pid, signal.SIGKILL)


def test_node_daemons_get_incoming_migration_ports_apart_from_the_system_daemon():
    first, last = libvirtd.compute_node_migration_ports("22222222-2222-4222-8222-222222222222")
    assert last - first == 63 and first > libvirtd.SYSTEM_MIGRATION_PORTS[1] and last <= 65535
    blocks = {libvirtd.compute_node_migration_ports(f"{i:08x}-0000-4000-8000-000000000000") for i in range(15)}
    assert len(blocks) == 15  # fifteen node UUIDs, fifteen disjoint ranges
    conf = libvirtd.compute_node_qemu_config('#user = "qemu"\nmigration_port_min = 1\n', (50000, 50063))
    assert conf.splitlines() == ['#user = "qemu"', "migration_port_min = 50000", "migration_port_max = 50063"]
