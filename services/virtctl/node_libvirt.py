"""The private libvirt of one simulated node (``up --nodes N``'s nodes 2..N, every host of
``up --hosts N``): starting its daemons, the URI its virt-handler uses, and taking it down.

Owns: where the node's daemons keep their state (``<directory>/libvirt``), the short runtime link
(``/run/kubevirt-py/nodes/<key>``: a unix socket path must fit in 108 bytes, ``sun_path``, which
``<state>/.../libvirt/run/libvirt-sock`` may not), and the order of taking a node down (its
guests destroyed by the handler's clean-up tool, then its daemons). The daemons themselves
(private mount + UTS namespace, host UUID, migration ports) are :func:`shared.libvirtd.apply_node_daemons`'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.virtctl.host_libvirt import apply_destroy_all_guests
from services.virtctl.layout import Layout
from shared import libvirtd

SHORT_LINKS = Path("/run/kubevirt-py/nodes")


@dataclass(frozen=True)
class NodeLibvirt:
    """One node's private libvirt: ``name`` (the UTS host name of its daemons), ``host_uuid``
    (what libvirt reports; migration refuses equal UUIDs on both ends) and ``directory`` (the
    node's own directory; the daemons' state goes to ``<directory>/libvirt``)."""

    name: str
    host_uuid: str
    directory: Path

    def daemons(self) -> libvirtd.NodeDaemons:
        """The node's daemons as :mod:`shared.libvirtd` addresses them (not started by this)."""
        return libvirtd.NodeDaemons(name=self.name, base=self.directory / "libvirt", host_uuid=self.host_uuid)

    def short_run_dir(self, layout: Layout) -> Path:
        """The short symlink to the daemons' runtime directory (one per state dir and node)."""
        key = hashlib.sha256(f"{layout.state_dir}\0{self.name}".encode()).hexdigest()[:12]
        return SHORT_LINKS / key

    def uri(self, layout: Layout, driver: str = "qemu") -> str:
        """The node's libvirt URI (through :meth:`short_run_dir`; a path every namespace sees) for
        ``driver``: ``qemu`` (its QEMU guests) or ``test`` (libvirt's test driver, served by the
        same daemon: simulated guests that anyone with the socket reads)."""
        path = "system" if driver == "qemu" else "default"
        return f"{driver}+unix:///{path}?socket={self.short_run_dir(layout) / 'libvirt-sock'}"


def apply_node_libvirt(layout: Layout, node: NodeLibvirt, launch_prefix: Sequence[str] = ()) -> libvirtd.NodeDaemons:
    """Start the node's daemons (idempotent; ``launch_prefix`` e.g. runs them in a host's network
    namespace) and point the short link at them. Raises ``shared.libvirtd.LibvirtdError``."""
    daemons = libvirtd.apply_node_daemons(node.directory / "libvirt", node.name, node.host_uuid,
                                          launch_prefix=launch_prefix)
    _apply_link(node.short_run_dir(layout), daemons.socket.parent)
    return daemons


def apply_stop_node_libvirt(layout: Layout, node: NodeLibvirt, echo: Callable[[str], None]) -> bool:
    """Destroy and undefine every guest on the node's libvirt (private to it, so all are this
    installation's), stop its daemons and remove the short link. False when its daemons were
    not running (nothing done)."""
    daemons = node.daemons()
    if not daemons.socket.exists():
        node.short_run_dir(layout).unlink(missing_ok=True)
        return False
    _apply_link(node.short_run_dir(layout), daemons.socket.parent)
    for name in apply_destroy_all_guests(node.uri(layout)):
        echo(f"{'guest':<16} {name} destroyed (node {node.name})")
    libvirtd.apply_stop_node(daemons)
    node.short_run_dir(layout).unlink(missing_ok=True)
    return True


def _apply_link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and Path(link.readlink()) == target:
        return
    link.unlink(missing_ok=True)
    link.symlink_to(target)
