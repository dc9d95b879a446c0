"""Which kind of installation ``virtctl up`` runs on a state directory
(services.virtctl.installation_kind): never one kind over the other's data."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.virtctl.hosts import HostsError, apply_hosts_record, compute_hosts_record
from services.virtctl.installation_kind import (
    ExcludedOptions,
    InstallationKindError,
    UpKind,
    compute_up_kind,
    find_one_machine_data,
    recorded_host_count,
)
from services.virtctl.layout import Layout

WIPE = "'virtctl down --wipe' it or use another --state-dir"


def kind(recorded: int | None, data: bool, **options: object) -> UpKind:
    given = {"hosts": None, "nodes": None, "api_port": None, "node_name": None, **options}
    return compute_up_kind(recorded, data, **given)  # type: ignore[arg-type]


def test_the_recorded_kind_runs_again() -> None:
    assert kind(None, False) is UpKind.ONE_MACHINE
    assert kind(None, True, nodes=2, api_port=9443) is UpKind.ONE_MACHINE
    assert kind(None, False, hosts=3) is UpKind.HOSTS
    assert kind(3, False) is UpKind.HOSTS  # plain 'up' restarts the recorded hosts
    assert kind(3, False, hosts=3) is UpKind.HOSTS


def test_hosts_over_one_machine_data_is_refused() -> None:
    with pytest.raises(InstallationKindError) as err:
        kind(None, True, hosts=3)
    assert str(err.value) == f"this state directory holds a one-machine installation's data; {WIPE}"


def test_one_machine_options_on_recorded_hosts_name_the_hosts() -> None:
    with pytest.raises(InstallationKindError) as err:
        kind(3, False, nodes=2)
    assert str(err.value) == f"this installation has 3 hosts (each one a node), so --nodes does not apply; " \
                             f"for a one-machine installation {WIPE}"
    with pytest.raises(InstallationKindError) as err:
        kind(3, False, api_port=9443)
    assert str(err.value) == ("this installation has 3 hosts (host1..host3, virt-api on port 8443 of each), "
                              "so --api-port does not apply")


def test_options_given_together_that_exclude_each_other() -> None:
    with pytest.raises(ExcludedOptions, match=r"^--hosts and --nodes exclude each other"):
        kind(None, False, hosts=3, nodes=2)
    with pytest.raises(ExcludedOptions, match=r"^--api-port and --node-name do not apply to --hosts"):
        kind(None, False, hosts=3, api_port=1, node_name="n")


def test_what_counts_as_one_machine_data(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "state", 0, 0, 0)
    # what a hosts installation writes (shared TLS, NATS credentials, images, records) is not
    for path in (layout.state_dir / "installation.json", layout.nats_dir / "credentials" / "virt-api.json",
                 layout.ca_cert, layout.images_dir / "index.json", layout.state_dir / "hosts" / "host1" / "x"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    assert find_one_machine_data(layout) == []
    (layout.nats_dir / "jetstream").mkdir()
    layout.handler_dir.mkdir()
    assert find_one_machine_data(layout) == [layout.nats_dir / "jetstream", layout.handler_dir]


def test_recorded_host_count(tmp_path: Path) -> None:
    layout = Layout(tmp_path, 0, 0, 0)
    assert recorded_host_count(layout) is None
    apply_hosts_record(layout, compute_hosts_record(layout, None, 3, None, []))
    assert recorded_host_count(layout) == 3
    (tmp_path / "hosts" / "hosts.json").write_text("{")
    with pytest.raises(HostsError, match="cannot read"):
        recorded_host_count(layout)
