"""The services under test of ``control_plane_bench``, started from any checkout of this repository.

The benchmark's driver (VMI creation, the watch that sees them Running, the figures) always runs
from the checkout that holds this file; the services it measures may come from another one (an
older commit checked out beside it, e.g. ``git worktree add --detach ../bench-old <commit>``), so
old and new are measured by the same driver on the same machine in one run.

Owns:

* :class:`ServiceTree` — one checkout: the environment its services run in (``PYTHONPATH`` is that
  tree and its ``build/`` only, the caller's ``PYTHONPATH`` is dropped, the working directory is
  the tree, so nothing of another tree can be imported first) and a check that ``services`` and
  ``shared`` really resolve inside it;
* the command lines, built from the options each service's ``--help`` lists in that tree: an
  optional flag a tree does not know is left out (and named in the run's notes), a required one
  is looked up under its known aliases, and a tree offering none of them is refused with a clear
  error instead of a service that dies at start;
* starting each process where its :class:`bench.control_plane_topology.Placement` puts it (in a
  host's network namespace for the ``hosts3`` topology), readiness (the leader-elected services
  hold their leases, every handler's Node exists) and stopping.

The libvirt test-driver host file is written here (a copy of the ``<node>`` format of libvirt's
``examples/xml/test/testnode.xml``) so that no module of a tree under test is imported by the
driver.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.control_plane_topology import SINGLE_NODE, Placement
from shared.errors import NotFound

NODE = SINGLE_NODE  # the stand-in's Node

MODULES = {"virt-controller": "services.virt_controller.main", "scheduler-bridge": "services.scheduler_bridge.main",
           "virt-handler": "services.virt_handler.main"}

#: flags the bench passes, with the spellings a tree may use for them (first = today's)
ALIASES: dict[str, tuple[str, ...]] = {
    "--nats": ("--nats", "--nats-url", "--nats-servers", "--server"),
    "--bucket-prefix": ("--bucket-prefix",),
    "--node-name": ("--node-name",),
    "--libvirt-uri": ("--libvirt-uri",),
    "--state-dir": ("--state-dir",),
    "--store-replicas": ("--store-replicas",),
}
#: flags the bench can do without (the service's default is used and the run says so)
OPTIONAL = ("--id", "--workers", "--log-level")


def compute_test_node_xml(*, cpus: int, memory_bytes: int) -> str:
    """A libvirt ``test://`` host description: ``cpus`` logical CPUs, ``memory_bytes`` of memory."""
    return ("<node>\n  <cpu>\n"
            f"    <nodes>1</nodes><sockets>1</sockets><cores>{cpus}</cores><threads>1</threads>\n"
            f"    <active>{cpus}</active><mhz>2000</mhz><model>x86_64</model>\n  </cpu>\n"
            f"  <memory>{memory_bytes // 1024}</memory>\n</node>\n")


def apply_test_node_file(path: Path, *, cpus: int, memory_bytes: int) -> str:
    """Write the host description to ``path`` and return its ``test:///<absolute path>`` URI."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(compute_test_node_xml(cpus=cpus, memory_bytes=memory_bytes))
    return f"test://{path}"


@dataclass
class ServiceTree:
    """A checkout whose ``services.<svc>.main`` modules are run; ``label`` names it in reports."""

    path: Path
    label: str
    _flags: dict[str, set[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The process environment for this tree: the caller's, with ``PYTHONPATH`` replaced."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        paths = [str(self.path)] + ([str(self.path / "build")] if (self.path / "build").is_dir() else [])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def run_python(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """``python <args>`` in this tree's environment (output captured as text)."""
        return subprocess.run([sys.executable, *args], check=False, cwd=self.path, env=self.env(), capture_output=True,
                              text=True, timeout=timeout)

    def check_isolation(self) -> None:
        """Raise RuntimeError unless ``services`` and ``shared`` import from this tree."""
        probe = self.run_python("-c", "import services, shared; print(services.__file__); print(shared.__file__)")
        if probe.returncode != 0:
            raise RuntimeError(f"{self.label}: cannot import services/shared from {self.path}: {probe.stderr[-800:]}")
        root = str(self.path.resolve())
        for line in probe.stdout.split():
            if not str(Path(line).resolve()).startswith(root + os.sep):
                raise RuntimeError(f"{self.label}: {line} is imported from outside {root}")

    def flags(self, module: str) -> set[str]:
        """The long options ``python -m <module> --help`` lists in this tree (cached)."""
        if module not in self._flags:
            out = self.run_python("-m", module, "--help")
            if out.returncode != 0:
                raise RuntimeError(f"{self.label}: {module} --help failed: {out.stderr[-800:]}")
            self._flags[module] = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", out.stdout))
        return self._flags[module]

    def command(self, module: str, wanted: list[tuple[str, str]]) -> list[str]:
        """``python -m <module>`` with the ``(flag, value)`` pairs this tree's service accepts.

        Raises RuntimeError when a flag the bench needs has no known spelling in this tree."""
        known = self.flags(module)
        argv = [sys.executable, "-m", module]
        for flag, value in wanted:
            spelling = next((s for s in ALIASES.get(flag, (flag,)) if s in known), None)
            if spelling is None:
                if flag in OPTIONAL:
                    self.notes.append(f"{module}: no {flag} in this tree, its default is used")
                    continue
                raise RuntimeError(f"{self.label}: {module} accepts none of {ALIASES.get(flag, (flag,))}; "
                                   "teach bench/control_plane_services.ALIASES the new spelling")
            argv += [spelling, value]
        return argv


@dataclass
class RunningServices:
    """The processes of one run: name -> Popen; their stderr goes to files in ``log_dir``."""

    procs: dict[str, subprocess.Popen]
    log_dir: Path

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def check_alive(self) -> None:
        """Raise RuntimeError (with the end of its stderr) when a service has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                err = (self.log_dir / f"{name}.stderr").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{err}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def start_services(tree: ServiceTree, nats_urls: list[str], tmp: Path, *, prefix: str, workers: int, agents: str,
                   node_cpus: int, node_memory_gib: int, standin: list[str], placements: list[Placement],
                   replicas: int = 1) -> RunningServices:
    """Start the service processes ``placements`` name, from ``tree``, each where its placement
    says (inside a host's namespace or not), connected to every URL of ``nats_urls``; with
    ``replicas`` > 1 they create buckets and streams with that many JetStream replicas (a tree
    without ``--store-replicas`` is refused). ``agents``: ``real`` = the placements'
    scheduler-bridge and virt-handler processes, each handler on its own libvirt test driver
    host of ``node_cpus``/``node_memory_gib``; ``standin`` = instead of them the bench's own
    process ``standin`` (argv, run from the bench's tree in the root namespace)."""
    log_dir = tmp / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    common = [("--nats", url) for url in nats_urls] + [("--bucket-prefix", prefix)]
    if replicas > 1:
        common.append(("--store-replicas", str(replicas)))
    commands: dict[str, tuple[list[str], Path, dict[str, str]]] = {}
    for place in placements:
        module = MODULES[place.service]
        flags = [("--id", place.identity)] if place.identity else []
        if place.service == "virt-controller":
            flags.append(("--workers", str(workers)))
        elif agents != "real":
            continue
        elif place.service == "virt-handler":
            uri = apply_test_node_file(tmp / f"{place.node}.xml", cpus=node_cpus, memory_bytes=node_memory_gib * 2**30)
            flags += [("--node-name", place.node or NODE), ("--libvirt-uri", uri),
                      ("--state-dir", str(tmp / "handler" / (place.node or NODE))), ("--workers", str(workers))]
        argv = tree.command(module, common + flags + [("--log-level", "WARNING")])
        commands[place.name] = (place.wrap(argv), tree.path, tree.env())
    if agents != "real":
        bench_root = Path(__file__).resolve().parents[1]
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(bench_root)}
        commands["node-agent(stand-in)"] = (standin, bench_root, env)
    procs = {}
    try:
        for name, (argv, cwd, env) in commands.items():
            with open(log_dir / f"{name}.stderr", "wb") as err:
                procs[name] = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    except BaseException:
        RunningServices(procs, log_dir).stop()
        raise
    return RunningServices(procs, log_dir)


async def wait_ready(store, services: RunningServices, *, leases: dict[tuple[str, str], set[str]], nodes: list[str],
                     timeout: float = 60.0, settle: float = 1.0) -> float:
    """Wait until each Lease of ``leases`` ((namespace, name) -> identities) is held by one of its
    identities (any holder when the set is empty) and every Node of ``nodes`` exists (the
    stand-in registers :data:`NODE` too), then ``settle`` seconds for the informers; returns
    seconds waited. Raises RuntimeError when a service exits or ``timeout`` passes."""
    start = time.monotonic()
    while True:
        services.check_alive()
        try:
            held = []
            for (namespace, name), identities in leases.items():
                holder = ((await store.get("leases", namespace, name)).get("spec") or {}).get("holderIdentity")
                held.append(bool(holder) and (not identities or holder in identities))
            for node in nodes:
                await store.get("nodes", None, node)
            if all(held):
                break
        except NotFound:
            pass
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"services not ready after {timeout:.0f} s (a leader lease of {sorted(leases)} "
                               f"or a Node of {nodes} missing)")
        await asyncio.sleep(0.2)
    await asyncio.sleep(settle)
    services.check_alive()
    return time.monotonic() - start
