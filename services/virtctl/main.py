"""virtctl: the command line of kubevirt-py.

Owns: the click command tree and its error policy (a failure is one readable line on stderr and
exit code 1, never a traceback). Commands: ``up`` / ``down`` / ``status`` for the embedded
installation (:mod:`services.virtctl.installation`); client commands talk to virt-api through
:mod:`services.virtctl.client` using ``--kubeconfig`` (default ``$KUBECONFIG``, else
``<state-dir>/kubeconfig``). Other helpers add client commands (start, stop, console, ...) with
``@cli.command()`` in their own module, listed in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from services.virtctl import extra_nodes, hosts, installation_kind
from services.virtctl import installation as inst
from services.virtctl.kubevirt_object import apply_kubevirt_object
from services.virtctl.kubeconfig import apply_kubeconfig, compute_kubeconfig
from shared.node_fencing import FailureTiming

#: Modules that add commands to :data:`cli` when imported (one line per module).
COMMAND_MODULES: list[str] = [
    "services.virtctl.lifecycle_commands",
    "services.virtctl.console_command",
    "services.virtctl.trace_command",
    "services.virtctl.events_command",
    "services.virtctl.image_command",
    "services.virtctl.guestosinfo_command",
    "services.virtctl.migrate_command",
    "services.virtctl.freeze_command",
]


def default_state_dir() -> Path:
    """``$KUBEVIRT_PY_STATE`` or ``./.state``."""
    return Path(os.environ.get("KUBEVIRT_PY_STATE") or ".state")


def default_kubeconfig(state_dir: Path) -> Path:
    """``$KUBECONFIG`` (first entry) or ``<state-dir>/kubeconfig``."""
    env = os.environ.get("KUBECONFIG")
    return Path(env.split(os.pathsep)[0]) if env else state_dir / "kubeconfig"


def exit_with_one_line(err: click.ClickException) -> NoReturn:
    """Print ``virtctl: error: <message>`` (a usage error adds which ``--help`` to read) and exit
    with click's code for it: 2 for usage errors, 1 otherwise."""
    hint = ""
    if isinstance(err, click.UsageError) and err.ctx is not None:
        hint = f" (see '{err.ctx.command_path} --help')"
    click.echo(f"virtctl: error: {err.format_message()}{hint}", err=True)
    sys.exit(err.exit_code)


class OneLineErrors(click.Group):
    """A click group that turns any failure into one line, ``virtctl: error: <message>``, and a
    non-zero exit: usage errors (2), click errors and any other exception (1), Ctrl-C (130)."""

    def make_context(self, *args, **kwargs):  # type: ignore[override]
        try:
            return super().make_context(*args, **kwargs)
        except click.ClickException as err:  # bad top-level option or argument
            exit_with_one_line(err)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except click.ClickException as err:  # includes a subcommand's usage errors
            exit_with_one_line(err)
        except (click.exceptions.Exit, click.Abort, SystemExit, BrokenPipeError):
            # BrokenPipeError: the reader went away (`virtctl status | head`); click exits quietly
            raise
        except KeyboardInterrupt:
            click.echo("virtctl: interrupted", err=True)
            sys.exit(130)
        except Exception as err:  # noqa: BLE001 - the policy: one line, no traceback
            message = str(err) or type(err).__name__
            click.echo(f"virtctl: error: {message}", err=True)
            sys.exit(1)


state_dir_option = click.option(
    "--state-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
    help="Installation state directory [default: $KUBEVIRT_PY_STATE or ./.state]",
)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--kubeconfig", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Kubeconfig for client commands [default: $KUBECONFIG or <state-dir>/kubeconfig]")
@click.option("-n", "--namespace", default=None, help="Namespace for client commands [default: the context's]")
@click.pass_context
def cli(ctx: click.Context, kubeconfig: Path | None, namespace: str | None) -> None:
    """virtctl for kubevirt-py: run the embedded installation and work with virtual machines."""
    ctx.ensure_object(dict)
    ctx.obj["kubeconfig"] = kubeconfig
    ctx.obj["namespace"] = namespace


def resolve_kubeconfig(ctx: click.Context, state_dir: Path | None = None) -> Path:
    """The kubeconfig a client command uses (``--kubeconfig``, ``$KUBECONFIG``, or the state dir's)."""
    explicit = (ctx.find_root().obj or {}).get("kubeconfig")
    return explicit or default_kubeconfig(state_dir or default_state_dir())


def selected_namespace(ctx: click.Context) -> str | None:
    """The ``-n/--namespace`` given before or after the subcommand (None: the context's)."""
    return (ctx.find_root().obj or {}).get("namespace")


def _store_on_root(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None:
        ctx.find_root().ensure_object(dict)[param.name] = value
    return value


def client_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Accept ``-n/--namespace`` and ``--kubeconfig`` after a client subcommand too
    (``virtctl start vm-demo -n prod``, as KubeVirt's virtctl and kubectl allow); the value lands
    where the group's own options put it, read with :func:`selected_namespace` and
    :func:`resolve_kubeconfig`."""
    command = click.option("-n", "--namespace", default=None, expose_value=False, callback=_store_on_root,
                           help="Namespace [default: the context's]")(command)
    return click.option("--kubeconfig", type=click.Path(path_type=Path, dir_okay=False), default=None,
                        expose_value=False, callback=_store_on_root,
                        help="Kubeconfig [default: $KUBECONFIG or <state-dir>/kubeconfig]")(command)


def _failure_timing_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> FailureTiming | None:
    """``--testing-failure-timing 1,6,12,4``: handlers' heartbeat interval and fence, controllers'
    heartbeat timeout and fence margin (seconds), checked as :class:`FailureTiming` checks them."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 4:
        raise click.BadParameter(f"{value!r}: expected INTERVAL,FENCE_AFTER,HEARTBEAT_TIMEOUT,MARGIN (seconds)")
    try:
        interval, fence_after, timeout, margin = (float(part) for part in parts)
        return FailureTiming(heartbeat_interval=interval, fence_after=fence_after, heartbeat_timeout=timeout,
                             fence_margin=margin)
    except ValueError as err:
        raise click.BadParameter(f"{value!r}: {err}") from None


@cli.command()
@state_dir_option
@click.option("--api-port", type=click.IntRange(1, 65535), default=None,
              help=f"virt-api HTTPS port [default: the recorded one, else {inst.DEFAULT_API_PORT}]")
@click.option("--libvirt-uri", default=None,
              help=f"libvirt of this node's virt-handler [default: the recorded one, else {inst.DEFAULT_LIBVIRT_URI}]")
@click.option("--node-name", default=None, help="Node name of this host's virt-handler [default: the host name]")
@click.option("--nodes", type=click.IntRange(1, 16), default=None,
              help="Nodes to run: 2..N each get their own libvirtd [default: the recorded count, else 1]")
@click.option("--hosts", "host_count", type=click.IntRange(1, 16), default=None,
              help="Run a cluster of N hosts on this machine, each a network namespace with its own address, "
                   "libvirtd, virt-handler; NATS on hosts 1-3; two replicas of each control-plane service "
                   "[default: the recorded count]")
# for tests of --hosts (docs/cluster.md, "For tests"): each host's libvirtd serves libvirt's test
# driver (guests a test reads per host), and shorter failure timings (a partition test in minutes)
@click.option("--testing-libvirt-driver", type=click.Choice(hosts.LIBVIRT_DRIVERS), default=None, hidden=True)
@click.option("--testing-failure-timing", default=None, hidden=True, callback=_failure_timing_option,
              metavar="INTERVAL,FENCE_AFTER,HEARTBEAT_TIMEOUT,MARGIN")
def up(state_dir: Path | None, api_port: int | None, libvirt_uri: str | None, node_name: str | None,
       nodes: int | None, host_count: int | None, testing_libvirt_driver: str | None,
       testing_failure_timing: FailureTiming | None) -> None:
    """Start the embedded installation (nats-server, virt-api, virt-controller, scheduler-bridge,
    virt-handler) and write the kubeconfig. libvirtd/virtlogd are started when not running.
    With --hosts N: the same as a cluster of N hosts on this machine (see docs/cluster.md).

    Idempotent: services already running and healthy are left alone.
    """
    directory = (state_dir or default_state_dir()).resolve()
    # the kind already there decides (a kind started over the other's data would not see its VMs);
    # paths only: load_layout would write installation.json, and a refusal writes nothing
    found = inst.Layout(directory, 0, 0, 0)
    try:
        kind = installation_kind.compute_up_kind(
            installation_kind.recorded_host_count(found), bool(installation_kind.find_one_machine_data(found)),
            hosts=host_count, nodes=nodes, api_port=api_port, node_name=node_name)
    except installation_kind.ExcludedOptions as err:
        raise click.UsageError(str(err)) from None
    except (installation_kind.InstallationKindError, hosts.HostsError) as err:
        raise click.ClickException(str(err)) from None
    if kind == installation_kind.UpKind.HOSTS:
        _up_hosts(directory, host_count, libvirt_uri, libvirt_driver=testing_libvirt_driver,
                  failure_timing=testing_failure_timing)
        return
    if testing_libvirt_driver is not None or testing_failure_timing is not None:
        raise click.UsageError("--testing-libvirt-driver and --testing-failure-timing apply to --hosts only")
    try:
        inst.check_api_port_change(state_dir or default_state_dir(), api_port)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    layout = inst.load_layout(state_dir or default_state_dir(), api_port, libvirt_uri=libvirt_uri,
                              node_name=node_name)
    started: list[inst.ServiceSpec] = []
    for spec in inst.SERVICES:
        record = inst.running_record(layout, spec)
        if record is not None:
            inst.wait_healthy(layout, spec, record)
            click.echo(f"{spec.name:<16} already running (pid {record.pid})")
            continue
        try:
            record = inst.launch(layout, spec)
            started.append(spec)
            inst.wait_healthy(layout, spec, record)
        except Exception as err:
            # leave nothing half-started: stop what this run started (newest first), keep the rest
            stopped = [done.name for done in reversed(started) if inst.stop(layout, done)]
            undone = f" (stopped again: {', '.join(reversed(stopped))})" if stopped else ""
            raise click.ClickException(f"{err}{undone}") from None
        click.echo(f"{spec.name:<16} started (pid {record.pid})")
    extra_nodes.apply_extra_nodes(layout, nodes, click.echo)
    token = layout.token_file.read_text().strip()
    config = compute_kubeconfig(layout.api_url, layout.ca_cert.read_bytes(), token)
    changed = apply_kubeconfig(layout.kubeconfig, config)
    click.echo(f"{'kubevirt':<16} {asyncio.run(apply_kubevirt_object(layout.kubeconfig))}")
    click.echo("")
    click.echo(f"API:        {layout.api_url}")
    click.echo(f"kubeconfig: {layout.kubeconfig}{'' if changed else ' (unchanged)'}")
    click.echo(f"logs:       {layout.logs_dir}/<service>.log  (NATS data: {layout.nats_dir})")
    click.echo("")
    click.echo("Use it with:")
    click.echo(f"  kubectl --kubeconfig {layout.kubeconfig} get vm,vmi")
    click.echo(f"  export KUBECONFIG={layout.kubeconfig}")
    click.echo(f"Stop with:  virtctl down --state-dir {layout.state_dir}   (add --wipe to delete the data)")


@cli.command()
@state_dir_option
@click.option("--wipe", is_flag=True, help="Also delete the data, TLS material, token, logs and kubeconfig.")
def down(state_dir: Path | None, wipe: bool) -> None:
    """Stop what 'virtctl up' started (only that); keep the data unless --wipe.

    Order: the services (reverse start order), then this installation's guests (ACPI shutdown,
    destroy after 20 s; their VMIs start again on the next 'up' as their run strategy says),
    then the libvirt daemons 'up' started (daemons that were already running stay).
    """
    directory = (state_dir or default_state_dir()).resolve()
    if not (directory / "installation.json").exists():
        click.echo(f"no installation in {directory}; nothing to stop")
        return
    layout = inst.load_layout(directory)
    if (directory / installation_kind.HOSTS_RECORD).exists():
        _down_hosts(layout, wipe)
        return
    extra_nodes.apply_stop_extra_nodes(layout, click.echo)
    for spec in reversed(inst.SERVICES):
        if inst.stop(layout, spec):
            click.echo(f"{spec.name:<16} stopped")
        else:
            click.echo(f"{spec.name:<16} not running")
    for name in inst.apply_stop_guests(layout):
        click.echo(f"{'guest':<16} {name} shut down")
    for name in inst.apply_stop_libvirt_daemons(layout):
        click.echo(f"{name:<16} stopped (started by an 'up', no other user left)")
    _finish_down(layout, wipe)


@cli.command()
@state_dir_option
def status(state_dir: Path | None) -> None:
    """Show which services of the installation run and whether they are healthy (exit 1 if not all)."""
    directory = (state_dir or default_state_dir()).resolve()
    if not (directory / "installation.json").exists():
        raise click.ClickException(f"no installation in {directory}; run 'virtctl up'")
    layout = inst.load_layout(directory)
    hosts_record = hosts.load_hosts_record(layout)
    if hosts_record is not None:
        _status_hosts(layout, hosts_record)
        return
    healthy = True
    for spec in [*inst.SERVICES, *extra_nodes.compute_running_specs(layout)]:
        record = inst.running_record(layout, spec)
        if record is None:
            state, healthy = "not running", False
        elif spec.health(layout):
            state = f"running (pid {record.pid}), healthy"
        else:
            state, healthy = f"running (pid {record.pid}), NOT healthy", False
        click.echo(f"{spec.name:<16} {state}")
    click.echo("nodes (libvirt URI of each node's virt-handler):")
    for name, uri in compute_node_uris(layout).items():
        click.echo(f"  {name:<16} {uri}")
    click.echo("metrics (Prometheus text; virt-api needs the bearer token in <state-dir>/api/token):")
    for name, url in compute_metrics_urls(layout).items():
        click.echo(f"  {name:<16} {url}")
    if not healthy:
        sys.exit(1)


def _up_hosts(directory: Path, count: int | None, libvirt_uri: str | None, *, libvirt_driver: str | None,
              failure_timing: FailureTiming | None) -> None:
    """``up --hosts N`` (or ``up`` of a recorded hosts installation); the options were checked
    by :func:`installation_kind.compute_up_kind`."""
    layout = inst.load_layout(directory)
    try:
        record = hosts.apply_hosts_up(layout, count, libvirt_uri, click.echo, libvirt_driver=libvirt_driver,
                                      failure_timing=failure_timing)
    except hosts.HostsError as err:
        raise click.ClickException(str(err)) from None
    (first_host, first_url), *others = hosts.compute_api_urls(record)
    token = layout.token_file.read_text().strip()
    config = compute_kubeconfig(first_url, layout.ca_cert.read_bytes(), token, alternates=others)
    changed = apply_kubeconfig(layout.kubeconfig, config)
    click.echo(f"{'kubevirt':<24} {asyncio.run(apply_kubevirt_object(layout.kubeconfig))}")
    click.echo("")
    click.echo(f"hosts:      {', '.join(f'{h.name} {h.address}' for h in record.plan.hosts)} "
               f"(bridge {record.plan.bridge})")
    click.echo(f"API:        {first_url} ({first_host}; context {hosts.CLUSTER_NAME})")
    for host, url in others:
        click.echo(f"            {url} ({host}; context {hosts.CLUSTER_NAME}-{host})")
    click.echo(f"kubeconfig: {layout.kubeconfig}{'' if changed else ' (unchanged)'}")
    click.echo(f"logs:       {layout.logs_dir}/<service>-<host>.log")
    click.echo("")
    click.echo("Use it with:")
    click.echo(f"  kubectl --kubeconfig {layout.kubeconfig} get nodes")
    click.echo(f"  virtctl status --state-dir {layout.state_dir}")
    click.echo(f"Stop with:  virtctl down --state-dir {layout.state_dir}   (add --wipe to delete the data)")


def _down_hosts(layout: inst.Layout, wipe: bool) -> None:
    """``down`` of a hosts installation: every process, guest, daemon, then the network."""
    hosts.apply_hosts_down(layout, click.echo)
    _finish_down(layout, wipe)


def _finish_down(layout: inst.Layout, wipe: bool) -> None:
    """The end of every ``down``: keep the data, or wipe it and say what could not be removed
    (a ClickException, so an incomplete wipe is never reported as done)."""
    if not wipe:
        click.echo(f"data kept in {layout.state_dir}")
        return
    left = inst.wipe(layout)
    for line in left:
        click.echo(f"could not remove {line}", err=True)
    if left:
        raise click.ClickException(f"wipe of {layout.state_dir} incomplete: {len(left)} path(s) left")
    click.echo(f"wiped {layout.state_dir}")


def _status_hosts(layout: inst.Layout, record: hosts.HostsRecord) -> None:
    """``status`` of a hosts installation: each host and its processes (exit 1 unless all healthy)."""
    healthy = True
    for host, rows in hosts.compute_hosts_status(layout, record).items():
        plan_host = record.plan.host(host)
        nats = f", NATS {hosts.CLUSTER_NAME}-{host}" if host in record.placement.nats_hosts else ""
        click.echo(f"{host:<8} {plan_host.address}  netns {plan_host.netns}{nats}")
        for row in rows:
            if row.pid is None:
                state, healthy = "not running", False
            elif row.healthy:
                state = f"running (pid {row.pid}), healthy"
            else:
                state, healthy = f"running (pid {row.pid}), NOT healthy", False
            role = "" if row.leader is None or row.pid is None else (", leader" if row.leader else ", standby")
            click.echo(f"  {row.service:<18} {state}{role}")
    click.echo("kubeconfig contexts (virt-api replicas):")
    for index, (host, url) in enumerate(hosts.compute_api_urls(record)):
        name = hosts.CLUSTER_NAME if index == 0 else f"{hosts.CLUSTER_NAME}-{host}"
        click.echo(f"  {name:<22} {url}")
    if not healthy:
        sys.exit(1)


def compute_node_uris(layout: inst.Layout) -> dict[str, str]:
    """Node name -> the libvirt URI its virt-handler uses: this host's node (``up --libvirt-uri``)
    and nodes 2..N of ``up --nodes N`` (each on its own libvirtd)."""
    uris = {layout.node_name: layout.libvirt_uri}
    for node in extra_nodes.compute_running_nodes(layout):
        uris[node.name] = node.uri(layout)
    return uris


def compute_metrics_urls(layout: inst.Layout) -> dict[str, str]:
    """Each service's ``/metrics`` URL in this installation (the health ports serve it too),
    the extra nodes' virt-handlers (``virt-handler-<node>``) included."""
    ports = {"virt-controller": "controller_health_port", "virt-migration": "migration_health_port",
             "virt-snapshot": "snapshot_health_port", "scheduler-bridge": "bridge_health_port",
             "virt-handler": "handler_health_port"}
    urls = {"virt-api": f"{layout.api_url}/metrics"}
    for name, attr in ports.items():
        port = getattr(layout, attr, 0)
        if port:
            urls[name] = f"http://127.0.0.1:{port}/metrics"
    for node in extra_nodes.compute_running_nodes(layout):
        urls[f"virt-handler-{node.name}"] = f"http://127.0.0.1:{node.health_port}/metrics"
    return urls


def _load_command_modules() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name)


def main() -> None:
    """Console-script entry point (also ``python -m services.virtctl.main``)."""
    _load_command_modules()
    # under ``python -m`` this file is ``__main__``; the command modules registered their commands
    # on the importable ``services.virtctl.main``, so run that module's group
    importlib.import_module("services.virtctl.main").cli(obj={}, prog_name="virtctl")


if __name__ == "__main__":
    main()
