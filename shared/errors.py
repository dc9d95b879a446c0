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
from typing import Any, ClassVar


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


class _FixedStatus(ApiError):
    """An :class:`ApiError` whose HTTP code and reason come from its class (``CODE``,
    ``REASON``); ``code=``/``reason=`` given to the constructor still win."""

    CODE: ClassVar[int] = 500
    REASON: ClassVar[str] = "InternalError"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("code", self.CODE)
        kwargs.setdefault("reason", self.REASON)
        super().__init__(message, **kwargs)


class BadRequest(_FixedStatus):
    """400: the request itself is malformed."""

    CODE = 400
    REASON = "BadRequest"


class Unauthorized(_FixedStatus):
    """401: missing or wrong bearer token."""

    CODE = 401
    REASON = "Unauthorized"


class Forbidden(_FixedStatus):
    """403: the caller may not do this."""

    CODE = 403
    REASON = "Forbidden"


class NotFound(_FixedStatus):
    """404: the object or resource does not exist."""

    CODE = 404
    REASON = "NotFound"


class MethodNotAllowed(_FixedStatus):
    """405: verb not supported here."""

    CODE = 405
    REASON = "MethodNotAllowed"


class AlreadyExists(_FixedStatus):
    """409: create of a name that exists."""

    CODE = 409
    REASON = "AlreadyExists"


class Conflict(_FixedStatus):
    """409: stale resourceVersion or a refused state change."""

    CODE = 409
    REASON = "Conflict"


class Gone(_FixedStatus):
    """410: resourceVersion older than the history kept."""

    CODE = 410
    REASON = "Expired"


class RequestTooLarge(_FixedStatus):
    """413: body over the limit."""

    CODE = 413
    REASON = "RequestEntityTooLarge"


class UnsupportedMediaType(_FixedStatus):
    """415: Content-Type not accepted."""

    CODE = 415
    REASON = "UnsupportedMediaType"


class Invalid(_FixedStatus):
    """422: the object breaks a validation rule; see causes."""

    CODE = 422
    REASON = "Invalid"


class TooManyRequests(_FixedStatus):
    """429: slow down."""

    CODE = 429
    REASON = "TooManyRequests"


class InternalError(_FixedStatus):
    """500: a bug or a lost dependency."""

    CODE = 500
    REASON = "InternalError"


class ServiceUnavailable(_FixedStatus):
    """503: a dependency (NATS, libvirt) is unreachable."""

    CODE = 503
    REASON = "ServiceUnavailable"


class Timeout(_FixedStatus):
    """504: the server could not finish in time (e.g. a resourceVersion it has not reached yet)."""

    CODE = 504
    REASON = "Timeout"


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
