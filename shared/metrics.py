"""Prometheus metrics of every kubevirt-py service, with KubeVirt's names where KubeVirt has them.

Owns: the metric objects (one process-wide ``prometheus_client`` registry, the library's default
``REGISTRY``, so the process and platform collectors come along), the VMI phase-count collector,
the workqueue / store / NATS instruments (virt-api's request metrics are
:mod:`shared.request_metrics`), and :func:`apply_metrics_route`, which mounts ``GET /metrics``
(text exposition format 0.0.4) on an aiohttp application.

Names and buckets come from KubeVirt (``pkg/monitoring/metrics/*``, kubevirt-api.md §11,
performance-anchors.md §1b). kubevirt-py's own instruments (store and NATS latency) use the
``kubevirt_`` prefix too so one scrape job matches them all. Nothing here invents values: a
metric is only set where a real measurement exists.
"""

from __future__ import annotations

import weakref
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: KubeVirt's ``PhaseTransitionTimeBuckets`` (seconds), pkg/monitoring/metrics/virt-controller/metrics.go.
PHASE_TRANSITION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 40, 50, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600)
#: Latency buckets (seconds) for in-process queue, store and NATS timings: 0.5 ms .. 10 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Labels of ``kubevirt_vmi_phase_count`` (KubeVirt's, minus the guest-agent ones we do not read).
PHASE_COUNT_LABELS = ("node", "phase", "os", "workload", "flavor", "instance_type", "preference")

# -- virt-controller: VMI phase transitions (perfscale metrics) ---------------------------------------
VMI_PHASE_TRANSITION_FROM_CREATION = Histogram(
    "kubevirt_vmi_phase_transition_time_from_creation_seconds",
    "Histogram of VM phase transitions duration from creation time in seconds.",
    ["phase"], buckets=PHASE_TRANSITION_BUCKETS,
)
VMI_PHASE_TRANSITION = Histogram(
    "kubevirt_vmi_phase_transition_time_seconds",
    "Histogram of VM phase transitions duration between different phases in seconds.",
    ["phase", "last_phase"], buckets=PHASE_TRANSITION_BUCKETS,
)
VMI_PHASE_TRANSITION_FROM_DELETION = Histogram(
    "kubevirt_vmi_phase_transition_time_from_deletion_seconds",
    "Histogram of VM phase transitions duration from deletion time in seconds.",
    ["phase"], buckets=PHASE_TRANSITION_BUCKETS,
)
CONTROLLER_LEADING = Gauge(
    "kubevirt_virt_controller_leading_status",
    "Indication for an operating virt-controller (1 = leading).", ["identity"],
)
CONTROLLER_READY = Gauge(
    "kubevirt_virt_controller_ready_status",
    "Indication for a virt-controller that is ready to take the lead (caches synced).", ["identity"],
)

# -- workqueues (client-go's workqueue metrics, KubeVirt prefix) ---------------------------------------
WORKQUEUE_DEPTH = Gauge("kubevirt_workqueue_depth", "Current depth of workqueue.", ["name"])
WORKQUEUE_ADDS = Counter("kubevirt_workqueue_adds", "Total number of adds handled by workqueue.", ["name"])
WORKQUEUE_RETRIES = Counter("kubevirt_workqueue_retries", "Total number of retries handled by workqueue.",
                            ["name"])
WORKQUEUE_QUEUE_DURATION = Histogram(
    "kubevirt_workqueue_queue_duration_seconds",
    "How long in seconds an item stays in workqueue before being requested.", ["name"], buckets=LATENCY_BUCKETS,
)
WORKQUEUE_WORK_DURATION = Histogram(
    "kubevirt_workqueue_work_duration_seconds",
    "How long in seconds processing an item from workqueue takes.", ["name"], buckets=LATENCY_BUCKETS,
)

# -- store and NATS ------------------------------------------------------------------------------------
STORE_OPERATION_DURATION = Histogram(
    "kubevirt_store_operation_duration_seconds",
    "Duration of one object-store operation on NATS JetStream KV, retries included.",
    ["operation", "outcome"], buckets=LATENCY_BUCKETS,
)
NATS_REQUEST_DURATION = Histogram(
    "kubevirt_nats_request_duration_seconds",
    "Round trip of one NATS request/reply (one JetStream API call attempt).",
    ["outcome"], buckets=LATENCY_BUCKETS,
)

# -- virt-api: apiserver_request_total and apiserver_request_duration_seconds are shared.request_metrics' --

# -- virt-handler: per-VMI statistics from libvirt ---------------------------------------------------------
VMI_LABELS = ("node", "namespace", "name")
VMI_STAT_COUNTERS: dict[str, tuple[str, str]] = {
    # libvirt getAllDomainStats field -> (metric, help); values are cumulative in libvirt
    "cpu.time": ("kubevirt_vmi_cpu_usage_seconds_total", "Total CPU time spent in all modes (seconds)."),
    "cpu.user": ("kubevirt_vmi_cpu_user_usage_seconds_total", "Total CPU time spent in user mode (seconds)."),
    "cpu.system": ("kubevirt_vmi_cpu_system_usage_seconds_total", "Total CPU time spent in system mode (seconds)."),
    "vcpu.time": ("kubevirt_vmi_vcpu_seconds_total", "Total amount of time spent in each state by each vcpu."),
    "net.rx.bytes": ("kubevirt_vmi_network_receive_bytes_total", "Total network traffic received in bytes."),
    "net.tx.bytes": ("kubevirt_vmi_network_transmit_bytes_total", "Total network traffic transmitted in bytes."),
    "net.rx.pkts": ("kubevirt_vmi_network_receive_packets_total", "Total network traffic received packets."),
    "net.tx.pkts": ("kubevirt_vmi_network_transmit_packets_total", "Total network traffic transmitted packets."),
    "block.rd.bytes": ("kubevirt_vmi_storage_read_traffic_bytes_total", "Total number of bytes read from storage."),
    "block.wr.bytes": ("kubevirt_vmi_storage_write_traffic_bytes_total", "Total number of written bytes."),
    "block.rd.reqs": ("kubevirt_vmi_storage_iops_read_total", "Total number of I/O read operations."),
    "block.wr.reqs": ("kubevirt_vmi_storage_iops_write_total", "Total number of I/O write operations."),
}
VMI_STAT_GAUGES: dict[str, tuple[str, str]] = {
    "balloon.rss": ("kubevirt_vmi_memory_resident_bytes", "Resident set size of the process running the domain."),
    "balloon.current": ("kubevirt_vmi_memory_domain_bytes", "The amount of memory in bytes allocated to the domain."),
    "balloon.available": ("kubevirt_vmi_memory_available_bytes", "Amount of usable memory as seen by the domain."),
    "balloon.unused": ("kubevirt_vmi_memory_unused_bytes", "The amount of memory left completely unused."),
}


class PhaseSource(Protocol):
    """Something that can tell the VMIs to count (a leading virt-controller's cache)."""

    def metric_vmis(self) -> Iterable[dict[str, Any]] | None:
        """The VMIs to count, or None when this source must not report (a standby replica)."""


def compute_phase_count_labels(vmi: dict[str, Any]) -> tuple[str, ...]:
    """The ``kubevirt_vmi_phase_count`` label values of one VMI, in :data:`PHASE_COUNT_LABELS` order.

    ``os``/``workload``/``flavor`` come from the ``kubevirt.io/os`` / ``workload`` / ``flavor``
    annotations (KubeVirt's ``vm.kubevirt.io/*`` template annotations, then labels), "<none>" when
    absent, as KubeVirt reports them; ``phase`` is lower-cased as in KubeVirt's collector."""
    meta = vmi.get("metadata") or {}
    status = vmi.get("status") or {}
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}

    def pick(*keys: str) -> str:
        for source in (annotations, labels):
            for key in keys:
                if source.get(key):
                    return str(source[key])
        return "<none>"

    return (
        status.get("nodeName") or "",
        (status.get("phase") or "Pending").lower(),
        pick("vm.kubevirt.io/os", "kubevirt.io/os"),
        pick("vm.kubevirt.io/workload", "kubevirt.io/workload"),
        pick("vm.kubevirt.io/flavor", "kubevirt.io/flavor"),
        pick("kubevirt.io/cluster-instancetype-name", "kubevirt.io/instancetype-name"),
        pick("kubevirt.io/cluster-preference-name", "kubevirt.io/preference-name"),
    )


class SourcedCollector(Collector):
    """A collector whose families are computed at scrape time from the objects registered with it
    (weakly held: a stopped controller simply disappears). Subclasses implement ``collect``."""

    def __init__(self) -> None:
        self.sources: "weakref.WeakSet[Any]" = weakref.WeakSet()

    def register(self, source: Any) -> None:
        """Report ``source`` while it lives."""
        self.sources.add(source)

    def unregister(self, source: Any) -> None:
        """Stop reporting ``source`` (no-op when it was not registered)."""
        self.sources.discard(source)

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # collected lazily: never call collect() at registration time


class _PhaseCountCollector(SourcedCollector):
    """``kubevirt_vmi_phase_count``: VMIs per label set, counted at scrape time from every live
    registered :class:`PhaseSource`."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("kubevirt_vmi_phase_count", "Sum of VMIs per phase and node.",
                                   labels=list(PHASE_COUNT_LABELS))
        tally: Tally[tuple[str, ...]] = Tally()
        for source in list(self.sources):
            vmis = source.metric_vmis()
            if vmis is None:
                continue
            tally.update(compute_phase_count_labels(v) for v in vmis)
        for labels, count in sorted(tally.items()):
            family.add_metric(list(labels), count)
        yield family


_PHASE_COUNT = _PhaseCountCollector()
REGISTRY.register(_PHASE_COUNT)


def register_phase_source(source: PhaseSource) -> None:
    """Count ``source.metric_vmis()`` in ``kubevirt_vmi_phase_count`` while ``source`` lives."""
    _PHASE_COUNT.register(source)


def unregister_phase_source(source: PhaseSource) -> None:
    """Stop counting ``source`` (no-op when it was not registered)."""
    _PHASE_COUNT.unregister(source)


class _VmiStatsCollector(Collector):
    """Per-VMI libvirt statistics: each registered callable returns
    ``{(node, namespace, name): {libvirt_stat_field: value}}`` (cpu/vcpu times in nanoseconds,
    summed over vCPUs / NICs / disks by the caller); collected at scrape time."""

    def __init__(self) -> None:
        self.sources: list[Callable[[], dict[tuple[str, str, str], dict[str, float]]]] = []

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily

        samples: dict[tuple[str, str, str], dict[str, float]] = {}
        for source in list(self.sources):
            try:
                samples.update(source())
            except Exception:  # noqa: BLE001 - a hypervisor that cannot answer yields no samples
                continue
        for field, (name, doc) in VMI_STAT_COUNTERS.items():
            fam = CounterMetricFamily(name.removesuffix("_total"), doc, labels=list(VMI_LABELS))
            scale = 1e-9 if field in ("cpu.time", "cpu.user", "cpu.system", "vcpu.time") else 1.0
            for labels, stats in sorted(samples.items()):
                if field in stats:
                    fam.add_metric(list(labels), stats[field] * scale)
            yield fam
        for field, (name, doc) in VMI_STAT_GAUGES.items():
            gauge = GaugeMetricFamily(name, doc, labels=list(VMI_LABELS))
            scale = 1024.0  # libvirt reports balloon sizes in KiB
            for labels, stats in sorted(samples.items()):
                if field in stats:
                    gauge.add_metric(list(labels), stats[field] * scale)
            yield gauge

    def describe(self) -> Iterable[Any]:
        return []


_VMI_STATS = _VmiStatsCollector()
REGISTRY.register(_VMI_STATS)


def register_vmi_stats_source(source: Callable[[], dict[tuple[str, str, str], dict[str, float]]]) -> None:
    """Add a per-VMI statistics source (a virt-handler's hypervisor reader)."""
    _VMI_STATS.sources.append(source)


def unregister_vmi_stats_source(source: Callable[[], dict[tuple[str, str, str], dict[str, float]]]) -> None:
    """Remove a source added with :func:`register_vmi_stats_source` (no-op when absent)."""
    if source in _VMI_STATS.sources:
        _VMI_STATS.sources.remove(source)


# -- helpers used by the instrumented code ----------------------------------------------------------------
def observe_phase_transition(old: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
    """Record the phase-transition histograms when ``new`` (a VMI) is in a different phase than
    ``old``; returns the new phase or None when nothing changed. Values come from the VMI's own
    ``status.phaseTransitionTimestamps`` and ``metadata.creationTimestamp`` (as KubeVirt's
    ``perfscale_metrics.go`` does), so they are exact regardless of when the watch delivers."""
    old_phase = ((old or {}).get("status") or {}).get("phase") or ""
    status = new.get("status") or {}
    phase = status.get("phase") or ""
    if not phase or phase == old_phase or old is None:
        return None
    stamps = {t.get("phase"): t.get("phaseTransitionTimestamp") for t in status.get("phaseTransitionTimestamps") or []}
    at = parse_timestamp(stamps.get(phase))
    if at is None:
        return phase
    meta = new.get("metadata") or {}
    created = parse_timestamp(meta.get("creationTimestamp"))
    if created is not None:
        VMI_PHASE_TRANSITION_FROM_CREATION.labels(phase).observe(max(at - created, 0.0))
    before = parse_timestamp(stamps.get(old_phase)) if old_phase else None
    if before is not None:
        VMI_PHASE_TRANSITION.labels(phase, old_phase).observe(max(at - before, 0.0))
    deleted = parse_timestamp(meta.get("deletionTimestamp"))
    if deleted is not None:
        VMI_PHASE_TRANSITION_FROM_DELETION.labels(phase).observe(max(at - deleted, 0.0))
    return phase


def parse_timestamp(text: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (``Z`` or offset; micro precision), or None."""
    if not text:
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def compute_metrics_text() -> bytes:
    """The current exposition text of every registered metric."""
    return generate_latest(REGISTRY)


async def _metrics_handler(request: web.Request) -> web.Response:
    body = compute_metrics_text()
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def apply_metrics_route(app: web.Application, path: str = "/metrics") -> None:
    """Mount ``GET path`` serving the Prometheus text format on ``app`` (before it starts)."""
    app.router.add_get(path, _metrics_handler)


async def apply_metrics_server(port: int, host: str = "127.0.0.1",
                               extra_routes: Callable[[web.Application], object] | None = None) -> web.AppRunner:
    """Start an aiohttp server on ``host:port`` serving ``/metrics`` (and ``/healthz``: ok), plus
    whatever ``extra_routes(app)`` adds. Returns the runner; ``await runner.cleanup()`` stops it."""
    app = web.Application()
    apply_metrics_route(app)
    if extra_routes is not None:
        extra_routes(app)
    if not any(r.resource is not None and r.resource.canonical == "/healthz" for r in app.router.routes()):
        app.router.add_get("/healthz", _ok)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")
