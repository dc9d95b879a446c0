"""Label keys and values as Kubernetes validates them (k8s.io/apimachinery
``pkg/util/validation`` ``IsQualifiedName`` / ``IsValidLabelValue``, and
``pkg/apis/meta/v1/validation`` ``ValidateLabels``), for maps of labels inside a spec — node
selectors — with the field path of the map (``spec.addedNodeSelector``). Messages are
Kubernetes'; the offending key or value is quoted, cut to :data:`SHOWN_CHARS` characters so a
huge value does not make a huge answer; at most :data:`MAX_CAUSES` causes per map.
"""

from __future__ import annotations

import re
from typing import Any

from shared.admission.fields import invalid_value
from shared.admission.naming import DNS1123_SUBDOMAIN_MAX, is_dns1123_subdomain
from shared.errors import StatusCause

QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
SHOWN_CHARS = 80
MAX_CAUSES = 20
_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

NAME_PART_FORMAT = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
                    "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
QUALIFIED_NAME_FORMAT = ("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
                         "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
                         "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') "
                         "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")
SUBDOMAIN_FORMAT = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
                    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_VALUE_FORMAT = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
                      "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
                      "'my_value',  or '12345', regex used for validation is "
                      "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def compute_qualified_name_errors(key: str) -> list[str]:
    """Kubernetes' ``IsQualifiedName(key)``: [] when ``key`` is ``[prefix/]name`` with a
    DNS-1123 subdomain prefix (at most 253) and a name part of at most 63 alphanumerics with
    ``-``, ``_``, ``.`` inside; else its messages."""
    parts = key.split("/")
    if len(parts) > 2:
        return [QUALIFIED_NAME_FORMAT]
    errors: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        elif len(prefix) > DNS1123_SUBDOMAIN_MAX:
            errors.append(f"prefix part must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
        elif not is_dns1123_subdomain(prefix):
            errors.append(f"prefix part {SUBDOMAIN_FORMAT}")
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        errors.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
    if name and not _NAME_PART.match(name):
        errors.append(NAME_PART_FORMAT)
    return errors


def compute_label_value_errors(value: str) -> list[str]:
    """Kubernetes' ``IsValidLabelValue(value)``: [] for "" or at most 63 alphanumerics with
    ``-``, ``_``, ``.`` inside; else its messages."""
    errors: list[str] = []
    if len(value) > LABEL_VALUE_MAX:
        errors.append(f"must be no more than {LABEL_VALUE_MAX} characters")
    if not _LABEL_VALUE.match(value):
        errors.append(LABEL_VALUE_FORMAT)
    return errors


def _shown(text: str) -> str:
    quoted = text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."
    return '"' + quoted.replace("\\", "\\\\").replace('"', '\\"') + '"'


def compute_label_map_causes(field: str, labels: Any) -> list[StatusCause]:
    """Kubernetes' ``ValidateLabels(labels, field)``: one ``FieldValueInvalid`` cause at
    ``field`` per message about a key or a value (``Invalid value: "<key>": <message>``); a
    non-map or non-string entries give one cause. None or {} is valid."""
    if labels is None:
        return []
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        return [invalid_value(field, "must be a map of strings to strings")]
    causes: list[StatusCause] = []
    for key, value in labels.items():
        causes += [invalid_value(field, f"Invalid value: {_shown(key)}: {message}")
                   for message in compute_qualified_name_errors(key)]
        causes += [invalid_value(field, f"Invalid value: {_shown(value)}: {message}")
                   for message in compute_label_value_errors(value)]
        if len(causes) >= MAX_CAUSES:
            return causes[:MAX_CAUSES]
    return causes
