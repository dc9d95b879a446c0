"""The ``paths`` of virt-api's OpenAPI documents: one entry per served operation.

For each resource of :mod:`shared.api.resources`: list/watch/create/deletecollection on the
collection, get/replace/patch/delete on an object, and the ``/status`` subresource, with
kube-apiserver's query parameters (``dryRun``, ``fieldManager``, ``fieldValidation``, list
options) and ``x-kubernetes-group-version-kind`` on each operation, which is how kubectl decides
to validate on the server. Swagger 2.0 (``v3=False``) or OpenAPI 3.0 parameter shapes.
:func:`compute_trace_paths` adds the ``trace`` subresource of ``subresources.kubevirt.io``
(:mod:`services.virt_api.trace_subresource`).
"""

from __future__ import annotations

from typing import Any

from services.virt_api.openapi_names import META, V2_REF, V3_REF, compute_gvk, definition_name
from services.virt_api.subresources import SUBRESOURCE_GROUP
from services.virt_api.trace_subresource import TRACE, TRACE_KIND, TRACED_PLURALS
from shared.api.resources import ResourceInfo

#: Definition name of the ``trace`` subresource's answer.
TRACE_DEFINITION = f"io.kubevirt.subresources.v1.{TRACE_KIND}"


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "type": kind, "uniqueItems": True}


WRITE_PARAMS = (
    _query("dryRun", "When present (All), the request is validated but nothing is stored."),
    _query("fieldManager", "Name of the actor making the change."),
    _query("fieldValidation", "How unknown fields are handled: Strict (rejected), Warn (dropped with a "
                              "warning, the default) or Ignore (dropped)."),
)
LIST_PARAMS = (
    _query("labelSelector", "Only objects whose labels match."),
    _query("fieldSelector", "Only objects whose fields match (metadata.name, metadata.namespace)."),
    _query("resourceVersion", "List or watch from this resourceVersion."),
    _query("watch", "Stream changes (ADDED, MODIFIED, DELETED) instead of listing.", "boolean"),
    _query("allowWatchBookmarks", "Send BOOKMARK events.", "boolean"),
    _query("timeoutSeconds", "End the list or watch after this many seconds.", "integer"),
    _query("limit", "At most this many items.", "integer"),
    _query("continue", "Continue token of a previous list."),
)
DELETE_PARAMS = (
    _query("gracePeriodSeconds", "Seconds before the object is deleted.", "integer"),
    _query("propagationPolicy", "Orphan, Background or Foreground deletion of dependents."),
    _query("dryRun", "When present (All), nothing is deleted."),
)
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json")
BODY_TYPES = ("application/json", "application/yaml")


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "type": "string", "uniqueItems": True}


def _v3_param(param: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in param.items() if k not in ("type", "uniqueItems")}
    out["schema"] = {"type": param["type"], "uniqueItems": True}
    return out


def _operation(
    resource: ResourceInfo, action: str, verb: str, *, v3: bool, body: str | None, response: str,
    params: tuple[dict[str, Any], ...], status: int = 200, scope: str = "", subresource: str = "",
) -> dict[str, Any]:
    prefix = V3_REF if v3 else V2_REF
    kind = resource.kind
    operation_id = f"{verb}{scope}{kind}{subresource}"
    op: dict[str, Any] = {
        "description": f"{verb} {'' if not subresource else subresource.lower() + ' of '}{kind}",
        "operationId": operation_id,
        "tags": [resource.group.replace(".", "_") + "_" + resource.version if resource.group else "core_v1"],
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": compute_gvk(resource),
        "parameters": [_v3_param(p) for p in params] if v3 else list(params),
        "responses": {},
    }
    response_schema = {"$ref": prefix + response}
    codes = [status] + ([201] if verb in ("create", "replace") else []) + ([202] if verb == "delete" else [])
    for code in codes:
        if v3:
            op["responses"][str(code)] = {
                "description": "OK",
                "content": {t: {"schema": response_schema} for t in BODY_TYPES},
            }
        else:
            op["responses"][str(code)] = {"description": "OK", "schema": response_schema}
    op["responses"]["401"] = {"description": "Unauthorized"}
    if body is not None:
        body_types = PATCH_TYPES if action == "patch" else BODY_TYPES
        if v3:
            content = {t: {"schema": {"$ref": prefix + body}} for t in body_types}
            op["requestBody"] = {"required": True, "content": content}
        else:
            op["consumes"] = list(body_types)
            op["parameters"].append({"name": "body", "in": "body", "required": True, "schema": {"$ref": prefix + body}})
    if not v3:
        op["produces"] = list(BODY_TYPES)
        op["schemes"] = ["https"]
    return op


def compute_paths(resource: ResourceInfo, *, v3: bool) -> dict[str, dict[str, Any]]:
    """Path items of one resource: collection, item and ``/status`` (when a subresource)."""
    if resource.type is None:
        return {}
    base = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
    name = definition_name(resource.type)
    list_name = name.rsplit(".", 1)[0] + "." + resource.list_kind
    status_name = f"{META}.Status"
    scope = "Namespaced" if resource.namespaced else ""
    collection = (f"{base}/namespaces/{{namespace}}/{resource.plural}" if resource.namespaced
                  else f"{base}/{resource.plural}")
    item = f"{collection}/{{name}}"
    path_params = [_path_param("namespace")] if resource.namespaced else []
    item_params = [_path_param("name"), *path_params]

    def common(params: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [_v3_param(p) for p in params] if v3 else params

    def op(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return _operation(resource, *args, v3=v3, scope=scope, **kwargs)

    paths: dict[str, dict[str, Any]] = {
        collection: {
            "parameters": common(path_params),
            "get": op("list", "list", body=None, response=list_name, params=LIST_PARAMS),
            "post": op("post", "create", body=name, response=name, params=WRITE_PARAMS),
            "delete": op("deletecollection", "deleteCollection", body=None, response=status_name,
                         params=LIST_PARAMS + DELETE_PARAMS),
        },
        item: {
            "parameters": common(item_params),
            "get": op("get", "read", body=None, response=name, params=()),
            "put": op("put", "replace", body=name, response=name, params=WRITE_PARAMS),
            "patch": op("patch", "patch", body=f"{META}.Patch", response=name,
                        params=WRITE_PARAMS + (_query("force", "Force server-side apply.", "boolean"),)),
            "delete": op("delete", "delete", body=None, response=status_name, params=DELETE_PARAMS),
        },
    }
    if resource.namespaced:
        paths[f"{base}/{resource.plural}"] = {
            "get": _operation(resource, "list", "list", v3=v3, body=None, response=list_name, params=LIST_PARAMS,
                              scope="", subresource="ForAllNamespaces"),
        }
    if resource.has_status_subresource:
        paths[f"{item}/status"] = {
            "parameters": common(item_params),
            "get": op("get", "read", body=None, response=name, params=(), subresource="Status"),
            "put": op("put", "replace", body=name, response=name, params=WRITE_PARAMS, subresource="Status"),
            "patch": op("patch", "patch", body=f"{META}.Patch", response=name, params=WRITE_PARAMS,
                        subresource="Status"),
        }
    return paths


def compute_trace_paths(resource: ResourceInfo, *, v3: bool) -> dict[str, dict[str, Any]]:
    """The ``GET .../<plural>/{name}/trace`` path item of ``subresources.kubevirt.io/v1`` for a
    resource that has one ({} otherwise); the answer is :data:`TRACE_DEFINITION`."""
    if resource.plural not in TRACED_PLURALS or not resource.namespaced:
        return {}
    path = f"/apis/{SUBRESOURCE_GROUP}/v1/namespaces/{{namespace}}/{resource.plural}/{{name}}/{TRACE}"
    params = [_path_param("name"), _path_param("namespace")]
    get = _operation(resource, "get", "get", v3=v3, body=None, response=TRACE_DEFINITION, params=(),
                     scope="Namespaced", subresource=TRACE.capitalize())
    get["tags"] = [SUBRESOURCE_GROUP.replace(".", "_") + "_v1"]
    get["responses"]["404"] = {"description": "Not Found: the object does not exist"}
    return {path: {"parameters": [_v3_param(p) for p in params] if v3 else params, "get": get}}
