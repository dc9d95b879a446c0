"""More nodes on one machine for ``virtctl up --nodes N``: each one a virt-handler on its own libvirt.

Node 1 is the installation's own virt-handler (:mod:`services.virtctl.installation`, the system
libvirt). Nodes 2..N are named ``<node-name>-node<i>``; each gets a private ``virtlogd`` +
``libvirtd`` (:mod:`services.virtctl.node_libvirt`: own mount + UTS namespace, own
state under ``<state>/nodes/<name>/libvirt``, its own random host UUID, so that migration between
nodes sees distinct hosts) and a virt-handler process on that daemon's URI, health port and state
dir ``<state>/nodes/<name>/virt-handler``. ``<state>/nodes/nodes.json`` records every extra node
ever made (name, host UUID, health port) and how many ``up`` runs now; ``down`` stops all recorded
ones: their handler (only the process ``up`` started), their guests (the node's libvirt is private
to it, so every domain on it is this installation's; destroyed by the handler's guest clean-up
command, so virtctl never talks to libvirt itself), then their daemons.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from services.virtctl import installation as inst
from services.virtctl.node_libvirt import NodeLibvirt, apply_node_libvirt, apply_stop_node_libvirt
from services.virtctl.service_specs import SINGLE_MACHINE_TIMING
from shared import libvirtd
from shared.natsserver import pick_free_port


@dataclass(frozen=True)
class ExtraNode:
    """One simulated node: ``name`` (Node name and UTS host name), libvirt ``host_uuid``, and the
    ``health_port`` of its virt-handler."""

    name: str
    host_uuid: str
    health_port: int

    def directory(self, layout: inst.Layout) -> Path:
        return layout.state_dir / "nodes" / self.name

    def handler_dir(self, layout: inst.Layout) -> Path:
        """The node's virt-handler state (``vmis/<uid>/`` per guest)."""
        return self.directory(layout) / "virt-handler"

    def libvirt(self, layout: inst.Layout) -> NodeLibvirt:
        """The node's private libvirt (:mod:`services.virtctl.node_libvirt`)."""
        return NodeLibvirt(self.name, self.host_uuid, self.directory(layout))

    def daemons(self, layout: inst.Layout) -> libvirtd.NodeDaemons:
        """The node's daemons as :mod:`shared.libvirtd` addresses them (not started by this)."""
        return self.libvirt(layout).daemons()

    def short_run_dir(self, layout: inst.Layout) -> Path:
        """The short symlink to the daemons' runtime directory (see :class:`NodeLibvirt`)."""
        return self.libvirt(layout).short_run_dir(layout)

    def uri(self, layout: inst.Layout) -> str:
        """The node's libvirt URI (through :meth:`short_run_dir`)."""
        return self.libvirt(layout).uri(layout)

    def handler_spec(self, layout: inst.Layout) -> inst.ServiceSpec:
        """The node's virt-handler process (run record ``run/virt-handler-<name>.json``)."""
        uri = self.uri(layout)
        state = self.handler_dir(layout)

        def argv(lay: inst.Layout) -> list[str]:
            return [sys.executable, "-m", "services.virt_handler.main", *lay.nats_client_args("virt-handler"),
                    "--state-dir", str(state), "--node-name", self.name, "--libvirt-uri", uri,
                    "--image-dir", str(lay.images_dir), "--health-port", str(self.health_port),
                    "--pvc-root", str(lay.pvcs_dir), *SINGLE_MACHINE_TIMING.handler_args()]

        def prepare(lay: inst.Layout) -> None:
            for directory in (lay.state_dir, lay.state_dir / "nodes", self.directory(lay), state, lay.images_dir):
                directory.mkdir(parents=True, exist_ok=True)
                directory.chmod(directory.stat().st_mode | 0o755)  # QEMU (libvirt-qemu) traverses them

        return inst.ServiceSpec(f"virt-handler-{self.name}", argv,
                                lambda lay: inst.is_http_ok(f"http://127.0.0.1:{self.health_port}/healthz"),
                                prepare=prepare, start_timeout=60.0)


def _record(layout: inst.Layout) -> Path:
    return layout.state_dir / "nodes" / "nodes.json"


def load_extra_nodes(layout: inst.Layout) -> tuple[int, list[ExtraNode]]:
    """(node count ``up`` runs, every extra node recorded); (1, []) without a record."""
    try:
        data = json.loads(_record(layout).read_text())
        return int(data["count"]), [ExtraNode(**n) for n in data["nodes"]]
    except (OSError, ValueError, KeyError, TypeError):
        return 1, []


def compute_running_nodes(layout: inst.Layout) -> list[ExtraNode]:
    """The extra nodes 2..count that ``up`` runs (recorded order)."""
    count, nodes = load_extra_nodes(layout)
    wanted = {f"{layout.node_name}-node{i}" for i in range(2, count + 1)}
    return [n for n in nodes if n.name in wanted]


def compute_running_specs(layout: inst.Layout) -> list[inst.ServiceSpec]:
    """The handler specs of nodes 2..count that ``up`` runs (for ``virtctl status``)."""
    return [n.handler_spec(layout) for n in compute_running_nodes(layout)]


def compute_extra_nodes(layout: inst.Layout, count: int | None) -> tuple[int, list[ExtraNode]]:
    """The node count to run (``count``, else the recorded one) and the recorded nodes extended
    to cover it (new ones get a fresh host UUID and health port); persisted. Raises ValueError
    for a count below 1."""
    recorded_count, nodes = load_extra_nodes(layout)
    count = recorded_count if count is None else count
    if count < 1:
        raise ValueError(f"--nodes must be at least 1 (got {count})")
    if count == 1 and not nodes and not _record(layout).exists():
        return 1, []  # a one-node installation leaves no trace of this module
    names = {n.name for n in nodes}
    for index in range(2, count + 1):
        name = f"{layout.node_name}-node{index}"
        if name not in names:
            nodes.append(ExtraNode(name, str(uuid.uuid4()), pick_free_port()))
    _record(layout).parent.mkdir(parents=True, exist_ok=True)
    _record(layout).write_text(json.dumps({"count": count, "nodes": [asdict(n) for n in nodes]}, indent=2) + "\n")
    return count, nodes


def apply_extra_nodes(layout: inst.Layout, count: int | None, echo: Callable[[str], None]) -> list[ExtraNode]:
    """Start nodes 2..``count`` (daemons, then handler; idempotent) and return them. Raises
    ``shared.libvirtd.LibvirtdError`` or RuntimeError (handler not healthy) with a readable message."""
    count, nodes = compute_extra_nodes(layout, count)
    wanted = [n for n in nodes if n.name in {f"{layout.node_name}-node{i}" for i in range(2, count + 1)}]
    for node in wanted:
        daemons = apply_node_libvirt(layout, node.libvirt(layout))
        spec = node.handler_spec(layout)
        record = inst.running_record(layout, spec)
        if record is not None:
            inst.wait_healthy(layout, spec, record)
            echo(f"{spec.name:<16} already running (pid {record.pid}, libvirtd pid {daemons.pids['libvirtd']})")
            continue
        record = inst.launch(layout, spec)
        inst.wait_healthy(layout, spec, record)
        echo(f"{spec.name:<16} started (pid {record.pid}, libvirtd pid {daemons.pids['libvirtd']}, "
             f"host UUID {node.host_uuid})")
    return wanted


def apply_stop_extra_nodes(layout: inst.Layout, echo: Callable[[str], None]) -> None:
    """Stop every recorded extra node: its handler, its guests (destroyed and undefined), its daemons."""
    _, nodes = load_extra_nodes(layout)
    for node in nodes:
        spec = node.handler_spec(layout)
        if inst.stop(layout, spec):
            echo(f"{spec.name:<16} stopped")
        if apply_stop_node_libvirt(layout, node.libvirt(layout), echo):
            echo(f"{'libvirtd':<16} of node {node.name} stopped")

