"""virtctl start / stop / restart / pause / unpause / softreboot.

Each command sends one PUT to virt-api's ``subresources.kubevirt.io/v1`` path and prints
KubeVirt virtctl's confirmation (``VM vm1 was scheduled to start``); an error answer is printed
as its Status message in one line with exit code 1 (the group's error policy). Option rules are
KubeVirt virtctl's: ``stop --grace-period`` needs ``--force``; ``restart --force`` sends
``gracePeriodSeconds: 0``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import click

from services.virtctl.client import ApiClient, resource_path
from services.virtctl.main import cli, client_options, resolve_kubeconfig, selected_namespace

SUBRESOURCES = "subresources.kubevirt.io"


async def _put(kubeconfig: Any, namespace: str | None, plural: str, name: str, sub: str,
               body: dict[str, Any] | None) -> None:
    async with ApiClient.from_kubeconfig(kubeconfig) as api:
        ns = namespace or api.namespace
        await api.put(resource_path(SUBRESOURCES, "v1", plural, ns, name, sub), body)


def _send(ctx: click.Context, plural: str, name: str, sub: str, body: dict[str, Any] | None) -> None:
    namespace = selected_namespace(ctx)
    asyncio.run(_put(resolve_kubeconfig(ctx), namespace, plural, name, sub, body))
    if body and body.get("dryRun"):
        click.echo("Dry Run execution")  # KubeVirt's virtctl says so before the usual line


def _dry_run(body: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    if dry_run:
        body["dryRun"] = ["All"]
    return body


@cli.command()
@client_options
@click.argument("name")
@click.option("--paused", is_flag=True, help="Start the VM paused.")
@click.option("--dry-run", is_flag=True, help="Check only; change nothing.")
@click.pass_context
def start(ctx: click.Context, name: str, paused: bool, dry_run: bool) -> None:
    """Start a VirtualMachine."""
    body = _dry_run({"paused": True} if paused else {}, dry_run)
    _send(ctx, "virtualmachines", name, "start", body)
    click.echo(f"VM {name} was scheduled to start")


@cli.command()
@client_options
@click.argument("name")
@click.option("--grace-period", type=int, default=-1, show_default=True,
              help="Seconds the guest gets to shut down (needs --force); 0 = immediately.")
@click.option("--force", is_flag=True, help="Stop with the given --grace-period.")
@click.option("--dry-run", is_flag=True, help="Check only; change nothing.")
@click.pass_context
def stop(ctx: click.Context, name: str, grace_period: int, force: bool, dry_run: bool) -> None:
    """Stop a VirtualMachine."""
    if grace_period != -1 and not force:
        raise click.UsageError("Can not set gracePeriod without --force=true")
    if force and grace_period < 0:
        raise click.UsageError("--force requires --grace-period >= 0")
    body = _dry_run({"gracePeriod": grace_period} if force else {}, dry_run)
    _send(ctx, "virtualmachines", name, "stop", body)
    click.echo(f"VM {name} was scheduled to stop")


@cli.command()
@client_options
@click.argument("name")
@click.option("--force", is_flag=True, help="Restart at once (gracePeriodSeconds 0).")
@click.option("--grace-period", type=int, default=-1, show_default=True, help="Only 0 is supported (needs --force).")
@click.option("--dry-run", is_flag=True, help="Check only; change nothing.")
@click.pass_context
def restart(ctx: click.Context, name: str, force: bool, grace_period: int, dry_run: bool) -> None:
    """Restart a VirtualMachine."""
    if grace_period != -1 and not force:
        raise click.UsageError("Can not set gracePeriod without --force=true")
    body: dict[str, Any] = {}
    if force:
        body["gracePeriodSeconds"] = 0 if grace_period == -1 else grace_period
    _send(ctx, "virtualmachines", name, "restart", _dry_run(body, dry_run))
    click.echo(f"VM {name} was scheduled to restart")


KIND = click.Choice(["vm", "vmi"])


def _add_guest_state_command(action: str, summary: str) -> None:
    """Register ``virtctl <action> vm|vmi NAME [--dry-run]`` (pause, unpause): both kinds act on
    the VMI of that name, as in KubeVirt's virtctl."""

    @cli.command(name=action, help=summary)
    @client_options
    @click.argument("kind", type=KIND)
    @click.argument("name")
    @click.option("--dry-run", is_flag=True, help="Check only; change nothing.")
    @click.pass_context
    def command(ctx: click.Context, kind: str, name: str, dry_run: bool) -> None:
        _send(ctx, "virtualmachineinstances", name, action, _dry_run({}, dry_run))
        click.echo(f"VMI {name} was scheduled to {action}")


_add_guest_state_command("pause", "Pause the guest of a VM or VMI (pause vm NAME, pause vmi NAME).")
_add_guest_state_command("unpause", "Resume a paused VM or VMI.")


@cli.command()
@client_options
@click.argument("name")
@click.pass_context
def softreboot(ctx: click.Context, name: str) -> None:
    """Ask the guest of a VMI to reboot (guest agent or ACPI)."""
    _send(ctx, "virtualmachineinstances", name, "softreboot", None)
    click.echo(f"VMI {name} was scheduled to soft reboot")
