"""Kubernetes name syntax checks with Kubernetes' error texts
(source: k8s.io/apimachinery pkg/util/validation)."""

from __future__ import annotations

import re

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_dns1123_label(value: str) -> bool:
    """Lowercase alphanumerics and ``-``, starting and ending alphanumeric, at most 63."""
    return len(value) <= DNS1123_LABEL_MAX and bool(_LABEL.match(value))


def is_dns1123_subdomain(value: str) -> bool:
    """Dot-separated DNS-1123 labels, at most 253 characters."""
    return len(value) <= DNS1123_SUBDOMAIN_MAX and bool(_SUBDOMAIN.match(value))


def dns1123_label_error(value: str) -> str:
    """Kubernetes' message for a value that is not a DNS-1123 label."""
    if len(value) > DNS1123_LABEL_MAX:
        return f"must be no more than {DNS1123_LABEL_MAX} characters"
    return (
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
        "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    )


def dns1123_subdomain_error(value: str) -> str:
    """Kubernetes' message for a value that is not a DNS-1123 subdomain."""
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
    return (
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'example.com', "
        "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )
