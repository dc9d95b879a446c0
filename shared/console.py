"""The serial-console protocol between virt-api and virt-handler over NATS.

Owns the subjects and the one message type; the two ends are
``services.virt_handler.console`` (owns the guest's serial port) and
``services.virt_api.console`` (the WebSocket subresource KubeVirt serves at
``/apis/subresources.kubevirt.io/v1/namespaces/<ns>/virtualmachineinstances/<name>/console``).

A session:

1. virt-api picks a random ``session`` id, subscribes to ``session_subject(session, "out")``
   and ``session_subject(session, "close")``, then sends ``ConsoleOpen`` as a request on
   ``console_open_subject(node)``; the reply is a ``shared.events.CommandResult`` (200, or
   404 / 409 with KubeVirt's message).
2. Bytes from the guest arrive on ``.out``, bytes for the guest go to ``.in`` (raw payloads).
   An empty payload is a keepalive; each side sends one every :data:`KEEPALIVE_SECONDS` and
   ends the session after :data:`IDLE_TIMEOUT_SECONDS` without any message from the other
   (so a killed virt-api or handler never leaves a session open).
3. Either side publishes the reason (UTF-8) on ``.close`` to end it. A new session for the same
   VMI replaces the old one (the old one is closed with :data:`REPLACED`), so readers attach in turn.
"""

from __future__ import annotations

import msgspec

from shared.events import SUBJECT_PREFIX, encode_token

KEEPALIVE_SECONDS = 5.0
IDLE_TIMEOUT_SECONDS = 20.0
REPLACED = "console connection replaced by a newer one"
GUEST_STOPPED = "the guest's serial console closed (VMI stopped)"


def console_open_subject(node_name: str) -> str:
    """Request subject on which the virt-handler of ``node_name`` opens console sessions."""
    return f"{SUBJECT_PREFIX}.handler.{encode_token(node_name)}.console"


def session_subject(session: str, direction: str) -> str:
    """``direction``: ``"in"`` (to the guest), ``"out"`` (from the guest) or ``"close"``."""
    if direction not in ("in", "out", "close"):
        raise ValueError(f"direction must be in, out or close, not {direction!r}")
    return f"{SUBJECT_PREFIX}.console.{session}.{direction}"


class ConsoleOpen(msgspec.Struct, tag="ConsoleOpen", tag_field="kind", kw_only=True, omit_defaults=True):
    """Open the serial console of VMI ``namespace/name`` (``uid`` must match when set) for
    ``session`` (a random token of ``[0-9a-f]``)."""

    namespace: str
    name: str
    session: str
    uid: str = ""


_open_decoder = msgspec.json.Decoder(ConsoleOpen)


def decode_open(data: bytes) -> ConsoleOpen:
    """Decode a ``ConsoleOpen`` request; raises ``msgspec.ValidationError``/``DecodeError``."""
    return _open_decoder.decode(data)
