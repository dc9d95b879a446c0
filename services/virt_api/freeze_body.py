"""The body of the VMI ``freeze`` subresource: ``{"unfreezeTimeout": "<Go duration>"}``
(KubeVirt ``v1.FreezeUnfreezeTimeout``), read as KubeVirt's virt-handler reads it
(``pkg/virt-handler/rest/lifecycle.go`` FreezeHandler) with its 400 answers:

* no body, or no ``unfreezeTimeout`` (or null): "Unfreeze timeout in freeze request is not set";
* a body that is not JSON/YAML, or a timeout that is not a duration string:
  "failed to unmarshal unfreeze timeout";
* a timeout under one second (KubeVirt would then freeze without a safety thaw; here the handler
  always needs one, so it is refused): "Unfreeze timeout in freeze request must be at least 1s".

Whole seconds are kept (Go's ``int32(d.Seconds())`` truncates the same way).
"""

from __future__ import annotations

from typing import Any

from services.virt_api.negotiation import decode_document
from shared.admission.go_duration import DurationError, parse_go_duration
from shared.errors import ApiError, BadRequest

TIMEOUT_NOT_SET = "Unfreeze timeout in freeze request is not set"
UNREADABLE_TIMEOUT = "failed to unmarshal unfreeze timeout"
TIMEOUT_TOO_SHORT = "Unfreeze timeout in freeze request must be at least 1s"


def compute_unfreeze_timeout_seconds(body: bytes, content_type: str | None) -> int:
    """Whole seconds of the body's ``unfreezeTimeout``; raises BadRequest (400) as listed in
    the module doc."""
    if not body.strip():
        raise BadRequest(TIMEOUT_NOT_SET)
    try:
        document: Any = decode_document(body, content_type or "application/json")
    except ApiError:
        raise BadRequest(UNREADABLE_TIMEOUT) from None
    if not isinstance(document, dict):
        raise BadRequest(UNREADABLE_TIMEOUT)
    value = document.get("unfreezeTimeout")
    if value is None:
        raise BadRequest(TIMEOUT_NOT_SET)
    if not isinstance(value, str):
        raise BadRequest(UNREADABLE_TIMEOUT)
    try:
        seconds = int(parse_go_duration(value))
    except DurationError:
        raise BadRequest(UNREADABLE_TIMEOUT) from None
    if seconds < 1:
        raise BadRequest(TIMEOUT_TOO_SHORT)
    return seconds
