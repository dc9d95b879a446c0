"""Matching a Kubernetes LabelSelector (dict form) against labels, for the "selector must
match the template" rules of replica sets and pools (source: k8s.io/apimachinery
pkg/apis/meta/v1 LabelSelectorAsSelector)."""

from __future__ import annotations

from typing import Any

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def is_selector_empty(selector: dict[str, Any] | None) -> bool:
    """Whether the selector has no requirements (it would select everything)."""
    selector = selector or {}
    return not selector.get("matchLabels") and not selector.get("matchExpressions")


def is_selector_matching(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether ``labels`` satisfy every ``matchLabels`` pair and ``matchExpressions`` entry."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True
