"""The handler's core/v1 ``Node``: registration from libvirt's host facts, and the heartbeat.

Owns the Node object's fields the handler is responsible for (KubeVirt's virt-handler
``heartbeat`` + node labeller, kubelet's capacity and Ready condition):

- ``metadata.labels``: ``kubevirt.io/schedulable=true``, ``kubernetes.io/hostname``,
  ``kubernetes.io/arch``, ``kubernetes.io/os``, ``cpu-model.node.kubevirt.io/<model>``,
  ``host-model-cpu.node.kubevirt.io/<model>``, ``cpu-vendor.node.kubevirt.io/<vendor>``,
  ``cpu-feature.node.kubevirt.io/<feature>`` (all ``"true"``); other labels are kept.
- ``metadata.annotations["kubevirt.io/heartbeat"]``: RFC 3339 time of the last beat;
  ``kubevirt-py.io/libvirt-migration-uri`` (how other nodes' libvirtd reach this node's) and
  ``kubevirt-py.io/vmi-state-dir`` (this node's per-VMI directory root), given by the handler;
  ``kubevirt-py.io/fence-after-seconds`` while the handler fences itself
  (``shared.node_fencing``; removed by the last write of a handler that stops cleanly, whose
  guests keep running for the next handler to adopt).
- ``status.capacity`` / ``status.allocatable``: ``cpu`` (logical CPUs), ``memory``
  (``<n>Ki``), ``pods``; allocatable equals capacity (no system reservation here).
- ``status.conditions[type=Ready]``: ``True``/``KubeletReady`` with ``lastHeartbeatTime``
  renewed on every beat; ``lastTransitionTime`` only when the status changes.
- ``status.nodeInfo`` and ``status.addresses`` (``InternalIP`` and ``Hostname``, as kubelet
  reports them; :func:`compute_node_addresses`).

``spec`` (taints, ``unschedulable``) belongs to the administrator and is never touched.
Who reacts to a silent node (VMIs Unknown/Failed) is virt-controller's node controller.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import socket
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from services.virt_handler.hypervisor_types import NodeInfo
from shared.api.vocabulary import ConditionStatus, ConditionType, format_time, utc_now
from shared.errors import AlreadyExists, Conflict, NotFound

log = logging.getLogger(__name__)

NODES = "nodes"
HEARTBEAT_ANNOTATION = "kubevirt.io/heartbeat"
SCHEDULABLE_LABEL = "kubevirt.io/schedulable"
MAX_PODS = "110"  # kubelet default; VMIs are the only "pods" here
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "s390x": "s390x"}


_now = utc_now


def format_memory(count: int) -> str:
    """Bytes as kubelet writes memory capacity: ``"<n>Ki"`` (rounded down to KiB)."""
    return f"{count // 1024}Ki"


def compute_node_labels(node_name: str, info: NodeInfo) -> dict[str, str]:
    """Labels the handler owns on its Node (see module docstring); feature names as libvirt
    spells them."""
    labels = {
        SCHEDULABLE_LABEL: "true",
        "kubernetes.io/hostname": node_name,
        "kubernetes.io/arch": _ARCH.get(info.arch, info.arch),
        "kubernetes.io/os": "linux",
    }
    if info.cpu_model:
        labels[f"cpu-model.node.kubevirt.io/{info.cpu_model}"] = "true"
        labels[f"host-model-cpu.node.kubevirt.io/{info.cpu_model}"] = "true"
    if info.cpu_vendor:
        labels[f"cpu-vendor.node.kubevirt.io/{info.cpu_vendor}"] = "true"
    for feature in info.cpu_features:
        labels[f"cpu-feature.node.kubevirt.io/{feature}"] = "true"
    return labels


def compute_node_addresses(node_name: str, internal_ip: str) -> list[dict[str, str]]:
    """``status.addresses`` of the Node: ``[{"type": "InternalIP", "address": internal_ip},
    {"type": "Hostname", "address": node_name}]``, kubelet's order (Kubernetes
    pkg/kubelet/nodestatus ``NodeAddress``: the node IP first, then the host name). The handler's
    ``internal_ip`` is its ``--migration-address``, the address other nodes reach it on (a host's
    bridge address under ``virtctl up --hosts``; 127.0.0.1 when everything runs on one machine),
    which is what ``kubectl get nodes -o wide`` shows as INTERNAL-IP."""
    return [{"type": "InternalIP", "address": internal_ip}, {"type": "Hostname", "address": node_name}]


def compute_node(existing: dict | None, node_name: str, info: NodeInfo, now: datetime,
                 *, ready: bool = True, annotations: dict[str, str] | None = None,
                 drop_annotations: Iterable[str] = (), internal_ip: str = "127.0.0.1") -> dict:
    """The Node to store: ``existing`` (or a new object) with the handler's labels, heartbeat,
    capacity, Ready condition, addresses (:func:`compute_node_addresses` of ``internal_ip``) and
    ``annotations`` (the migration URI, the VMI state directory, the fence deadline) applied and
    ``drop_annotations`` removed; everything else in ``existing`` is kept."""
    node = dict(existing or {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name}, "spec": {}})
    meta = dict(node.get("metadata") or {})
    labels = {k: v for k, v in (meta.get("labels") or {}).items()
              if not k.startswith(("cpu-model.node.kubevirt.io/", "host-model-cpu.node.kubevirt.io/",
                                   "cpu-vendor.node.kubevirt.io/", "cpu-feature.node.kubevirt.io/"))}
    labels.update(compute_node_labels(node_name, info))
    meta["labels"] = labels
    stamp = format_time(now)
    dropped = set(drop_annotations)
    meta["annotations"] = {k: v for k, v in {**(meta.get("annotations") or {}), **(annotations or {}),
                                             HEARTBEAT_ANNOTATION: stamp}.items() if k not in dropped}
    node["metadata"] = meta
    status = dict(node.get("status") or {})
    capacity = {"cpu": str(info.cpus), "memory": format_memory(info.memory_bytes),
                "pods": MAX_PODS}
    status["capacity"] = capacity
    status["allocatable"] = dict(capacity)
    old_ready = next((c for c in status.get("conditions") or [] if c.get("type") == ConditionType.READY), None)
    ready_status = ConditionStatus.TRUE if ready else ConditionStatus.FALSE
    ready_cond = {
        "type": ConditionType.READY, "status": ready_status,
        "reason": "KubeletReady" if ready else "KubeletNotReady",
        "message": "virt-handler is posting ready status" if ready else "virt-handler stopped",
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": (old_ready or {}).get("lastTransitionTime", stamp)
        if (old_ready or {}).get("status") == ready_status else stamp,
    }
    others = [c for c in status.get("conditions") or [] if c.get("type") != ConditionType.READY]
    status["conditions"] = [*others, ready_cond]
    status["nodeInfo"] = {"architecture": _ARCH.get(info.arch, info.arch), "operatingSystem": "linux",
                          "kernelVersion": platform.release(), "osImage": platform.platform(),
                          "kubeletVersion": "kubevirt-py", "machineID": "", "systemUUID": ""}
    status["addresses"] = compute_node_addresses(node_name, internal_ip)
    node["status"] = status
    return node


async def apply_node_status(store, node_name: str, info: NodeInfo, *, now: datetime | None = None,
                            ready: bool = True, attempts: int = 5, annotations: dict[str, str] | None = None,
                            drop_annotations: Iterable[str] = (), internal_ip: str = "127.0.0.1") -> dict:
    """Create or update the Node (compare-and-swap on its resourceVersion, re-read on conflict;
    ``compute_node`` says what changes; ``internal_ip``: its InternalIP address). Returns the
    stored Node. Raises ``shared.errors.Conflict`` after ``attempts`` lost races."""
    drop_annotations = tuple(drop_annotations)
    for _ in range(attempts):
        moment = now or _now()
        try:
            existing = await store.get(NODES, None, node_name)
        except NotFound:
            try:
                return await store.create(NODES, compute_node(None, node_name, info, moment, ready=ready,
                                                              annotations=annotations,
                                                              drop_annotations=drop_annotations,
                                                              internal_ip=internal_ip), namespaced=False)
            except (AlreadyExists, Conflict):  # someone created it meanwhile
                continue
        updated = compute_node(existing, node_name, info, moment, ready=ready, annotations=annotations,
                               drop_annotations=drop_annotations, internal_ip=internal_ip)
        try:
            return await store.update(NODES, updated, has_status_subresource=False)
        except Conflict:
            continue
    raise Conflict(f"could not update node {node_name}: too many concurrent writers")


REGISTER_TIMEOUT = 30.0
"""Seconds the first heartbeat (the Node's registration) may take."""


class NodeHeartbeat:
    """Registers the Node, then renews its heartbeat every ``interval`` seconds until stopped.

    ``info`` is read again from libvirt at every beat (capacity may change, e.g. memory
    hot-plug); a failed beat is logged and retried at the next interval; a beat that takes
    longer than ``max(interval, 1)`` seconds counts as failed. ``last_beat`` is the monotonic
    start of the last beat the store acknowledged (what the self-fence measures from).
    """

    def __init__(self, store, node_name: str, read_info: Callable, *, interval: float = 5.0,
                 clock: Callable[[], datetime] = _now, annotations: dict[str, str] | None = None,
                 monotonic: Callable[[], float] = time.monotonic, internal_ip: str = "127.0.0.1"):
        self.store = store
        self.internal_ip = internal_ip
        self.node_name = node_name
        self.read_info = read_info
        self.interval = interval
        self.clock = clock
        self.annotations = annotations
        self.monotonic = monotonic
        self.beats = 0
        self.last_beat = monotonic()

    async def beat(self, *, drop_annotations: Iterable[str] = (), timeout: float | None = None) -> dict:
        """One heartbeat write, bounded by ``timeout`` seconds (default ``max(interval, 1)``);
        raises on failure (including ``TimeoutError``)."""
        started = self.monotonic()
        async with asyncio.timeout(timeout if timeout is not None else max(self.interval, 1.0)):
            node = await apply_node_status(self.store, self.node_name, await self.read_info(), now=self.clock(),
                                           annotations=self.annotations, drop_annotations=drop_annotations,
                                           internal_ip=self.internal_ip)
        self.last_beat = max(self.last_beat, started)
        self.beats += 1
        return node

    async def register(self, timeout: float = REGISTER_TIMEOUT) -> dict:
        """First beat, bounded by ``timeout`` seconds rather than the interval: it may wait for a
        fresh libvirtd's first capabilities probe and for the Node bucket to be created (three
        servers agreeing on a replicated stream). Raises on failure (a handler that cannot
        register must not start)."""
        return await self.beat(timeout=timeout)

    async def run(self) -> None:
        """Beat forever (cancel the task to stop)."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - keep beating through transient store/libvirt failures
                log.warning("heartbeat of node %s failed: %s", self.node_name, str(err) or type(err).__name__)


def default_node_name() -> str:
    """The host name, as kubelet names its node when nothing else is given."""
    return os.environ.get("NODE_NAME") or socket.gethostname()
