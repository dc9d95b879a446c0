"""``virtctl down`` stops guests through the handler's clean-up command (a process), never by
importing libvirt: libvirt's test driver (fresh per process) stands in for the host's libvirt."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.virtctl import host_libvirt
from services.virtctl import installation as inst


def test_every_domain_of_a_private_libvirt_is_destroyed():
    assert host_libvirt.apply_destroy_all_guests("test:///default") == ["test"]


def test_only_domains_with_a_vmi_directory_are_the_installations(tmp_path: Path):
    layout = inst.load_layout(tmp_path / "state", 18444, libvirt_uri="test:///default")
    assert inst.apply_stop_guests(layout) == []  # no VMI directories: libvirt is not even asked
    (layout.handler_dir / "vmis" / "some-other-uid").mkdir(parents=True)
    assert inst.apply_stop_guests(layout, grace=0.1) == []  # the test driver's domain carries no VMI uid


def test_an_unreachable_libvirt_stops_nothing():
    assert host_libvirt.apply_destroy_all_guests("qemu+unix:///system?socket=/nonexistent/sock") == []


def test_a_failing_clean_up_is_one_readable_error():
    with pytest.raises(RuntimeError, match="stopping the guests on test:///default failed"):
        host_libvirt.run_guest_cleanup("test:///default")  # neither --vmis-dir nor --all
