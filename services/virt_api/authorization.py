"""What a request asks to do, and how a refusal reads: virt-api's authorization decisions (pure;
the SubjectAccessReview calls are in :mod:`services.virt_api.delegation`).

Rules taken from k8s.io/apiserver:

- ``pkg/endpoints/request/requestinfo.go`` (RequestInfoFactory, prefixes ``api`` (no group) and
  ``apis``): ``/api/<v>/...`` and ``/apis/<group>/<v>/...`` are resource requests, everything
  else (``/apis``, ``/apis/<group>``, ``/openapi/v2``, ``/version``) non-resource requests with
  the lower-cased HTTP method as verb. The verb of a resource request comes from the method
  (POST create, GET/HEAD get, PUT update, PATCH patch, DELETE delete); a GET without a name is
  ``list``, or ``watch`` with ``?watch=true``; a DELETE without a name ``deletecollection``; a
  ``watch``/``proxy`` path segment after the version is the verb itself (the old watch paths).
  ``namespaces/<ns>/<resource>...`` names the namespace; ``namespaces/<ns>/status|finalize`` is
  the namespace object's subresource. A list whose ``fieldSelector`` pins ``metadata.name`` is
  checked for that name.
- ``plugin/pkg/authorizer/webhook`` and ``pkg/authorization/authorizerfactory/delegating.go``: a
  SubjectAccessReview (``authorization.k8s.io/v1``) carries the user, groups, uid, extra and
  either ``resourceAttributes`` or ``nonResourceAttributes``; ``status.allowed`` allows;
  ``status.reason`` explains a refusal. Members of ``system:masters`` are allowed without asking.
- ``pkg/endpoints/handlers/responsewriters/errors.go`` and apimachinery's ``NewForbidden``: the
  refusal's message (``<resource>.<group> "<name>" is forbidden: User "<u>" cannot <verb>
  resource "<resource>[/<sub>]" in API group "<group>" in the namespace "<ns>"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.virt_api.authentication import UserInfo
from shared.errors import Forbidden, InternalError

#: Groups whose members may do everything without a SubjectAccessReview (k8s.io/apiserver's default).
ALWAYS_ALLOW_GROUPS = frozenset({"system:masters"})

_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                 "DELETE": "delete"}
_PATH_VERBS = frozenset({"watch", "proxy"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_TRUE_VALUES = frozenset({"1", "t", "true"})  # Go's strconv.ParseBool, case-folded


@dataclass(frozen=True)
class RequestAttributes:
    """A request as an authorizer sees it (k8s.io/apiserver's ``authorizer.Attributes``).
    Resource requests fill ``api_group`` ... ``name`` (``""`` when absent); non-resource requests
    only ``verb`` and ``path``."""

    verb: str
    path: str
    is_resource_request: bool
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


def compute_request_attributes(method: str, path: str, query: Mapping[str, str]) -> RequestAttributes:
    """The attributes of ``method path?query`` (``query``: first value of each parameter).
    Raises InternalError for a ``watch``/``proxy`` path with nothing after it (kube-apiserver
    cannot make a RequestInfo of it either)."""
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    plain = RequestAttributes(verb=method.lower(), path=path, is_resource_request=False)
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return plain
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(parts) < 3:
            return plain
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]
    from_path = parts[0] in _PATH_VERBS
    if from_path:
        if len(parts) < 2:
            raise InternalError(f"unable to determine kind and namespace from url, {path}")
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    subresource = parts[2] if len(parts) >= 3 and verb != "proxy" else ""
    name = parts[1] if len(parts) >= 2 else ""
    resource = parts[0]
    if not name and verb == "get":
        verb = "watch" if query.get("watch", "").lower() in _TRUE_VALUES else "list"
        name = _name_from_field_selector(query.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"
    return RequestAttributes(verb=verb, path=path, is_resource_request=True, api_group=group, api_version=version,
                             namespace=namespace, resource=resource, subresource=subresource, name=name)


def compute_subject_access_review(user: UserInfo, attributes: RequestAttributes) -> dict[str, Any]:
    """The SubjectAccessReview (JSON object) asking whether ``user`` may do ``attributes``;
    empty attributes are left out, as the Go types' ``omitempty`` does."""
    spec: dict[str, Any] = {"user": user.name}
    if user.groups:
        spec["groups"] = list(user.groups)
    if user.extra:
        spec["extra"] = user.extra_dict()
    if user.uid:
        spec["uid"] = user.uid
    if attributes.is_resource_request:
        fields = {"namespace": attributes.namespace, "verb": attributes.verb, "group": attributes.api_group,
                  "version": attributes.api_version, "resource": attributes.resource,
                  "subresource": attributes.subresource, "name": attributes.name}
        spec["resourceAttributes"] = {k: v for k, v in fields.items() if v}
    else:
        spec["nonResourceAttributes"] = {"path": attributes.path, "verb": attributes.verb}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


@dataclass(frozen=True)
class AccessDecision:
    """An authorizer's answer: ``allowed``, and ``reason`` (why, possibly ``""``)."""

    allowed: bool
    reason: str = ""


def compute_access_decision(review: Mapping[str, Any]) -> AccessDecision:
    """The decision in an answered SubjectAccessReview (the JSON object): allowed only when
    ``status.allowed`` is true (denied and no-opinion both refuse: there is no other authorizer)."""
    status = review.get("status") or {}
    return AccessDecision(allowed=bool(status.get("allowed")), reason=str(status.get("reason") or ""))


def compute_always_allowed(user: UserInfo) -> bool:
    """True for members of :data:`ALWAYS_ALLOW_GROUPS` (no review is asked)."""
    return not ALWAYS_ALLOW_GROUPS.isdisjoint(user.groups)


def compute_forbidden(user: UserInfo, attributes: RequestAttributes, reason: str = "") -> Forbidden:
    """The 403 Status Kubernetes answers when ``user`` may not do ``attributes``."""
    if attributes.is_resource_request:
        resource = attributes.resource + (f"/{attributes.subresource}" if attributes.subresource else "")
        where = (f'in the namespace "{attributes.namespace}"' if attributes.namespace else "at the cluster scope")
        why = (f'User "{user.name}" cannot {attributes.verb} resource "{resource}" in API group '
               f'"{attributes.api_group}" {where}')
    else:
        why = f'User "{user.name}" cannot {attributes.verb} path "{attributes.path}"'
    why = why.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # as kube-apiserver sanitises
    if reason:
        why = f"{why}: {reason}"
    if not attributes.is_resource_request or not attributes.resource:
        return Forbidden(f"forbidden: {why}")
    qualified = attributes.resource + (f".{attributes.api_group}" if attributes.api_group else "")
    subject = f'{qualified} "{attributes.name}"' if attributes.name else qualified
    return Forbidden(f"{subject} is forbidden: {why}", name=attributes.name or None,
                     group=attributes.api_group or None, kind=attributes.resource)


def _name_from_field_selector(selector: str) -> str:
    """The name a field selector pins with ``metadata.name=<n>`` (or ``==``), if it is a valid
    path segment; else ``""``."""
    for term in selector.split(","):
        if "!=" in term:
            continue
        key, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if sep and key.strip() == "metadata.name":
            value = value.strip()
            if value and value not in (".", "..") and "/" not in value and "%" not in value:
                return value
    return ""
