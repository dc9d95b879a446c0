"""Who sent a request: virt-api's authentication decisions (pure; the middleware is in
:mod:`services.virt_api.auth`, the calls to the cluster in :mod:`services.virt_api.delegation`).

Rules taken from k8s.io/apiserver, which every aggregated API server uses:

- **Front proxy** (``pkg/authentication/request/headerrequest``, ``request/x509``): when the
  Kubernetes API server proxies a request to an aggregated API (an APIService), it presents its
  front-proxy client certificate and names the caller in headers. The certificate must chain to
  ``--requestheader-client-ca-file`` (checked by the TLS handshake: it is the only CA virt-api's
  serving context trusts for client certificates) and, when ``--requestheader-allowed-names`` is
  not empty, its common name must be one of them; then the user is the first non-empty value of
  the username headers (``X-Remote-User``), the groups every non-empty value of the group headers
  (``X-Remote-Group``), and the extra fields every header starting with an extra prefix
  (``X-Remote-Extra-``; key: the rest of the name, lower-cased and %-unescaped). Without a
  verified certificate the headers mean nothing.
- **Delegated configuration** (``pkg/server/options/authentication.go``): without
  ``--requestheader-client-ca-file``, a delegated server reads those settings from the ConfigMap
  ``kube-system/extension-apiserver-authentication`` that the Kubernetes API server writes (each
  list a JSON array of strings).
- **Bearer tokens**: in ``token`` mode the installation's static token (one identity, the
  installation's admin); in ``delegated`` mode a TokenReview (``authentication.k8s.io/v1``) asked
  of the Kubernetes API server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.x509.oid import NameOID

#: kube-apiserver's defaults for the request-header options (``--requestheader-*``).
DEFAULT_USERNAME_HEADERS = ("X-Remote-User",)
DEFAULT_GROUP_HEADERS = ("X-Remote-Group",)
DEFAULT_EXTRA_HEADER_PREFIXES = ("X-Remote-Extra-",)

#: Where the Kubernetes API server publishes its request-header settings for aggregated servers.
AUTHENTICATION_CONFIGMAP_NAMESPACE = "kube-system"
AUTHENTICATION_CONFIGMAP_NAME = "extension-apiserver-authentication"

#: The identity of the installation's static bearer token (``token`` mode): the installation's admin.
INSTALLATION_ADMIN = "kubevirt-py:admin"


@dataclass(frozen=True)
class UserInfo:
    """An authenticated caller, as Kubernetes' ``user.Info``: ``name``, ``uid``, ``groups`` in
    the order received, ``extra`` as sorted (key, values) pairs (hashable, for the decision caches)."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def extra_dict(self) -> dict[str, list[str]]:
        """``extra`` as Kubernetes serialises it (key -> list of values)."""
        return {key: list(values) for key, values in self.extra}


@dataclass(frozen=True)
class RequestHeaderConfig:
    """The front proxy's settings: ``client_ca_pem`` (PEM text of the CA(s) its client
    certificate chains to), ``allowed_names`` (empty: any common name), and the header names."""

    client_ca_pem: str
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = DEFAULT_USERNAME_HEADERS
    group_headers: tuple[str, ...] = DEFAULT_GROUP_HEADERS
    extra_header_prefixes: tuple[str, ...] = DEFAULT_EXTRA_HEADER_PREFIXES


class FrontProxyRefused(Exception):
    """A client certificate that chains to the request-header CA but may not name users (its
    common name is not in ``--requestheader-allowed-names``); the message says why, as
    k8s.io/apiserver words it."""


def compute_front_proxy_user(peer_certificate_der: bytes | None, headers: Iterable[tuple[str, str]],
                             config: RequestHeaderConfig) -> UserInfo | None:
    """The user a front-proxied request names, or None when it is not one.

    Args:
        peer_certificate_der: the client certificate of the TLS connection (DER), already verified
            against ``config.client_ca_pem`` by the handshake; None without one.
        headers: the request's headers as (name, value) pairs, repeated names included.
        config: the request-header settings.
    Returns None without a certificate or without a non-empty username header (the request is
    then authenticated some other way). Raises :class:`FrontProxyRefused` when the certificate's
    common name is not allowed.
    """
    if peer_certificate_der is None:
        return None
    common_name = _common_name(peer_certificate_der)
    if config.allowed_names and common_name not in config.allowed_names:
        raise FrontProxyRefused(f"x509: subject with cn={common_name} is not in the allowed list")
    pairs = list(headers)
    name = _first_value(pairs, config.username_headers)
    if not name:
        return None
    groups = tuple(value for header in config.group_headers for key, value in pairs
                   if key.lower() == header.lower() and value)
    extra: dict[str, list[str]] = {}
    for prefix in config.extra_header_prefixes:
        for key, value in pairs:
            if len(key) >= len(prefix) and key[:len(prefix)].lower() == prefix.lower():
                extra.setdefault(unquote(key[len(prefix):].lower()), []).append(value)
    return UserInfo(name=name, groups=groups, extra=tuple(sorted((k, tuple(v)) for k, v in extra.items())))


def compute_request_header_config(data: Mapping[str, str]) -> RequestHeaderConfig:
    """The request-header settings in the ``extension-apiserver-authentication`` ConfigMap's
    ``data`` (keys ``requestheader-client-ca-file`` (PEM), ``requestheader-allowed-names``,
    ``-username-headers``, ``-group-headers``, ``-extra-headers-prefix`` (JSON string arrays)).
    Raises ValueError when the CA is missing or a list is not a JSON array of strings."""
    ca = data.get("requestheader-client-ca-file", "").strip()
    if not ca:
        raise ValueError(f"configmap {AUTHENTICATION_CONFIGMAP_NAMESPACE}/{AUTHENTICATION_CONFIGMAP_NAME} "
                         "has no requestheader-client-ca-file")
    return RequestHeaderConfig(
        client_ca_pem=ca + "\n",
        allowed_names=_json_strings(data, "requestheader-allowed-names"),
        username_headers=_json_strings(data, "requestheader-username-headers"),
        group_headers=_json_strings(data, "requestheader-group-headers"),
        extra_header_prefixes=_json_strings(data, "requestheader-extra-headers-prefix"))


def compute_bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value; None for any other value."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def compute_token_review(token: str) -> dict[str, Any]:
    """The TokenReview (``authentication.k8s.io/v1``) asking the Kubernetes API server who holds ``token``."""
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}


def compute_token_review_user(review: Mapping[str, Any]) -> UserInfo | None:
    """The user of an answered TokenReview (the JSON object), None when not authenticated."""
    status = review.get("status") or {}
    if not status.get("authenticated"):
        return None
    user = status.get("user") or {}
    if not user.get("username"):
        return None
    extra = user.get("extra") or {}
    return UserInfo(name=user["username"], uid=user.get("uid") or "", groups=tuple(user.get("groups") or ()),
                    extra=tuple(sorted((k, tuple(v or ())) for k, v in extra.items())))


def _common_name(der: bytes) -> str:
    names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value.decode() if isinstance(value, bytes) else value


def _first_value(pairs: list[tuple[str, str]], header_names: tuple[str, ...]) -> str:
    for header in header_names:
        for key, value in pairs:
            if key.lower() == header.lower():
                if value:
                    return value
                break  # Go's Header.Get: the first value of that header only
    return ""


def _json_strings(data: Mapping[str, str], key: str) -> tuple[str, ...]:
    text = data.get(key, "").strip()
    if not text:
        return ()
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} is not a JSON array of strings")
    return tuple(value)
