"""virtctl freeze / unfreeze: the VMI ``freeze`` and ``unfreeze`` subresources.

``virtctl freeze NAME [--unfreeze-timeout 5m]`` sends ``{"unfreezeTimeout": "5m0s"}`` to
``subresources.kubevirt.io/v1/.../virtualmachineinstances/NAME/freeze`` (a VM's VMI has the VM's
name, so NAME may be either); the guest agent freezes the guest's filesystems and the handler
thaws them by itself once the timeout passes. ``virtctl unfreeze NAME`` thaws at once. Errors are
printed as their Status message with exit code 1, as every virtctl command does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import click

from services.virtctl.client import ApiClient, resource_path
from services.virtctl.main import cli, client_options, resolve_kubeconfig, selected_namespace
from shared.admission.go_duration import DurationError, format_go_duration, parse_go_duration

SUBRESOURCES = "subresources.kubevirt.io"
DEFAULT_UNFREEZE_TIMEOUT = "5m"


async def _put(kubeconfig: Any, namespace: str | None, name: str, sub: str, body: dict[str, Any] | None) -> None:
    async with ApiClient.from_kubeconfig(kubeconfig) as api:
        ns = namespace or api.namespace
        await api.put(resource_path(SUBRESOURCES, "v1", "virtualmachineinstances", ns, name, sub), body)


def compute_freeze_body(unfreeze_timeout: str) -> dict[str, str]:
    """The freeze request body for a ``--unfreeze-timeout`` value (a Go duration; at least 1s).
    Raises click.BadParameter otherwise."""
    try:
        seconds = int(parse_go_duration(unfreeze_timeout))
    except DurationError as err:
        raise click.BadParameter(str(err), param_hint="--unfreeze-timeout") from None
    if seconds < 1:
        raise click.BadParameter("must be at least 1s", param_hint="--unfreeze-timeout")
    return {"unfreezeTimeout": format_go_duration(seconds)}


@cli.command()
@client_options
@click.argument("name")
@click.option("--unfreeze-timeout", default=DEFAULT_UNFREEZE_TIMEOUT, show_default=True,
              help="Thaw the guest by itself after this long (a duration such as 90s, 5m, 1h).")
@click.pass_context
def freeze(ctx: click.Context, name: str, unfreeze_timeout: str) -> None:
    """Freeze the filesystems of a VM's (or VMI's) guest through its guest agent."""
    body = compute_freeze_body(unfreeze_timeout)
    asyncio.run(_put(resolve_kubeconfig(ctx), selected_namespace(ctx), name, "freeze", body))
    click.echo(f"VMI {name} was scheduled to freeze")


@cli.command()
@client_options
@click.argument("name")
@click.pass_context
def unfreeze(ctx: click.Context, name: str) -> None:
    """Thaw the filesystems of a frozen guest."""
    asyncio.run(_put(resolve_kubeconfig(ctx), selected_namespace(ctx), name, "unfreeze", None))
    click.echo(f"VMI {name} was scheduled to unfreeze")
