"""The embedded installation: which processes ``virtctl up`` starts, and how they are managed.

Owns: the installation layout in the state directory (``installation.json`` with the chosen
ports, ``logs/<service>.log``, ``run/<service>.json`` pid records, ``nats/`` JetStream data,
``api/`` TLS material and token, ``kubeconfig``), starting each service as a detached process
(own session, output to its log file), waiting for its health check, and stopping only processes
this installation started (pid record + the process's live command line must match).

The process list is data: :data:`SERVICES` holds one :class:`ServiceSpec` per process, started in
order and stopped in reverse. Adding a service is one entry, e.g.::

    python_service("virt-controller", "services.virt_controller.main")

which runs ``python -m services.virt_controller.main --nats <url> --state-dir <state>/virt-controller``
and counts it healthy once it has stayed up for a moment (pass ``health=`` for a real probe).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shared.natsserver import NatsServer, find_nats_server_binary, pick_free_port

DEFAULT_API_PORT = 8443


@dataclass(frozen=True)
class Layout:
    """Paths and ports of one installation (ports persisted in ``installation.json``)."""

    state_dir: Path
    api_port: int
    nats_port: int
    nats_http_port: int

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


def load_layout(state_dir: Path, api_port: int | None = None) -> Layout:
    """The installation's layout: ports from ``installation.json`` when it exists, otherwise
    ``api_port`` (default 8443) and free NATS ports, then persisted. An explicit ``api_port``
    different from the recorded one replaces it."""
    state_dir = state_dir.resolve()
    record = state_dir / "installation.json"
    data: dict[str, int] = json.loads(record.read_text()) if record.exists() else {}
    if api_port is not None:
        data["api_port"] = api_port
    data.setdefault("api_port", DEFAULT_API_PORT)
    data.setdefault("nats_port", pick_free_port())
    data.setdefault("nats_http_port", pick_free_port())
    layout = Layout(state_dir, data["api_port"], data["nats_port"], data["nats_http_port"])
    state_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({k: v for k, v in asdict(layout).items() if k != "state_dir"}, indent=2) + "\n"
    if not record.exists() or record.read_text() != text:
        record.write_text(text)
    return layout


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
                   health: Callable[[Layout], bool] = stays_up, start_timeout: float = 30.0) -> ServiceSpec:
    """A Python service run as ``python -m <module> --nats <url> --state-dir <state>/<name>``
    (plus ``extra_args(layout)``)."""

    def argv(layout: Layout) -> list[str]:
        return [sys.executable, "-m", module, "--nats", layout.nats_url, "--state-dir",
                str(layout.state_dir / name), *(extra_args(layout) if extra_args else [])]

    return ServiceSpec(name, argv, health, start_timeout=start_timeout)


NATS_SERVER = ServiceSpec("nats-server", _nats_argv, is_nats_healthy, prepare=_prepare_nats, start_timeout=20.0)
VIRT_API = ServiceSpec("virt-api", _api_argv, is_api_ready, start_timeout=45.0)

#: Started in this order, stopped in reverse. One entry per process.
SERVICES: list[ServiceSpec] = [NATS_SERVER, VIRT_API]


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
    """Poll ``spec.health`` until it passes. Raises RuntimeError with the log tail when the
    process exits or stays unhealthy for ``timeout`` (default ``spec.start_timeout``) seconds."""
    limit = spec.start_timeout if timeout is None else timeout
    deadline = time.monotonic() + limit
    grace_until = time.monotonic() + (1.0 if spec.health is stays_up else 0.0)
    while True:
        if not is_alive(record.pid):  # just launched by us: the pid is ours, no cmdline check needed
            raise RuntimeError(f"{spec.name} exited during start-up: {tail(log_path(layout, spec.name))}")
        if time.monotonic() >= grace_until and spec.health(layout):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{spec.name} not healthy after {limit:.0f}s: {tail(log_path(layout, spec.name))}")
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
    for sub in [layout.nats_dir, layout.api_dir, layout.logs_dir, layout.run_dir,
                *[layout.state_dir / s.name for s in services]]:
        if sub.is_dir():
            shutil.rmtree(sub)
    for f in (layout.kubeconfig, layout.state_dir / "installation.json"):
        f.unlink(missing_ok=True)
    try:
        layout.state_dir.rmdir()
    except OSError:
        pass


def tail(path: Path, lines: int = 5) -> str:
    """The last ``lines`` lines of a log file joined with `` | `` (for one-line errors)."""
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return " | ".join(text) + f" (log: {path})"


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
