"""The cluster-wide settings admission defaults from: KubeVirt's ``spec.configuration`` values
that matter at admission time, with KubeVirt's code defaults (pkg/virt-config/virt-config.go,
kubevirt-api.md §6.1).

Deliberate differences: ``memory_hotplug`` is off (see ClusterConfig), and the ``HostDisk`` feature
gate (Alpha, off in KubeVirt) is on, so KubeVirt's own ``vmi-host-disk.yaml`` example is accepted on
this single-host installation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MACHINE_TYPES: dict[str, str] = {"amd64": "q35", "arm64": "virt", "s390x": "s390-ccw-virtio"}
"""Default ``domain.machine.type`` per architecture."""

EMULATED_MACHINES: dict[str, tuple[str, ...]] = {
    "amd64": ("q35*", "pc-q35*"),
    "arm64": ("virt*",),
    "s390x": ("s390-ccw-virtio*",),
}
"""Accepted ``domain.machine.type`` globs per architecture (``emulatedMachines``)."""


@dataclass(frozen=True)
class ClusterConfig:
    """KubeVirt configuration seen by admission.

    ``default_network_interface`` is the binding of the default pod interface (``bridge``,
    or ``masquerade``); ``eviction_strategy`` None leaves VMIs without one;
    ``vm_rollout_strategy`` ``LiveUpdate`` sets the CPU hotplug ceiling ``maxSockets`` with
    ``max_hotplug_ratio``; the memory ceiling ``maxGuest`` only with ``memory_hotplug`` (off
    here: KubeVirt sets it for guests of 1Gi or more, but the memory-hotplug domain layout is
    not worth its cost for TCG guests on one host)."""

    architecture: str = "amd64"
    cpu_model: str = "host-model"
    default_network_interface: str = "bridge"
    permit_bridge_interface_on_pod_network: bool = True
    eviction_strategy: str | None = None
    vm_rollout_strategy: str = "LiveUpdate"
    max_hotplug_ratio: int = 4
    memory_hotplug: bool = False
    feature_gates: frozenset[str] = field(default_factory=lambda: frozenset({"HostDisk"}))

    def machine_type(self, architecture: str) -> str:
        """Default machine type for ``architecture``."""
        return MACHINE_TYPES.get(architecture, MACHINE_TYPES["amd64"])

    def is_enabled(self, gate: str) -> bool:
        """Whether feature gate ``gate`` is on."""
        return gate in self.feature_gates


DEFAULT_CLUSTER = ClusterConfig()
