"""virtctl trace: an object's recent operations as a waterfall, from the installation's trace store.

``virtctl trace vm/<name>`` reads the object's ``kubevirt-py.io/trace-id`` annotation (a VM's
VMI too, when it records another trace; a VMI recording none falls back to its controlling VM;
``vmim/<name>``, a migration, has one trace of its own: virt-api's create, virt-migration's
phases, scheduler-bridge's placement, both nodes' handlers and their libvirt calls; so do
``vmsnapshot/<name>`` — virt-snapshot's reconciles, the freeze, each volume copy and the thaw on
the node — and ``vmrestore/<name>``)
and that trace's spans from the JetStream trace stream
(:mod:`shared.trace_store`), and prints one line per span: start offset and duration in
milliseconds, a bar, the service, the span name indented under its parent, the status, and the
error message of failed spans. ``--export FILE`` writes the spans as one OTLP JSON document
(Jaeger and Tempo import it). Both the object and the spans are read from the installation's
NATS (``--nats``, default: the one recorded in ``<state-dir>/installation.json``).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from services.virtctl.main import cli, client_options, default_state_dir, selected_namespace, state_dir_option
from shared import trace_store, tracing

#: accepted kind spellings -> store plural (kubectl/virtctl style short names)
KINDS = {
    "vm": "virtualmachines", "vms": "virtualmachines", "virtualmachine": "virtualmachines",
    "virtualmachines": "virtualmachines",
    "vmi": "virtualmachineinstances", "vmis": "virtualmachineinstances",
    "virtualmachineinstance": "virtualmachineinstances", "virtualmachineinstances": "virtualmachineinstances",
    "vmim": "virtualmachineinstancemigrations", "vmims": "virtualmachineinstancemigrations",
    "virtualmachineinstancemigration": "virtualmachineinstancemigrations",
    "virtualmachineinstancemigrations": "virtualmachineinstancemigrations",
    "vmsnapshot": "virtualmachinesnapshots", "vmsnapshots": "virtualmachinesnapshots",
    "virtualmachinesnapshot": "virtualmachinesnapshots", "virtualmachinesnapshots": "virtualmachinesnapshots",
    "vmrestore": "virtualmachinerestores", "vmrestores": "virtualmachinerestores",
    "virtualmachinerestore": "virtualmachinerestores", "virtualmachinerestores": "virtualmachinerestores",
}
BAR_WIDTH = 24
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


@dataclass(frozen=True)
class WaterfallRow:
    """One span as printed: offsets in milliseconds from the trace's first span start."""

    trace_id: str
    span_id: str
    depth: int
    service: str
    name: str
    offset_ms: float
    duration_ms: float
    status: str
    message: str


def parse_target(target: str) -> tuple[str, str]:
    """``vm/NAME`` -> (``virtualmachines``, NAME). Raises click.BadParameter on other forms."""
    kind, sep, name = target.partition("/")
    if not sep or not name or kind.lower() not in KINDS:
        raise click.BadParameter("expected <kind>/<name> with kind one of vm, vmi, vmim, vmsnapshot, vmrestore "
                                 f"(got {target!r})",
                                 param_hint="TARGET")
    return KINDS[kind.lower()], name


def compute_spans(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten OTLP JSON documents into span dicts with an added ``service`` key (from the
    resource's ``service.name``); duplicates (same span id) are dropped."""
    spans: dict[str, dict[str, Any]] = {}
    for document in documents:
        for resource_spans in document.get("resourceSpans") or []:
            service = "?"
            for attribute in (resource_spans.get("resource") or {}).get("attributes") or []:
                if attribute.get("key") == "service.name":
                    service = (attribute.get("value") or {}).get("stringValue", "?")
            for scope_spans in resource_spans.get("scopeSpans") or []:
                for span in scope_spans.get("spans") or []:
                    spans.setdefault(span["spanId"], {**span, "service": service})
    return list(spans.values())


def compute_waterfall(spans: list[dict[str, Any]]) -> list[WaterfallRow]:
    """Rows in tree order (children under their parent, siblings by start time); a span whose
    parent is not among ``spans`` is a root."""
    if not spans:
        return []
    by_id = {s["spanId"]: s for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span.get("parentSpanId") or None
        children.setdefault(parent if parent in by_id else None, []).append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: int(s["startTimeUnixNano"]))
    origin = min(int(s["startTimeUnixNano"]) for s in spans)
    rows: list[WaterfallRow] = []

    def visit(span: dict[str, Any], depth: int) -> None:
        start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
        status = span.get("status") or {}
        rows.append(WaterfallRow(span["traceId"], span["spanId"], depth, span["service"], span["name"],
                                 (start - origin) / 1e6, (end - start) / 1e6,
                                 _STATUS.get(int(status.get("code", 0)), "UNSET"), status.get("message", "")))
        for child in children.get(span["spanId"], []):
            visit(child, depth + 1)

    for root in children.get(None, []):
        visit(root, 0)
    return rows


def format_waterfall(rows: list[WaterfallRow]) -> str:
    """The rows as aligned text lines (header first)."""
    total = max((r.offset_ms + r.duration_ms for r in rows), default=0.0) or 1.0
    service_width = max([len("SERVICE")] + [len(r.service) for r in rows])
    name_width = max([len("SPAN")] + [2 * r.depth + len(r.name) for r in rows])
    # START is as wide as a row's "%8.1fms" offset (10), DURATION as its "%7.1fms" duration (9)
    lines = [f"{'START':>10} {'DURATION':>9}  {'':{BAR_WIDTH}}  {'SERVICE':{service_width}}  "
             f"{'SPAN':{name_width}}  STATUS"]
    for row in rows:
        first = int(row.offset_ms / total * BAR_WIDTH)
        length = max(1, round(row.duration_ms / total * BAR_WIDTH))
        bar = (" " * first + "#" * length)[:BAR_WIDTH]
        name = "  " * row.depth + row.name
        status = row.status + (f"  {row.message}" if row.status == "ERROR" and row.message else "")
        lines.append(f"{row.offset_ms:8.1f}ms {row.duration_ms:7.1f}ms  {bar:{BAR_WIDTH}}  "
                     f"{row.service:{service_width}}  {name:{name_width}}  {status}")
    return "\n".join(lines)


def default_nats_url(state_dir: Path) -> str:
    """NATS of the embedded installation in ``state_dir`` (its ``installation.json``)."""
    record = state_dir / "installation.json"
    try:
        return f"nats://127.0.0.1:{json.loads(record.read_text())['nats_port']}"
    except (OSError, ValueError, KeyError) as err:
        raise click.ClickException(f"no installation in {state_dir} ({err}); pass --nats") from None


def _controlling_vm(vmi: dict[str, Any]) -> dict[str, Any] | None:
    """The VirtualMachine ownerReference with ``controller: true`` of ``vmi``, or None."""
    for ref in (vmi.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "VirtualMachine":
            return ref
    return None


async def collect_trace_documents(nats_url: str, prefix: str, plural: str, namespace: str,
                                  name: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(trace ids recorded on the object — and on a VM's VMI; for a VMI recording none, on the VM
    controlling it; a VMIM's alone —, their OTLP JSON documents). Raises NotFound (shared.errors) when the
    object does not exist."""
    from shared.errors import NotFound
    from shared.store import ObjectStore
    store = await ObjectStore.connect([nats_url], bucket_prefix=prefix, name="virtctl-trace")
    try:
        objects = [await store.get(plural, namespace, name)]
        if plural == "virtualmachines":
            try:
                objects.append(await store.get("virtualmachineinstances", namespace, name))
            except NotFound:
                pass
        elif plural == "virtualmachineinstances" and tracing.trace_id_of(objects[0]) is None:
            # A VMI stamped by nothing (made by an older controller, or in a reconcile that had no
            # span) belongs to the latest operation on the VM that controls it.
            owner = _controlling_vm(objects[0])
            if owner is not None:
                try:
                    vm = await store.get("virtualmachines", namespace, owner["name"])
                except NotFound:
                    vm = None
                if vm is not None and vm["metadata"].get("uid") == owner.get("uid"):
                    objects.append(vm)
        trace_ids = list(dict.fromkeys(t for t in (tracing.trace_id_of(o) for o in objects) if t))
        documents: list[dict[str, Any]] = []
        for trace_id in trace_ids:
            documents += await trace_store.read_trace(store.bus, prefix, trace_id)
        return trace_ids, documents
    finally:
        await store.close()


@cli.command(name="trace")
@client_options
@click.argument("target")
@click.option("--nats", "nats_url", default=None, help="NATS URL [default: the installation's]")
@click.option("--bucket-prefix", default="kv_", show_default=True, help="Store bucket prefix of the installation.")
@click.option("--export", "export_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the spans as OTLP JSON to this file.")
@state_dir_option
@click.pass_context
def trace_command(ctx: click.Context, target: str, nats_url: str | None, bucket_prefix: str,
                  export_file: Path | None, state_dir: Path | None) -> None:
    """Show the recent operations on TARGET (vm/<name>, vmi/<name>, or one operation:
    vmim/<name>, vmsnapshot/<name>, vmrestore/<name>) as a waterfall of spans."""
    plural, name = parse_target(target)
    namespace = selected_namespace(ctx) or os.environ.get("NAMESPACE") or "default"
    url = nats_url or default_nats_url(state_dir or default_state_dir())
    trace_ids, documents = asyncio.run(collect_trace_documents(url, bucket_prefix, plural, namespace, name))
    if not trace_ids:
        raise click.ClickException(f"{target} records no trace (tracing off when it was last written?)")
    rows = compute_waterfall(compute_spans(documents))
    if not rows:
        raise click.ClickException(f"trace {', '.join(trace_ids)} of {target} has no spans in the trace store "
                                   "(aged out, or not exported yet)")
    for trace_id in trace_ids:
        click.echo(f"trace {trace_id}")
        click.echo(format_waterfall([r for r in rows if r.trace_id == trace_id]))
    if export_file is not None:
        export_file.write_text(json.dumps(trace_store.merge_otlp_documents(documents), indent=1) + "\n")
        click.echo(f"wrote {len(rows)} spans as OTLP JSON to {export_file}")
