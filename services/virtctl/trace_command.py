"""virtctl trace: an object's recent operations as a waterfall, read through virt-api.

``virtctl trace vm/<name>`` asks virt-api for the object's ``trace`` subresource
(``GET /apis/subresources.kubevirt.io/v1/namespaces/<ns>/<plural>/<name>/trace``), which answers
the trace ids recorded on the object (a VM's VMI too, when it records another trace; a VMI
recording none falls back to its controlling VM; ``vmim/<name>``, a migration, has one trace of
its own: virt-api's create, virt-migration's phases, scheduler-bridge's placement, both nodes'
handlers and their libvirt calls; so do ``vmsnapshot/<name>`` — virt-snapshot's reconciles, the
freeze, each volume copy and the thaw on the node — and ``vmrestore/<name>``) and those traces'
spans as stored in the installation's trace store (OTLP JSON documents, :mod:`shared.trace_store`).
It prints one line per span: start offset and duration in milliseconds, a bar, the service, the
span name indented under its parent, the status, and the error message of failed spans.
``--export FILE`` writes the spans as one OTLP JSON document (Jaeger and Tempo import it).
Like every client command it needs only a kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, else
``<state-dir>/kubeconfig``) and ``-n`` (default: the context's namespace); no NATS access.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from services.virtctl.client import ApiClient, resource_path
from services.virtctl.main import cli, client_options, resolve_kubeconfig, selected_namespace
from shared import trace_store

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
#: virt-api serves an object's traces as its ``trace`` subresource in this group
TRACE_GROUP = "subresources.kubevirt.io"
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


async def fetch_trace(kubeconfig: Path, namespace: str | None, plural: str,
                      name: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(trace ids recorded on the object, their OTLP JSON documents) from virt-api's ``trace``
    subresource (``services/virt_api/trace_subresource.py`` says which traces). ``namespace``
    None = the kubeconfig context's. Raises NotFound (shared.errors) when the object does not
    exist, Unauthorized, ServiceUnavailable when virt-api cannot be reached."""
    async with ApiClient.from_kubeconfig(kubeconfig) as api:
        body = await api.get(resource_path(TRACE_GROUP, "v1", plural, namespace or api.namespace, name, "trace"))
    return list(body.get("traceIds") or []), list(body.get("documents") or [])


@cli.command(name="trace")
@client_options
@click.argument("target")
@click.option("--export", "export_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the spans as OTLP JSON to this file.")
@click.pass_context
def trace_command(ctx: click.Context, target: str, export_file: Path | None) -> None:
    """Show the recent operations on TARGET (vm/<name>, vmi/<name>, or one operation:
    vmim/<name>, vmsnapshot/<name>, vmrestore/<name>) as a waterfall of spans."""
    plural, name = parse_target(target)
    trace_ids, documents = asyncio.run(fetch_trace(resolve_kubeconfig(ctx), selected_namespace(ctx), plural, name))
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
