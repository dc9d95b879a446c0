"""Kubernetes name syntax checks (rules from k8s.io/apimachinery pkg/util/validation)."""

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
        "must be a lowercase RFC 1123 label: only a-z, 0-9 and '-', starting and ending with a letter "
        "or digit, e.g. 'root-disk' (regex '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    )


def dns1123_subdomain_error(value: str) -> str:
    """Kubernetes' message for a value that is not a DNS-1123 subdomain."""
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
    return (
        "must be a lowercase RFC 1123 subdomain: dot-separated labels of a-z, 0-9 and '-', each starting "
        "and ending with a letter or digit, e.g. 'db.example.com'"
    )
