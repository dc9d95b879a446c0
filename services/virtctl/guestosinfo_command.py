"""virtctl guestosinfo VMI: print the guest agent's information about a running VMI as JSON.

One GET of virt-api's ``subresources.kubevirt.io/v1 .../virtualmachineinstances/<name>/guestosinfo``
(:mod:`services.virt_api.guestosinfo`), printed indented as KubeVirt's virtctl prints it; an error
answer (409 not running / no agent, 404) is one line and exit code 1 (the group's error policy).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from services.virtctl.client import ApiClient, resource_path
from services.virtctl.main import cli, client_options, resolve_kubeconfig, selected_namespace


async def fetch_guest_os_info(kubeconfig: Path, namespace: str | None, name: str) -> dict[str, Any]:
    """The ``guestosinfo`` body of VMI ``name`` (namespace: given or the kubeconfig context's)."""
    async with ApiClient.from_kubeconfig(kubeconfig) as api:
        ns = namespace or api.namespace
        return await api.get(resource_path("subresources.kubevirt.io", "v1", "virtualmachineinstances", ns,
                                           name, "guestosinfo"))


@cli.command()
@client_options
@click.argument("name")
@click.pass_context
def guestosinfo(ctx: click.Context, name: str) -> None:
    """Print the guest agent's OS information of VMI NAME (needs the agent connected)."""
    namespace = selected_namespace(ctx)
    body = asyncio.run(fetch_guest_os_info(resolve_kubeconfig(ctx), namespace, name))
    click.echo(json.dumps(body, indent=2, sort_keys=True))
