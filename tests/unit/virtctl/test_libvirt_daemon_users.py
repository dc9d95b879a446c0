"""``virtctl down`` leaves the system libvirt daemons to whoever still uses them: an installation
registers as a user (``shared.libvirtd`` shared users) under a name of its state directory, and
only the last user to leave stops what users started. A detached ``sleep`` stands in for a daemon
an earlier ``up`` started; a live process stands in for a test run still using it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from services.virtctl import host_libvirt
from services.virtctl import installation as inst
from shared import libvirtd, libvirtd_users


def _detached_sleep() -> int:
    out = subprocess.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True,
                         check=True).stdout
    return int(out)


def test_down_stops_the_daemons_only_when_no_other_user_remains(tmp_path: Path, monkeypatch):
    users = tmp_path / "users"
    users.mkdir()
    monkeypatch.setattr(libvirtd_users, "SHARED_USERS_DIR", users)
    first = inst.load_layout(tmp_path / "one", 18443)
    second = inst.load_layout(tmp_path / "two", 18444)
    assert host_libvirt.compute_daemon_holder(first) != host_libvirt.compute_daemon_holder(second)
    daemon = _detached_sleep()
    test_run = subprocess.Popen(["sleep", "60"])
    try:
        (users / "started.json").write_text(json.dumps({"sleep": daemon}))
        for layout in (first, second):
            layout.state_dir.mkdir(parents=True, exist_ok=True)
            (layout.state_dir / "installation.json").write_text("{}")
            (users / f"user-{host_libvirt.compute_daemon_holder(layout)}").write_text(
                str(layout.state_dir / "installation.json"))
        gone = users / "user-installation-0000000000000000"  # an installation removed without down
        gone.write_text(str(tmp_path / "removed" / "installation.json"))
        (users / f"user-{test_run.pid}").touch()

        assert inst.apply_stop_libvirt_daemons(first, timeout=5) == []  # the other installation uses it
        assert inst.apply_stop_libvirt_daemons(second, timeout=5) == []  # the test run still does
        assert libvirtd.is_pid_alive(daemon)
        test_run.kill()
        test_run.wait()
        (users / f"user-{host_libvirt.compute_daemon_holder(second)}").touch()  # `up` again
        assert inst.apply_stop_libvirt_daemons(second, timeout=5) == ["sleep"]  # the last user leaves
        assert not libvirtd.is_pid_alive(daemon)
        assert not gone.exists()
    finally:
        if test_run.poll() is None:
            test_run.kill()
            test_run.wait()
        if libvirtd.is_pid_alive(daemon):
            os.kill(daemon, signal.SIGKILL)
