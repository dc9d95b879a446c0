"""The two kinds of installation one state directory can hold, told apart from what is on disk.

A *one-machine* installation (``virtctl up``, with ``--nodes N`` more nodes) keeps its store in
``<state>/nats/jetstream`` and its services' state in ``<state>/<service>`` and
``<state>/nodes``; a *hosts* installation (``virtctl up --hosts N``) keeps both under
``<state>/hosts`` (record ``hosts/hosts.json``). Both share ``installation.json``, the TLS
material and token (``api/``), the NATS credentials, images, claims' disks, logs and run records.

Owns: which of its kinds a state directory holds (:func:`find_one_machine_data`,
:func:`recorded_host_count`), which kind ``up`` runs given that and its options
(:func:`compute_up_kind`, pure: a kind never starts over the other's data, whose VMs it could not
see), and every path either kind writes (:func:`compute_written_paths`, for ``down --wipe``).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from services.virtctl.hosts import API_PORT, load_hosts_record
from services.virtctl.layout import Layout
from services.virtctl.service_specs import SERVICES

HOSTS_RECORD = Path("hosts") / "hosts.json"
"""The hosts installation's record, relative to the state directory (written first by ``up --hosts``)."""

WIPE_HINT = "'virtctl down --wipe' it or use another --state-dir"


class UpKind(StrEnum):
    """What ``virtctl up`` runs."""

    ONE_MACHINE = "one-machine"
    HOSTS = "hosts"


class InstallationKindError(ValueError):
    """``up`` was asked for the other kind than the state directory holds; one line for the user."""


class ExcludedOptions(InstallationKindError):
    """Options of both kinds given together (wrong on any state directory: a usage error)."""


def find_one_machine_data(layout: Layout) -> list[Path]:
    """The paths present under ``layout.state_dir`` that only a one-machine installation writes:
    its JetStream store, each service's state directory (the handler's VMI files included) and
    the extra nodes of ``--nodes``. Empty: none (a fresh directory, or a hosts installation)."""
    paths = [layout.nats_server().store_dir, *(layout.state_dir / spec.name for spec in SERVICES),
             layout.state_dir / "nodes"]
    return [path for path in paths if path.exists()]


def recorded_host_count(layout: Layout) -> int | None:
    """How many hosts ``hosts/hosts.json`` records; None without a record. Raises
    :class:`services.virtctl.hosts.HostsError` for a record that cannot be read."""
    record = load_hosts_record(layout)
    return None if record is None else len(record.plan.hosts)


def compute_up_kind(recorded_hosts: int | None, one_machine_data: bool, *, hosts: int | None, nodes: int | None,
                    api_port: int | None, node_name: str | None) -> UpKind:
    """The kind ``up`` runs on a state directory with ``recorded_hosts`` (None: no hosts record)
    and ``one_machine_data`` (a one-machine installation's data is there), given its options
    ``--hosts``, ``--nodes``, ``--api-port`` and ``--node-name`` (None: not given).

    A hosts record means hosts (plain ``up`` restarts them); ``--hosts`` without one means hosts
    unless one-machine data is there; anything else is one machine. Raises
    InstallationKindError, naming the installation the directory holds, when an option belongs
    to the other kind or the other kind's data is there (the new installation would start empty
    beside it and never show its VMs); :class:`ExcludedOptions` when ``--hosts`` comes with an
    option of the other kind.
    """
    given = [name for name, value in (("--api-port", api_port), ("--node-name", node_name)) if value is not None]
    one_machine_options = f"{' and '.join(given)} {'does' if len(given) == 1 else 'do'} not apply"
    if recorded_hosts is not None:
        where = f"this installation has {recorded_hosts} hosts"
        if nodes is not None:
            raise InstallationKindError(f"{where} (each one a node), so --nodes does not apply; "
                                        f"for a one-machine installation {WIPE_HINT}")
        if given:
            raise InstallationKindError(f"{where} (host1..host{recorded_hosts}, virt-api on port {API_PORT} of each), "
                                        f"so {one_machine_options}")
        return UpKind.HOSTS
    if hosts is None:
        return UpKind.ONE_MACHINE
    if nodes is not None:
        raise ExcludedOptions("--hosts and --nodes exclude each other (every host is a node)")
    if given:
        raise ExcludedOptions(f"{one_machine_options} to --hosts "
                                    f"(hosts are host1..hostN, virt-api listens on port {API_PORT} of each)")
    if one_machine_data:
        raise InstallationKindError(f"this state directory holds a one-machine installation's data; {WIPE_HINT}")
    return UpKind.HOSTS


def compute_written_paths(layout: Layout) -> tuple[list[Path], list[Path]]:
    """``(directories, files)`` either kind of installation writes under ``layout.state_dir``:
    everything ``down --wipe`` removes, whichever kind ran there before (a hosts installation
    made after a one-machine one's ``down --wipe`` leaves nothing behind, nor the reverse)."""
    state = layout.state_dir
    directories = [layout.nats_dir, layout.api_dir, layout.logs_dir, layout.run_dir, layout.images_dir,
                   layout.pvcs_dir, layout.volume_snapshots_dir, state / "guest-build",
                   *(state / spec.name for spec in SERVICES), state / "nodes", state / HOSTS_RECORD.parent]
    return directories, [layout.kubeconfig, state / "installation.json"]
