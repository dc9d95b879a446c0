"""Node health from the Node object: responsive, unresponsive (VMIs Unknown) or lost (VMIs Failed),
with the self-fencing relation fence_after + margin <= heartbeat_timeout (pure, fake clock)."""
from datetime import datetime, timedelta, timezone

import pytest

from services.virt_controller.node_loss import NodeHealth, compute_node_health

BEAT = datetime(2026, 1, 2, 3, 4, 0, tzinfo=timezone.utc)
UP, SILENT, LOST = NodeHealth.RESPONSIVE, NodeHealth.UNRESPONSIVE, NodeHealth.LOST


def node(ready="True", heartbeat="2026-01-02T03:04:00Z", annotation=None, fence_after=None):
    meta = {"name": "n1", "annotations": {}}
    if annotation:
        meta["annotations"]["kubevirt.io/heartbeat"] = annotation
    if fence_after is not None:
        meta["annotations"]["kubevirt-py.io/fence-after-seconds"] = fence_after
    conditions = [{"type": "Ready", "status": ready, "lastHeartbeatTime": heartbeat}] if ready else []
    return {"metadata": meta, "status": {"conditions": conditions}}


@pytest.mark.parametrize(
    ("the_node", "seconds_later", "health"),
    [
        pytest.param(node(), 5, UP, id="fresh"),
        pytest.param(node(), 40, UP, id="no-fence-exactly-at-timeout"),
        pytest.param(node(), 41, SILENT, id="no-fence-past-timeout-is-only-unresponsive"),
        pytest.param(node(), 10_000, SILENT, id="no-fence-never-lost"),
        pytest.param(node(ready="Unknown"), 1, SILENT, id="ready-unknown"),
        pytest.param(node(ready=None, annotation="2026-01-02T03:04:00Z"), 10, UP, id="annotation-heartbeat"),
        pytest.param(node(heartbeat="2026-01-02T03:00:00Z", annotation="2026-01-02T03:04:00Z"), 10, UP,
                     id="newest-of-both"),
        pytest.param(node(ready=None), 1, SILENT, id="no-heartbeat-no-fence"),
        pytest.param(node(ready=None, fence_after="20"), 1, LOST, id="no-heartbeat-ever-but-fencing"),
        pytest.param(None, 0, LOST, id="node-deleted"),
        pytest.param(node(fence_after="20"), 20, UP, id="fence-exactly-at-fence-after"),
        pytest.param(node(fence_after="20"), 21, SILENT, id="fence-past-fence-after-reports"),
        pytest.param(node(fence_after="20"), 40, SILENT, id="fence-exactly-at-timeout"),
        pytest.param(node(fence_after="20"), 41, LOST, id="fence-past-timeout-lost"),
        pytest.param(node(ready="False", fence_after="20"), 41, LOST, id="not-ready-fencing-past-timeout-lost"),
        pytest.param(node(fence_after="30.5"), 100, SILENT, id="fence-too-slow-for-timeout-never-lost"),
        pytest.param(node(fence_after="30"), 41, LOST, id="fence-plus-margin-equals-timeout"),
        pytest.param(node(fence_after="soon"), 100, SILENT, id="unreadable-fence-is-no-fence"),
        pytest.param(node(fence_after="0"), 100, SILENT, id="fence-zero-is-off"),
        pytest.param(node(fence_after="-5"), 100, SILENT, id="fence-negative-is-off"),
    ],
)
def test_node_health_on_a_fake_clock(the_node, seconds_later, health):
    at = BEAT + timedelta(seconds=seconds_later)
    assert compute_node_health(the_node, at, heartbeat_timeout=40, margin=10) == health


def test_a_larger_margin_keeps_a_node_from_being_lost():
    at = BEAT + timedelta(seconds=100)
    assert compute_node_health(node(fence_after="20"), at, heartbeat_timeout=40, margin=25) == SILENT
