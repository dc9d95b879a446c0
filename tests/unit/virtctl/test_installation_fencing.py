"""Which failure timing each kind of installation gives its handlers and controller.

One machine (``up``, ``up --nodes N``) runs no fence: every node shares its nats-server, so no
other host could take a cut-off node's guests over and a fence would only turn a nats-server
outage into lost guests. ``up --hosts N`` fences (20 s) and fails a silent host's VMIs after 40 s.
"""

from __future__ import annotations

from pathlib import Path

from services.virtctl import extra_nodes
from services.virtctl.layout import load_layout
from services.virtctl.service_specs import FAILURE_TIMING, VIRT_CONTROLLER, VIRT_HANDLER


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_one_machine_handlers_do_not_fence_and_the_controller_never_fails_their_vmis(tmp_path: Path) -> None:
    layout = load_layout(tmp_path / "state")
    handler = VIRT_HANDLER.argv(layout)
    assert _option(handler, "--fence-after") == "0"
    node = extra_nodes.ExtraNode("n-node2", "00000000-0000-4000-8000-000000000002", 1)
    assert _option(node.handler_spec(layout).argv(layout), "--fence-after") == "0"
    assert _option(VIRT_CONTROLLER.argv(layout), "--heartbeat-timeout") == "40"


def test_hosts_timing_fences_before_the_controller_replaces() -> None:
    assert FAILURE_TIMING.fence_after == 20.0
    assert FAILURE_TIMING.heartbeat_timeout >= FAILURE_TIMING.fence_after + FAILURE_TIMING.fence_margin
