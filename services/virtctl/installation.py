"""The embedded installation: which processes ``virtctl up`` starts, and how they are managed.

Owns: the installation layout in the state directory (``installation.json`` with the chosen
ports, ``logs/<service>.log``, ``run/<service>.json`` pid records, ``nats/`` JetStream data,
``api/`` TLS material and token, ``kubeconfig``), starting each service as a detached process
(own session, output to its log file), waiting for its health check, and stopping only processes
this installation started (pid record + the process's live command line must match).

The process list is data: :data:`SERVICES` holds one :class:`ServiceSpec` per process, started in
order and stopped in reverse: nats-server, virt-api, virt-controller, scheduler-bridge,
virt-handler (node = this host, ``qemu:///system`` by default), and virt-migration /
virt-snapshot once those services exist.

Around the processes: the libvirt daemons the handler needs are started when missing
(:func:`apply_libvirt_daemons`, recorded in ``run/libvirt/daemons.json`` so ``down`` stops only
what ``up`` started), and the guests of this installation are shut down on ``down``
(:func:`apply_stop_guests`: ACPI, then destroy after a grace period; only domains whose VMI
directory lives under ``<state>/virt-handler/vmis``), so nothing is orphaned. A later ``up``
finds their VMIs without a domain: the handler marks them Failed and the VM controller starts
them again as the run strategy says, as after a node reboot in KubeVirt. Adding a service is one entry, e.g.::

    python_service("virt-controller", "services.virt_controller.main")

which runs ``python -m services.virt_controller.main --nats <url> --state-dir <state>/virt-controller``
and counts it healthy once it has stayed up for a moment (pass ``health=`` for a real probe).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.natsserver import NatsServer, find_nats_server_binary, pick_free_port

DEFAULT_API_PORT = 8443
DEFAULT_LIBVIRT_URI = "qemu:///system"


@dataclass(frozen=True)
class Layout:
    """Paths and ports of one installation (ports persisted in ``installation.json``)."""

    state_dir: Path
    api_port: int
    nats_port: int
    nats_http_port: int
    libvirt_uri: str = DEFAULT_LIBVIRT_URI
    node_name: str = ""
    controller_health_port: int = 0
    bridge_health_port: int = 0
    handler_health_port: int = 0

    @property
    def handler_dir(self) -> Path:
        """virt-handler's state: ``vmis/<uid>/`` holds each guest's overlay, ISOs, console log."""
        return self.state_dir / "virt-handler"

    @property
    def images_dir(self) -> Path:
        """The installation's local OCI image store (containerDisk / kernelBoot images)."""
        return self.state_dir / "images"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def nats_dir(self) -> Path:
        return self.state_dir / "nats"

    @property
    def api_dir(self) -> Path:
        return self.state_dir / "api"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def ca_cert(self) -> Path:
        return self.api_dir / "pki" / "ca.crt"

    @property
    def token_file(self) -> Path:
        return self.api_dir / "token"

    def nats_server(self) -> NatsServer:
        """The NatsServer describing this installation's server (config and paths; not started)."""
        return NatsServer(self.nats_dir, port=self.nats_port, http_port=self.nats_http_port,
                          server_name="kubevirt-py")


def load_layout(state_dir: Path, api_port: int | None = None, *, libvirt_uri: str | None = None,
                node_name: str | None = None) -> Layout:
    """The installation's layout: ports from ``installation.json`` when it exists, otherwise
    ``api_port`` (default 8443) and free NATS ports, then persisted. An explicit ``api_port``
    different from the recorded one replaces it; so do ``libvirt_uri`` (default
    ``qemu:///system``) and ``node_name`` (default: the host name, as kubelet names its node)."""
    state_dir = state_dir.resolve()
    record = state_dir / "installation.json"
    data: dict[str, Any] = json.loads(record.read_text()) if record.exists() else {}
    for key, value in (("api_port", api_port), ("libvirt_uri", libvirt_uri), ("node_name", node_name)):
        if value is not None:
            data[key] = value
    data.setdefault("api_port", DEFAULT_API_PORT)
    data.setdefault("nats_port", pick_free_port())
    data.setdefault("nats_http_port", pick_free_port())
    data.setdefault("libvirt_uri", DEFAULT_LIBVIRT_URI)
    data.setdefault("node_name", os.environ.get("NODE_NAME") or socket.gethostname())
    for key in ("controller_health_port", "bridge_health_port", "handler_health_port"):
        data.setdefault(key, pick_free_port())
    layout = Layout(state_dir, data["api_port"], data["nats_port"], data["nats_http_port"],
                    data["libvirt_uri"], data["node_name"], data["controller_health_port"],
                    data["bridge_health_port"], data["handler_health_port"])
    state_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({k: v for k, v in asdict(layout).items() if k != "state_dir"}, indent=2) + "\n"
    if not record.exists() or record.read_text() != text:
        record.write_text(text)
    return layout


def check_api_port_change(state_dir: Path, api_port: int | None) -> None:
    """Raise ValueError when ``api_port`` differs from the recorded port while that virt-api
    runs: a running virt-api keeps its port, so ``up --api-port`` would wait for a port nobody
    listens on and record a port the kubeconfig does not name. Nothing is written."""
    record = state_dir.resolve() / "installation.json"
    if api_port is None or not record.exists():
        return
    recorded = json.loads(record.read_text()).get("api_port")
    if recorded == api_port:
        return
    pid = read_record(load_layout(state_dir), VIRT_API.name)
    if pid is not None and is_our_process(pid):
        raise ValueError(f"virt-api already runs on port {recorded}; run 'virtctl down' first to move it to {api_port}")


@dataclass(frozen=True)
class ServiceSpec:
    """One process of the installation.

    ``argv(layout)`` is its command line; ``health(layout)`` one quick probe (True = healthy);
    ``prepare(layout)`` runs before a start (write configs, make dirs). ``start_timeout`` seconds
    to become healthy.
    """

    name: str
    argv: Callable[[Layout], list[str]]
    health: Callable[[Layout], bool]
    prepare: Callable[[Layout], None] | None = None
    start_timeout: float = 30.0
    env: dict[str, str] = field(default_factory=dict)


# -- health probes ---------------------------------------------------------------------------
def is_http_ok(url: str, ssl_context: ssl.SSLContext | None = None, timeout: float = 1.0) -> bool:
    """True when GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ssl_context) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError, ssl.SSLError):
        return False


def is_nats_healthy(layout: Layout) -> bool:
    """nats-server's monitoring ``/healthz`` (JetStream ready)."""
    return is_http_ok(f"http://127.0.0.1:{layout.nats_http_port}/healthz")


def is_api_ready(layout: Layout) -> bool:
    """virt-api's ``/readyz`` over TLS, trusting only the installation's CA."""
    if not layout.ca_cert.exists():
        return False
    return is_http_ok(f"{layout.api_url}/readyz", ssl.create_default_context(cafile=str(layout.ca_cert)))


def stays_up(layout: Layout) -> bool:
    """Placeholder probe for services without a health endpoint: their pid is alive (checked by
    the caller); the start wait adds a short grace period before calling it healthy."""
    return True


# -- service specs ---------------------------------------------------------------------------
def _prepare_nats(layout: Layout) -> None:
    server = layout.nats_server()
    server.state_dir.mkdir(parents=True, exist_ok=True)
    server.store_dir.mkdir(parents=True, exist_ok=True)
    server.config_path.write_text(server.compute_config())


def _nats_argv(layout: Layout) -> list[str]:
    return [str(find_nats_server_binary()), "-c", str(layout.nats_server().config_path)]


def _api_argv(layout: Layout) -> list[str]:
    return [sys.executable, "-m", "services.virt_api.main", "--nats", layout.nats_url,
            "--state-dir", str(layout.api_dir), "--port", str(layout.api_port)]


def python_service(name: str, module: str, *, extra_args: Callable[[Layout], list[str]] | None = None,
                   health: Callable[[Layout], bool] = stays_up, start_timeout: float = 30.0,
                   state_dir_arg: bool = True, prepare: Callable[[Layout], None] | None = None) -> ServiceSpec:
    """A Python service run as ``python -m <module> --nats <url> --state-dir <state>/<name>``
    (plus ``extra_args(layout)``; ``state_dir_arg=False`` for services without ``--state-dir``)."""

    def argv(layout: Layout) -> list[str]:
        state = ["--state-dir", str(layout.state_dir / name)] if state_dir_arg else []
        return [sys.executable, "-m", module, "--nats", layout.nats_url, *state,
                *(extra_args(layout) if extra_args else [])]

    return ServiceSpec(name, argv, health, prepare=prepare, start_timeout=start_timeout)


def is_module_present(module: str) -> bool:
    """True when ``module`` can be imported (services that do not exist yet are skipped)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _handler_args(layout: Layout) -> list[str]:
    return ["--node-name", layout.node_name, "--libvirt-uri", layout.libvirt_uri,
            "--image-dir", str(layout.images_dir),
            *health_port_args(lambda lay: lay.handler_health_port)(layout)]


#: The ``--health-port`` servers of scheduler-bridge and virt-handler need ``shared.metrics``;
#: without it they count as healthy once they stay up (:func:`stays_up`).
HAS_HEALTH_ENDPOINTS = is_module_present("shared.metrics")


def health_port_args(port_of: Callable[[Layout], int]) -> Callable[[Layout], list[str]]:
    """``["--health-port", <port>]`` when health endpoints are available, else nothing."""
    return lambda layout: ["--health-port", str(port_of(layout))] if HAS_HEALTH_ENDPOINTS else []


def healthz_probe(port_of: Callable[[Layout], int]) -> Callable[[Layout], bool]:
    """A probe of a service's ``http://127.0.0.1:<port>/healthz`` (200 once its caches synced);
    :func:`stays_up` when health endpoints are not available."""
    if not HAS_HEALTH_ENDPOINTS:
        return stays_up
    return lambda layout: is_http_ok(f"http://127.0.0.1:{port_of(layout)}/healthz")


def _prepare_handler(layout: Layout) -> None:
    # QEMU runs as libvirt-qemu: it must traverse down to each VMI's overlay and console log
    for directory in (layout.state_dir, layout.handler_dir, layout.images_dir):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(directory.stat().st_mode | 0o755)
    if layout.libvirt_uri == DEFAULT_LIBVIRT_URI:
        apply_libvirt_daemons(layout)


NATS_SERVER = ServiceSpec("nats-server", _nats_argv, is_nats_healthy, prepare=_prepare_nats, start_timeout=20.0)
VIRT_API = ServiceSpec("virt-api", _api_argv, is_api_ready, start_timeout=45.0)

VIRT_CONTROLLER = python_service(
    "virt-controller", "services.virt_controller.main",
    extra_args=lambda layout: ["--health-port", str(layout.controller_health_port)],
    health=lambda layout: is_http_ok(f"http://127.0.0.1:{layout.controller_health_port}/healthz"))
SCHEDULER_BRIDGE = python_service(
    "scheduler-bridge", "services.scheduler_bridge.main", state_dir_arg=False,
    extra_args=health_port_args(lambda layout: layout.bridge_health_port),
    health=healthz_probe(lambda layout: layout.bridge_health_port))
VIRT_HANDLER = python_service("virt-handler", "services.virt_handler.main", extra_args=_handler_args,
                              prepare=_prepare_handler,
                              health=healthz_probe(lambda layout: layout.handler_health_port), start_timeout=60.0)
VIRT_MIGRATION = python_service("virt-migration", "services.virt_migration.main")
VIRT_SNAPSHOT = python_service("virt-snapshot", "services.virt_snapshot.main")

#: Started in this order, stopped in reverse. One entry per process (services whose module
#: does not exist yet are left out).
SERVICES: list[ServiceSpec] = [
    NATS_SERVER,
    VIRT_API,
    VIRT_CONTROLLER,
    SCHEDULER_BRIDGE,
    VIRT_HANDLER,
    *([VIRT_MIGRATION] if is_module_present("services.virt_migration.main") else []),
    *([VIRT_SNAPSHOT] if is_module_present("services.virt_snapshot.main") else []),
]


# -- process records -------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessRecord:
    """What ``run/<service>.json`` holds: the pid and the exact argv it was started with."""

    pid: int
    argv: list[str]


def _record_path(layout: Layout, name: str) -> Path:
    return layout.run_dir / f"{name}.json"


def read_record(layout: Layout, name: str) -> ProcessRecord | None:
    path = _record_path(layout, name)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return ProcessRecord(int(data["pid"]), list(data["argv"]))
    except (ValueError, KeyError, TypeError):
        return None


def is_our_process(record: ProcessRecord, attempts: int = 3) -> bool:
    """True when ``record.pid`` is alive and its command line is exactly ``record.argv``
    (so a recycled pid of an unrelated process is never touched). Right after exec the kernel
    may briefly show an empty or stale command line, hence a few reads 20 ms apart."""
    wanted = [a.encode() for a in record.argv]
    for attempt in range(attempts):
        try:
            raw = Path(f"/proc/{record.pid}/cmdline").read_bytes()
        except OSError:
            return False
        if raw.rstrip(b"\0").split(b"\0") == wanted:
            return True
        if attempt + 1 < attempts:
            time.sleep(0.02)
    return False


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    return not _is_zombie(pid)


def running_record(layout: Layout, spec: ServiceSpec) -> ProcessRecord | None:
    """The record of ``spec``'s process when that very process is running, else None."""
    record = read_record(layout, spec.name)
    return record if record is not None and is_our_process(record) else None


def log_path(layout: Layout, name: str) -> Path:
    return layout.logs_dir / f"{name}.log"


def launch(layout: Layout, spec: ServiceSpec) -> ProcessRecord:
    """Start ``spec`` detached (new session, stdin closed, output appended to its log) and record it."""
    if spec.prepare is not None:
        spec.prepare(layout)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    argv = spec.argv(layout)
    env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
    with open(log_path(layout, spec.name), "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=str(layout.state_dir))
    record = ProcessRecord(proc.pid, argv)
    _record_path(layout, spec.name).write_text(json.dumps(asdict(record)) + "\n")
    proc.returncode = 0  # detached on purpose: keep Popen's destructor from warning about it
    return record


def wait_healthy(layout: Layout, spec: ServiceSpec, record: ProcessRecord, timeout: float | None = None) -> None:
    """Poll ``spec.health`` until it passes. Raises RuntimeError quoting the log's error when the
    process exits or stays unhealthy for ``timeout`` (default ``spec.start_timeout``) seconds."""
    limit = spec.start_timeout if timeout is None else timeout
    deadline = time.monotonic() + limit
    grace_until = time.monotonic() + (1.0 if spec.health is stays_up else 0.0)
    while True:
        if not is_alive(record.pid):  # just launched by us: the pid is ours, no cmdline check needed
            raise RuntimeError(f"{spec.name} exited during start-up: {compute_log_failure(log_path(layout, spec.name))}")
        if time.monotonic() >= grace_until and spec.health(layout):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{spec.name} not healthy after {limit:.0f}s: "
                               f"{compute_log_failure(log_path(layout, spec.name))}")
        time.sleep(0.1)


def stop(layout: Layout, spec: ServiceSpec, timeout: float = 15.0, *, kill: bool = False) -> bool:
    """Stop ``spec``'s process if (and only if) it is the one this installation started:
    SIGTERM, then SIGKILL after ``timeout`` s (``kill=True``: SIGKILL at once, as ``kill -9``).
    Removes the record. Returns True when a process was stopped."""
    record = read_record(layout, spec.name)
    stopped = False
    if record is not None and is_our_process(record):
        _signal(record.pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_alive(record.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_alive(record.pid) and is_our_process(record):  # re-check: never kill a recycled pid
            _signal(record.pid, signal.SIGKILL)
            while is_alive(record.pid):
                time.sleep(0.05)
        stopped = True
    _record_path(layout, spec.name).unlink(missing_ok=True)
    return stopped


def wipe(layout: Layout, services: list[ServiceSpec]) -> None:
    """Remove what the installation wrote (data, TLS material, token, logs, records, kubeconfig),
    never anything else in the state directory; the directory itself goes when left empty."""
    for sub in [layout.nats_dir, layout.api_dir, layout.logs_dir, layout.run_dir, layout.images_dir,
                layout.state_dir / "guest-build", *[layout.state_dir / s.name for s in services]]:
        if sub.is_dir():
            shutil.rmtree(sub)
    for f in (layout.kubeconfig, layout.state_dir / "installation.json"):
        f.unlink(missing_ok=True)
    try:
        layout.state_dir.rmdir()
    except OSError:
        pass


# -- libvirt daemons and guests -------------------------------------------------------------------
def _daemons_record(layout: Layout) -> Path:
    return layout.run_dir / "libvirt" / "daemons.json"


def _read_daemon_records(layout: Layout) -> dict[str, ProcessRecord]:
    try:
        data = json.loads(_daemons_record(layout).read_text())
        return {name: ProcessRecord(int(r["pid"]), list(r["argv"])) for name, r in data.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def apply_libvirt_daemons(layout: Layout) -> list[str]:
    """Start ``virtlogd``/``libvirtd`` when they are not running (``shared.libvirtd``) and add
    the ones started here to ``run/libvirt/daemons.json`` (pid + command line) so that
    :func:`apply_stop_libvirt_daemons` stops exactly those. Returns the names started now.
    Raises ``shared.libvirtd.LibvirtdError`` with a readable message."""
    from shared import libvirtd

    state = libvirtd.apply_system_daemons()
    records = {name: r for name, r in _read_daemon_records(layout).items() if is_our_process(r)}
    for name in state.started:
        pid = state.pids[name]
        argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
        records[name] = ProcessRecord(pid, argv)
    _daemons_record(layout).parent.mkdir(parents=True, exist_ok=True)
    _daemons_record(layout).write_text(json.dumps({n: asdict(r) for n, r in records.items()}) + "\n")
    return list(state.started)


def apply_stop_libvirt_daemons(layout: Layout, timeout: float = 15.0) -> list[str]:
    """Stop the libvirt daemons this installation started (newest first; a daemon whose pid now
    belongs to another command line is left alone). Returns the names stopped."""
    stopped = []
    for name, record in reversed(list(_read_daemon_records(layout).items())):
        if not is_our_process(record):
            continue
        _signal(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_alive(record.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped.append(name)
    _daemons_record(layout).unlink(missing_ok=True)
    return stopped


def apply_stop_guests(layout: Layout, grace: float = 20.0) -> list[str]:
    """Shut down the guests of this installation and remove their domains and files.

    A guest is this installation's when its domain carries a VMI uid (KubeVirt metadata) whose
    directory exists under ``<state>/virt-handler/vmis``; other domains on the same libvirt are
    never touched. ACPI power button first, destroy after ``grace`` seconds (the demo guest powers
    off within a second or two), then undefine and remove the VMI directory (overlay, ISOs,
    console log). Returns the domain names stopped; empty when libvirt is unreachable."""
    import asyncio

    vmis_dir = layout.handler_dir / "vmis"
    if not vmis_dir.is_dir() or not any(vmis_dir.iterdir()):
        return []
    return asyncio.run(_stop_guests(layout.libvirt_uri, vmis_dir, grace))


async def _stop_guests(uri: str, vmis_dir: Path, grace: float) -> list[str]:
    import asyncio

    from services.virt_handler.hypervisor import Hypervisor, HypervisorError

    hv = Hypervisor(uri)
    try:
        await hv.open()
    except HypervisorError:
        return []
    try:
        ours = [d for d in await hv.list_domains() if d.uid and (vmis_dir / d.uid).is_dir()]

        async def stop_one(domain) -> None:
            if domain.is_active:
                try:
                    await hv.shutdown(domain.name)
                except HypervisorError:
                    pass
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline:
                    current = await hv.get_domain(domain.name)
                    if current is None or not current.is_active:
                        break
                    await asyncio.sleep(0.5)
                try:
                    await hv.destroy(domain.name)
                except HypervisorError:
                    pass  # powered off meanwhile
            await hv.undefine(domain.name)
            shutil.rmtree(vmis_dir / domain.uid, ignore_errors=True)

        await asyncio.gather(*(stop_one(d) for d in ours))
        return [d.name for d in ours]
    finally:
        await hv.close()


def compute_log_failure(path: Path, lines: int = 50) -> str:
    """Why a service failed, in one line, from the end of its log: the last error record of a
    JSON-lines log (``msg`` plus the exception's last line), else the last line of a traceback
    (``OSError: [Errno 98] ...``), else the last line; then ``(log: <path>)`` to read more."""
    if not path.exists():
        return f"(no log at {path})"
    text = [line for line in path.read_text(errors="replace").splitlines()[-lines:] if line.strip()]
    return f"{_failure_line(text) or '(empty log)'} (log: {path})"


def _failure_line(lines: list[str]) -> str:
    plain = ""
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            plain = plain or line.strip()  # the newest non-JSON line: a traceback's last line
            continue
        if plain:
            return plain
        if str(record.get("level", "")).lower() in ("error", "critical"):
            exc = str(record.get("exc") or "").strip().splitlines()
            return f"{record.get('msg', '')}: {exc[-1]}" if exc else str(record.get("msg", ""))
    return plain or (lines[-1].strip() if lines else "")


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
