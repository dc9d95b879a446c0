"""virtctl migrate / migrate-cancel.

``migrate VM`` sends KubeVirt's ``PUT .../virtualmachines/VM/migrate`` (``MigrateOptions``:
``--addedNodeSelector k=v,...``, ``--dry-run``) and prints KubeVirt virtctl's line "VM VM was
scheduled to migrate". With ``--wait`` it then follows the VMIM that call created — by a watch
on it — printing each phase change and the live progress (memory transferred and remaining,
iteration, rate: a progress bar when stdout is a terminal, lines otherwise), and at the end
QEMU's measured downtime and the total time; a failed or cancelled migration exits 1 with one
line (its failure reason). ``migrate-cancel VM`` deletes the VMIM in flight for the VM's VMI
(KubeVirt's: the first non-final VMIM labelled ``kubevirt.io/vmi-name=VM``), which cancels it.

Texts follow KubeVirt ``pkg/virtctl/vm/migrate.go`` and ``migrate_cancel.go``. What is printed
while waiting is :mod:`services.virtctl.migration_progress`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import click

from services.virtctl.client import ApiClient, resource_path
from services.virtctl.main import cli, client_options, resolve_kubeconfig, selected_namespace
from services.virtctl.migration_progress import (
    FollowState,
    compute_follow_step,
    compute_total_seconds,
    compute_outcome,
    phase_of,
)
from shared import errors
from shared.api.migration_vocabulary import VMI_NAME_LABEL, is_final_migration_phase
from shared.api.vocabulary import utc_now

SUBRESOURCES = "subresources.kubevirt.io"
VMIMS = "virtualmachineinstancemigrations"
#: The watch's ``timeoutSeconds``: the server ends it then and the follower opens the next one.
WATCH_SECONDS = 300
#: Seconds the follower keeps re-opening its watch while the API answers 503 (a virt-api
#: replica or a store leader changing); the migration itself goes on meanwhile.
UNAVAILABLE_RETRY_SECONDS = 60.0
#: Seconds between those attempts.
UNAVAILABLE_RETRY_INTERVAL = 1.0


def parse_node_selector(text: str | None) -> dict[str, str]:
    """``"k=v,k2=v2"`` -> ``{"k": "v", "k2": "v2"}`` (cobra's StringToString); click.BadParameter
    for an item without ``=``."""
    selector: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} must be formatted as key=value", param_hint="--addedNodeSelector")
        selector[key.strip()] = value.strip()
    return selector


def compute_new_migration(before: set[str], items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The VMIM created since ``before`` (uids listed before the request): the newest of the others."""
    fresh = [i for i in items if (i.get("metadata") or {}).get("uid") not in before]
    fresh.sort(key=lambda i: ((i["metadata"].get("creationTimestamp") or ""), i["metadata"]["name"]))
    return fresh[-1] if fresh else None


class Display:
    """Where the follower writes: plain lines, or (on a terminal, with ``rich`` installed: the
    project's optional ``cli`` extra) lines above a progress bar."""

    def __init__(self, terminal: bool) -> None:
        self.progress: Any = None
        self.task: Any = None
        if terminal:
            try:
                from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
            except ImportError:  # the optional "cli" extra is not installed: plain lines
                return
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                     TextColumn("{task.fields[detail]}"), transient=True)

    def __enter__(self) -> Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text)

    def update(self, detail: str | None, bar: tuple[int, int] | None) -> None:
        if self.progress is None or bar is None:
            if detail is not None:
                self.line(f"  progress: {detail}")
            return
        done, total = bar
        if self.task is None:
            self.task = self.progress.add_task("memory", total=total, detail="")
        self.progress.update(self.task, completed=done, total=total,
                             **({"detail": detail} if detail is not None else {}))


async def _follow(api: ApiClient, path: str, vmim: dict[str, Any], rv: str, display: Display) -> dict[str, Any]:
    """Show ``vmim``'s phases and progress until it is final; returns the final object.

    One watch (``fieldSelector`` on the name) carries every change; it is reopened only when it
    really ends (the server's ``timeoutSeconds``), from the last resourceVersion seen — or, when
    that version is too old (410 Gone), from a fresh read of the VMIM. While the API is
    unavailable (503, unreachable) it is re-opened every :data:`UNAVAILABLE_RETRY_INTERVAL` s for up to
    :data:`UNAVAILABLE_RETRY_SECONDS`; then that error is raised."""
    name = vmim["metadata"]["name"]
    state = FollowState()
    current = vmim

    def show(obj: dict[str, Any]) -> bool:
        nonlocal state
        step = compute_follow_step(state, obj, utc_now())
        state = step.state
        for text in step.phase_lines:
            display.line(text)
        display.update(step.detail, step.bar)
        return is_final_migration_phase(phase_of(obj))

    if show(current):
        return current
    unavailable_since: float | None = None
    loop = asyncio.get_running_loop()
    while True:
        params = {"fieldSelector": f"metadata.name={name}", "resourceVersion": rv,
                  "timeoutSeconds": str(WATCH_SECONDS)}
        try:
            async with contextlib.aclosing(api.watch(path, params)) as events:
                async for event in events:
                    unavailable_since = None
                    obj = event.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    kind = event.get("type")
                    if kind == "DELETED" and not is_final_migration_phase(phase_of(obj)):
                        raise click.ClickException(f"migration {name} was deleted before it ended "
                                                   f"(last phase {phase_of(current) or 'unset'})")
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        current = obj
                        if show(current):
                            return current
        except errors.Gone:
            current = await api.get(f"{path}/{name}")
            rv = current["metadata"]["resourceVersion"]
            if show(current):
                return current
        except errors.ServiceUnavailable:
            unavailable_since = loop.time() if unavailable_since is None else unavailable_since
            if loop.time() - unavailable_since > UNAVAILABLE_RETRY_SECONDS:
                raise
            await asyncio.sleep(UNAVAILABLE_RETRY_INTERVAL)


async def _migrate(ctx_values: dict[str, Any], name: str, body: dict[str, Any], wait: bool,
                   timeout: float) -> None:
    async with ApiClient.from_kubeconfig(ctx_values["kubeconfig"]) as api:
        ns = ctx_values["namespace"] or api.namespace
        vmims = resource_path("kubevirt.io", "v1", VMIMS, ns)
        selector = {"labelSelector": f"{VMI_NAME_LABEL}={name}"}
        before = {i["metadata"]["uid"] for i in (await api.get(vmims, selector))["items"]} if wait else set()
        try:
            await api.put(resource_path(SUBRESOURCES, "v1", "virtualmachines", ns, name, "migrate"), body)
        except errors.ApiError as err:
            raise click.ClickException(f"Error migrating VirtualMachine {err.message}") from None
        if body.get("dryRun"):
            click.echo("Dry Run execution")
        click.echo(f"VM {name} was scheduled to migrate")
        if not wait or body.get("dryRun"):
            return
        listed = await api.get(vmims, selector)
        vmim = compute_new_migration(before, listed["items"])
        if vmim is None:
            raise click.ClickException(f"cannot find the migration created for VM {name}")
        click.echo(f"Following migration {vmim['metadata']['name']} (Ctrl-C stops following, not the migration)")
        try:
            with Display(sys.stdout.isatty()) as display:
                async with asyncio.timeout(timeout):
                    final = await _follow(api, vmims, vmim, listed["metadata"]["resourceVersion"], display)
        except TimeoutError:
            raise click.ClickException(
                f"timed out after {timeout:g}s waiting for migration {vmim['metadata']['name']}") from None
        outcome = compute_outcome(final, compute_total_seconds(final, utc_now()))
        assert outcome is not None
        if not outcome.ok:
            raise click.ClickException(outcome.message)
        click.echo(outcome.message)


@cli.command()
@client_options
@click.argument("name")
@click.option("--addedNodeSelector", "added_node_selector", default=None, metavar="KEY=VALUE,...",
              help="Extra node selector for this one migration (it can only narrow the VM's own placement).")
@click.option("--dry-run", is_flag=True, help="Check only; create nothing.")
@click.option("--wait", is_flag=True, help="Follow the migration until it ends: phases, progress, downtime.")
@click.option("--timeout", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="With --wait: seconds to follow before giving up (the migration itself goes on).")
@click.pass_context
def migrate(ctx: click.Context, name: str, added_node_selector: str | None, dry_run: bool, wait: bool,
            timeout: float) -> None:
    """Migrate a VirtualMachine's running guest to another node."""
    body: dict[str, Any] = {}
    selector = parse_node_selector(added_node_selector)
    if selector:
        body["addedNodeSelector"] = selector
    if dry_run:
        body["dryRun"] = ["All"]
    values = {"kubeconfig": resolve_kubeconfig(ctx), "namespace": selected_namespace(ctx)}
    asyncio.run(_migrate(values, name, body, wait, timeout))


async def _cancel(kubeconfig: Any, namespace: str | None, name: str, dry_run: bool) -> None:
    async with ApiClient.from_kubeconfig(kubeconfig) as api:
        ns = namespace or api.namespace
        vmims = resource_path("kubevirt.io", "v1", VMIMS, ns)
        try:
            listed = await api.get(vmims, {"labelSelector": f"{VMI_NAME_LABEL}={name}"})
        except errors.ApiError as err:
            raise click.ClickException(f"Error fetching virtual machine instance migration list  {err.message}") \
                from None
        for item in listed["items"]:
            if is_final_migration_phase(phase_of(item)):
                continue
            mig = item["metadata"]["name"]
            try:
                await api.delete(f"{vmims}/{mig}", {"dryRun": ["All"]} if dry_run else None)
            except errors.ApiError as err:
                raise click.ClickException(
                    f"Error canceling migration {mig} of a VirtualMachine {name}: {err.message}") from None
            return
        raise click.ClickException(f"Found no migration to cancel for {name}")


@cli.command(name="migrate-cancel")
@client_options
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Check only; delete nothing.")
@click.pass_context
def migrate_cancel(ctx: click.Context, name: str, dry_run: bool) -> None:
    """Cancel the migration in flight of a VirtualMachine (deletes its VMIM)."""
    asyncio.run(_cancel(resolve_kubeconfig(ctx), selected_namespace(ctx), name, dry_run))
    click.echo(f"VM {name} was scheduled to migrate-cancel")
