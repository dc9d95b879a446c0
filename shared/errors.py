"""API errors in Kubernetes' shape.

Every failure a user can see is an :class:`ApiError`: it carries the HTTP code,
the Kubernetes ``reason`` (``NotFound``, ``AlreadyExists``, ``Conflict``,
``Invalid``, ``BadRequest``, ``Gone``...), a message and, for ``Invalid``, the
list of causes with their field paths. ``to_status()`` renders the
``meta.k8s.io/v1`` ``Status`` body that kubectl and the ``kubernetes`` client
understand (source: k8s.io/apimachinery ``pkg/api/errors``).

Tree::

    ApiError
    ├── BadRequest        400
    ├── Unauthorized      401
    ├── Forbidden         403
    ├── NotFound          404
    ├── MethodNotAllowed  405
    ├── AlreadyExists     409 (reason AlreadyExists)
    ├── Conflict          409 (reason Conflict)
    ├── Gone              410 (watch from a compacted resourceVersion)
    ├── RequestTooLarge   413
    ├── UnsupportedMediaType 415
    ├── Invalid           422 (causes name the fields)
    ├── TooManyRequests   429
    ├── InternalError     500
    └── ServiceUnavailable 503
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StatusCause:
    """One reason an object was refused.

    ``field`` is the JSON path as Kubernetes writes it (``spec.domain.devices.disks[0].name``);
    ``reason`` is a ``CauseType`` such as ``FieldValueInvalid``, ``FieldValueRequired``,
    ``FieldValueNotSupported``, ``FieldValueDuplicate`` or ``FieldValueForbidden``.
    """

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


@dataclass
class ApiError(Exception):
    """Base of every API error; ``code`` is the HTTP status, ``reason`` Kubernetes' StatusReason."""

    message: str
    code: int = 500
    reason: str = "InternalError"
    kind: str | None = None
    name: str | None = None
    group: str | None = None
    causes: list[StatusCause] = field(default_factory=list)
    retry_after_seconds: int | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def to_status(self) -> dict[str, Any]:
        """The ``Status`` object for this error, as a JSON-ready dict."""
        details: dict[str, Any] = {}
        if self.name is not None:
            details["name"] = self.name
        if self.group is not None:
            details["group"] = self.group
        if self.kind is not None:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after_seconds is not None:
            details["retryAfterSeconds"] = self.retry_after_seconds
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            status["details"] = details
        return status


def _subclass(name: str, code: int, reason: str, doc: str) -> type[ApiError]:
    def __init__(self, message: str, **kwargs: Any) -> None:  # noqa: N807
        kwargs.setdefault("code", code)
        kwargs.setdefault("reason", reason)
        ApiError.__init__(self, message, **kwargs)

    cls = type(name, (ApiError,), {"__init__": __init__, "__doc__": doc})
    return dataclass(eq=False, init=False)(cls)  # keep ApiError's fields and repr


BadRequest = _subclass("BadRequest", 400, "BadRequest", "400: the request itself is malformed.")
Unauthorized = _subclass("Unauthorized", 401, "Unauthorized", "401: missing or wrong bearer token.")
Forbidden = _subclass("Forbidden", 403, "Forbidden", "403: the caller may not do this.")
NotFound = _subclass("NotFound", 404, "NotFound", "404: the object or resource does not exist.")
MethodNotAllowed = _subclass("MethodNotAllowed", 405, "MethodNotAllowed", "405: verb not supported here.")
AlreadyExists = _subclass("AlreadyExists", 409, "AlreadyExists", "409: create of a name that exists.")
Conflict = _subclass("Conflict", 409, "Conflict", "409: stale resourceVersion or a refused state change.")
Gone = _subclass("Gone", 410, "Expired", "410: resourceVersion older than the history kept.")
RequestTooLarge = _subclass("RequestTooLarge", 413, "RequestEntityTooLarge", "413: body over the limit.")
UnsupportedMediaType = _subclass(
    "UnsupportedMediaType", 415, "UnsupportedMediaType", "415: Content-Type not accepted."
)
Invalid = _subclass("Invalid", 422, "Invalid", "422: the object breaks a validation rule; see causes.")
TooManyRequests = _subclass("TooManyRequests", 429, "TooManyRequests", "429: slow down.")
InternalError = _subclass("InternalError", 500, "InternalError", "500: a bug or a lost dependency.")
ServiceUnavailable = _subclass(
    "ServiceUnavailable", 503, "ServiceUnavailable", "503: a dependency (NATS, libvirt) is unreachable."
)
Timeout = _subclass("Timeout", 504, "Timeout", "504: the server could not finish in time (e.g. a "
                    "resourceVersion it has not reached yet).")


def invalid(kind: str, name: str | None, causes: list[StatusCause], group: str = "kubevirt.io") -> ApiError:
    """An ``Invalid`` error with Kubernetes' message format:
    ``<Kind> "<name>" is invalid: <field>: <message>, ...``."""
    summary = ", ".join(f"{c.field}: {c.message}" if c.field else c.message for c in causes)
    shown = f'"{name}"' if name else ""
    return Invalid(
        f"{kind}.{group} {shown} is invalid: {summary}".replace("  ", " "),
        kind=kind,
        name=name,
        group=group,
        causes=causes,
    )
