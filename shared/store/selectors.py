"""Kubernetes label and field selectors: parse once, then match object dicts.

Owns the selector grammar of k8s.io/apimachinery ``pkg/labels`` (string form used by
``?labelSelector=``: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a``, ``!a``,
``a>1``, ``a<1``, comma = AND) and of ``metav1.LabelSelector`` dicts (``matchLabels`` /
``matchExpressions`` with In, NotIn, Exists, DoesNotExist), plus the field selectors every
resource supports (``metadata.name``, ``metadata.namespace`` with ``=``, ``==``, ``!=``).
Bad input raises :class:`shared.errors.BadRequest` with a message naming the offending part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import ApiError, BadRequest

_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TOKEN = re.compile(r"\s*(\(|\)|,|==|=|!=|!|>|<|(?:notin|in)(?=\s*\()|[^\s(),=!<>]+)")

SUPPORTED_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class Requirement:
    """One label requirement. ``operator`` is one of ``=``, ``!=``, ``in``, ``notin``, ``exists``,
    ``!``, ``gt``, ``lt`` (Kubernetes' selection.Operator values, lower-cased)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        if op in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        if op in ("!=", "notin"):
            # Kubernetes: an object without the label satisfies != and notin.
            return self.key not in labels or labels[self.key] not in self.values
        if op in ("gt", "lt"):
            try:
                have, want = int(labels[self.key]), int(self.values[0])
            except (KeyError, ValueError):
                return False
            return have > want if op == "gt" else have < want
        raise AssertionError(op)


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; ``nothing=True`` is the selector that matches no object
    (what Kubernetes makes of a nil ``metav1.LabelSelector``). Empty = everything."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, obj_or_labels: Mapping[str, Any]) -> bool:
        """Match an object dict (its ``metadata.labels``) or a plain labels mapping."""
        if self.nothing:
            return False
        labels = _labels_of(obj_or_labels)
        return all(r.matches(labels) for r in self.requirements)

    @property
    def is_everything(self) -> bool:
        return not self.nothing and not self.requirements


@dataclass(frozen=True)
class FieldSelector:
    """Conjunction of ``(field, operator, value)`` on metadata.name / metadata.namespace."""

    terms: tuple[tuple[str, str, str], ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        for field, op, value in self.terms:
            have = meta.get(field.split(".", 1)[1]) or ""
            if (have == value) != (op == "="):
                return False
        return True

    def wanted(self, field: str) -> str | None:
        """The value an ``=`` term pins ``field`` to (lets the store narrow its key range)."""
        for f, op, value in self.terms:
            if f == field and op == "=":
                return value
        return None

    @property
    def is_everything(self) -> bool:
        return not self.terms


def _labels_of(obj_or_labels: Mapping[str, Any]) -> Mapping[str, str]:
    meta = obj_or_labels.get("metadata")
    if isinstance(meta, Mapping):
        return meta.get("labels") or {}
    return obj_or_labels


def _bad(selector: str, why: str) -> ApiError:
    return BadRequest(f'unable to parse requirement: invalid label selector "{selector}": {why}')


def _check_key(key: str, selector: str) -> str:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise _bad(selector, f'key "{key}": prefix part must be a DNS-1123 subdomain')
    if not _NAME.match(name):
        raise _bad(
            selector,
            f'key "{key}": name part must consist of alphanumeric characters, "-", "_" or ".", '
            "and must start and end with an alphanumeric character (at most 63 characters)",
        )
    return key


def _check_value(value: str, selector: str) -> str:
    if value and not _NAME.match(value):
        raise _bad(
            selector,
            f'value "{value}": a valid label must be an empty string or consist of alphanumeric '
            'characters, "-", "_" or ".", and must start and end with an alphanumeric character',
        )
    return value


def _tokenize(selector: str) -> list[str]:
    tokens, pos = [], 0
    text = selector.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise _bad(selector, f"unexpected character at position {pos}")
        tokens.append(m.group(1))
        pos = m.end()
    return tokens


def parse_label_selector(selector: str | None) -> LabelSelector:
    """Parse Kubernetes' string form; ``None``/``""`` selects everything. Raises BadRequest."""
    if not selector or not selector.strip():
        return LabelSelector()
    tokens = _tokenize(selector)
    reqs: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise _bad(selector, "unexpected end of selector")
        i += 1
        return tokens[i - 1]

    while i < len(tokens):
        tok = take()
        if tok == "!":
            reqs.append(Requirement(_check_key(take(), selector), "!"))
        elif tok in ("(", ")", ",", "=", "==", "!=", ">", "<"):
            raise _bad(selector, f'found "{tok}", expected a label key')
        else:
            key = _check_key(tok, selector)
            op = tokens[i] if i < len(tokens) else ","
            if op == ",":
                reqs.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                i += 1
                value = tokens[i] if i < len(tokens) and tokens[i] not in (",", "(", ")") else ""
                if value:
                    i += 1
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (_check_value(value, selector),)))
            elif op in ("in", "notin"):
                i += 1
                if take() != "(":
                    raise _bad(selector, f'expected "(" after "{op}"')
                values: list[str] = []
                while True:
                    tok2 = take()
                    if tok2 == ")":
                        break
                    if tok2 == ",":
                        continue
                    values.append(_check_value(tok2, selector))
                if not values:
                    raise _bad(selector, f'"{op}" needs at least one value')
                reqs.append(Requirement(key, op, tuple(values)))
            elif op in (">", "<"):
                i += 1
                num = take()
                if not re.fullmatch(r"-?\d+", num):
                    raise _bad(selector, f'"{num}" is not an integer for "{op}"')
                reqs.append(Requirement(key, "gt" if op == ">" else "lt", (num,)))
            else:
                raise _bad(selector, f'found "{op}", expected one of "=", "==", "!=", "in", "notin", ","')
        if i < len(tokens):
            if tokens[i] != ",":
                raise _bad(selector, f'found "{tokens[i]}", expected ","')
            i += 1
            if i >= len(tokens):
                raise _bad(selector, "trailing comma")
    return LabelSelector(tuple(reqs))


_EXPRESSION_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def label_selector_from_dict(selector: Mapping[str, Any] | None) -> LabelSelector:
    """Convert a ``metav1.LabelSelector`` dict. ``None`` matches nothing, ``{}`` everything
    (Kubernetes' LabelSelectorAsSelector). Raises BadRequest on an unknown operator or on values
    given to Exists/DoesNotExist / missing for In/NotIn."""
    if selector is None:
        return LabelSelector(nothing=True)
    reqs: list[Requirement] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        reqs.append(Requirement(_check_key(key, str(selector)), "=", (_check_value(str(value), str(selector)),)))
    for expr in selector.get("matchExpressions") or []:
        op = _EXPRESSION_OPS.get(expr.get("operator", ""))
        key = _check_key(str(expr.get("key", "")), str(selector))
        values = tuple(str(v) for v in expr.get("values") or ())
        if op is None:
            raise BadRequest(f'"{expr.get("operator")}" is not a valid label selector operator')
        if op in ("in", "notin") and not values:
            raise BadRequest(f"values: Required value: must be specified when `operator` is 'In' or 'NotIn' ({key})")
        if op in ("exists", "!") and values:
            raise BadRequest(
                f"values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist' ({key})"
            )
        reqs.append(Requirement(key, op, values))
    return LabelSelector(tuple(reqs))


def parse_field_selector(selector: str | None) -> FieldSelector:
    """Parse ``metadata.name=x,metadata.namespace!=y``; only the two metadata fields every
    Kubernetes resource supports. Raises BadRequest naming an unknown field."""
    if not selector or not selector.strip():
        return FieldSelector()
    terms = []
    for part in selector.split(","):
        part = part.strip()
        m = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", part)
        if not m:
            raise BadRequest(f'invalid field selector "{selector}": "{part}" is not field=value or field!=value')
        field, op, value = m.groups()
        if field not in SUPPORTED_FIELDS:
            raise BadRequest(
                f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"'
            )
        terms.append((field, "!=" if op == "!=" else "=", value))
    return FieldSelector(tuple(terms))
