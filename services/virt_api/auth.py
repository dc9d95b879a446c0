"""Bearer-token authentication for virt-api.

Owns: creating/reading the one static token of an installation (random, 256 bits, in a 0600 file
in the state directory) and the aiohttp middleware that checks ``Authorization: Bearer <token>``
on every request except the health probes. There is one identity (the installation's admin); RBAC
is not modelled. A wrong or missing token is Kubernetes' 401 ``Unauthorized`` Status.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from shared.errors import Unauthorized

#: Paths answered without a token (probes, as kube-apiserver allows them to system:unauthenticated).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/livez"})


def apply_token_file(path: Path) -> str:
    """Return the token stored in ``path``, creating it (mode 0600) with a new random token first
    if the file does not exist. The token is URL-safe base64 text (43 characters)."""
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def is_authorized(header: str | None, token: str) -> bool:
    """True when ``header`` (the ``Authorization`` value) is ``Bearer <token>`` (constant-time compare)."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def bearer_token_middleware(token: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    """aiohttp middleware rejecting requests without the right bearer token (raises Unauthorized,
    which the error middleware renders as a Status)."""

    @web.middleware
    async def check_token(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        if request.path not in PUBLIC_PATHS and not is_authorized(request.headers.get("Authorization"), token):
            raise Unauthorized("Unauthorized")
        return await handler(request)

    return check_token
