"""The client of a Kubernetes cluster's own API server, for the services that call it.

Owns: the ``--kubeconfig`` / ``--in-cluster`` options and building a ``kubernetes.client.ApiClient``
from them (virt-snapshot's CSI VolumeSnapshotter; virt-api's delegated authentication and
authorization). The ``kubernetes`` package is an optional extra (``csi``), so it is imported only
when a client is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from shared.service import Option

def kubernetes_client_options(used_for: str) -> list[Option]:
    """``--kubeconfig PATH`` and ``--in-cluster``; ``used_for`` starts their help (e.g. "With
    --volume-snapshotter csi")."""
    return [
        click.option("--kubeconfig", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
                     help=f"{used_for}: the cluster's kubeconfig (default: $KUBECONFIG or ~/.kube/config)."),
        click.option("--in-cluster", is_flag=True, default=False,
                     help=f"{used_for}: use the pod's service account."),
    ]


def api_client_from(kubeconfig: Path | None = None, *, in_cluster: bool = False,
                    context: str | None = None) -> Any:
    """A ``kubernetes.client.ApiClient``: in-cluster (service account) when ``in_cluster``; else
    from ``kubeconfig`` (None: ``$KUBECONFIG`` or ``~/.kube/config``). Raises
    ``kubernetes.config.ConfigException`` when the configuration cannot be loaded."""
    from kubernetes import client, config

    if in_cluster:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return client.ApiClient(configuration)
    return config.new_client_from_config(  # type: ignore[no-untyped-call]  # the client's loaders are untyped
        config_file=str(kubeconfig) if kubeconfig else None, context=context)


def apply_api_client(kubeconfig: Path | None, in_cluster: bool, *, needed_for: str) -> Any:
    """:func:`api_client_from` for a service's options, failing with one readable line
    (``click.UsageError``) when both options are given, the ``kubernetes`` package is missing
    (``needed_for`` names what needs it) or the configuration does not load."""
    if kubeconfig is not None and in_cluster:
        raise click.UsageError("give --kubeconfig or --in-cluster, not both")
    try:
        from kubernetes.config.config_exception import ConfigException
    except ImportError as err:
        raise click.UsageError(f"{needed_for} needs the kubernetes package: {err}") from None
    try:
        return api_client_from(kubeconfig, in_cluster=in_cluster)
    except ConfigException as err:
        raise click.UsageError(f"Kubernetes configuration: {err}") from None

