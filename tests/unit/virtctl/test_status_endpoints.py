"""``virtctl status`` names every node's libvirt URI and every service's metrics endpoint
(virt-migration and the extra nodes' virt-handlers included); ``installation.json`` records
virt-migration's port."""

import json

from click.testing import CliRunner

from services.virtctl import extra_nodes
from services.virtctl import installation as inst
from services.virtctl.main import cli, compute_metrics_urls, compute_node_uris


def _two_node_layout(tmp_path):
    layout = inst.load_layout(tmp_path / "state", 18443, libvirt_uri="test:///default", node_name="host")
    _, nodes = extra_nodes.compute_extra_nodes(layout, 2)
    return layout, nodes[0]


def test_installation_records_the_virt_migration_port(tmp_path):
    layout, _ = _two_node_layout(tmp_path)
    recorded = json.loads((layout.state_dir / "installation.json").read_text())
    assert recorded["migration_health_port"] == layout.migration_health_port > 0
    assert inst.load_layout(layout.state_dir).migration_health_port == layout.migration_health_port


def test_a_port_kept_by_an_older_installation_is_adopted(tmp_path):
    state = tmp_path / "state"
    (state / "virt-migration").mkdir(parents=True)
    (state / "virt-migration" / "health-port").write_text("18999\n")
    assert inst.load_layout(state, 18443).migration_health_port == 18999


def test_metrics_and_node_uris_cover_virt_migration_and_node_2(tmp_path):
    layout, node2 = _two_node_layout(tmp_path)
    urls = compute_metrics_urls(layout)
    assert urls["virt-migration"] == f"http://127.0.0.1:{layout.migration_health_port}/metrics"
    assert urls["virt-handler-host-node2"] == f"http://127.0.0.1:{node2.health_port}/metrics"
    assert urls["virt-handler"] == f"http://127.0.0.1:{layout.handler_health_port}/metrics"
    uris = compute_node_uris(layout)
    assert uris == {"host": "test:///default", "host-node2": node2.uri(layout)}
    assert uris["host-node2"].startswith("qemu+unix:///system?socket=")


def test_status_prints_them(tmp_path):
    layout, node2 = _two_node_layout(tmp_path)
    result = CliRunner().invoke(cli, ["status", "--state-dir", str(layout.state_dir)], obj={})
    assert result.exit_code == 1  # nothing runs
    lines = result.output.splitlines()
    assert f"  host-node2       {node2.uri(layout)}" in lines
    assert "  host             test:///default" in lines
    assert f"  virt-migration   http://127.0.0.1:{layout.migration_health_port}/metrics" in lines
    assert any(line.split() == ["virt-handler-host-node2", f"http://127.0.0.1:{node2.health_port}/metrics"]
               for line in lines)
