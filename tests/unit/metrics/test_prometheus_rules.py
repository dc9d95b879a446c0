"""deploy/prometheus-rules.yaml: every alert is one of KubeVirt's (kubevirt-api.md §11), has a
runbook in docs/runbooks/, and uses only metrics kubevirt-py exports (or Prometheus' ``up``)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import shared.metrics  # noqa: F401 - registers every metric

ROOT = Path(__file__).resolve().parents[3]
RULES = yaml.safe_load((ROOT / "deploy" / "prometheus-rules.yaml").read_text())
ALERTS = [r for g in RULES["groups"] for r in g["rules"] if "alert" in r]
KUBEVIRT_ALERTS = {  # kubevirt-api.md §11 (the subset kubevirt-py can back with real metrics)
    "VirtAPIDown", "VirtApiRESTErrorsBurst", "VirtControllerDown", "NoReadyVirtController",
    "NoLeadingVirtController", "VirtControllerRESTErrorsBurst", "VirtHandlerDown", "VirtHandlerRESTErrorsBurst",
}


def exported_names() -> set[str]:
    names = {"up"}
    for collector in list(REGISTRY._collector_to_names):  # every registered family and its samples
        for family in collector.collect():
            names.add(family.name)
            names.update(s.name for s in family.samples)
    names.update(n + suffix for n in list(names) for suffix in ("_count", "_sum", "_bucket", "_total"))
    return names


def test_alerts_are_kubevirts_and_have_runbooks():
    assert {a["alert"] for a in ALERTS} == KUBEVIRT_ALERTS
    for alert in ALERTS:
        runbook = ROOT / alert["annotations"]["runbook_url"]
        assert runbook.is_file(), alert["alert"]
        assert runbook.read_text().startswith(f"# {alert['alert']}\n")
        assert alert["labels"]["severity"] in ("critical", "warning", "info")


def test_rules_use_only_exported_metrics():
    known = exported_names() | {"kubevirt_vmi_phase_count"}
    for rule in (r for g in RULES["groups"] for r in g["rules"]):
        expr = re.sub(r"\bby\s*\([^)]*\)", "", rule["expr"])  # grouping labels are not metrics
        expr = re.sub(r"\{[^}]*\}", "{}", expr)
        for name in re.findall(r"\b([a-z_:]+)\s*(?:\{|\[|\))", expr):
            if name in ("sum", "rate", "absent", "by", "on", "and", "or", "count") or ":" in name:
                continue
            assert name in known, f"{rule.get('alert') or rule.get('record')}: {name} is not exported"
