"""Authentication and authorization of every virt-api request (the aiohttp middleware).

Owns: the installation's static bearer token (random, 256 bits, in a 0600 file in the state
directory), and :class:`RequestAuth`, which decides who sent a request and whether they may do it,
by ``--authorization-mode``:

- ``token`` (the embedded installation's default): ``Authorization: Bearer <token>`` with the
  installation's token is its admin, who may do everything; nothing else is accepted.
- ``delegated`` (an aggregated API server on a Kubernetes cluster, as k8s.io/apiserver's
  delegated authentication and authorization work): a request proxied by the Kubernetes API
  server (front-proxy client certificate, user in ``X-Remote-User`` etc.:
  :func:`services.virt_api.authentication.compute_front_proxy_user`) is that user; any other
  request needs a bearer token the cluster knows (TokenReview). What the user may do is asked with
  a SubjectAccessReview (:mod:`services.virt_api.delegation`), except for ``system:masters``.

The health probes (:data:`PUBLIC_PATHS`) need neither. A request nobody is authenticated for gets
Kubernetes' 401 ``Unauthorized`` Status; an authenticated one that may not, its 403 ``Forbidden``
Status (:func:`services.virt_api.authorization.compute_forbidden`).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from services.virt_api.authentication import (
    INSTALLATION_ADMIN,
    FrontProxyRefused,
    RequestHeaderConfig,
    UserInfo,
    compute_bearer_token,
    compute_front_proxy_user,
)
from services.virt_api.authorization import compute_always_allowed, compute_forbidden, compute_request_attributes
from services.virt_api.delegation import KubernetesDelegate
from shared.errors import InternalError, Unauthorized

log = logging.getLogger("kubevirt.virt_api")

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


class RequestAuth:
    """Who sent a request and whether they may do it (see the module docstring).

    Args:
        token: the installation's bearer token (``token`` mode), else None.
        request_header: the front proxy's settings, or None when front-proxied requests are not
            accepted (the serving TLS context must then not ask for client certificates).
        delegate: the reviews asked of the Kubernetes API server (``delegated`` mode), else None:
            every authenticated user may then do everything.
    """

    def __init__(self, *, token: str | None = None, request_header: RequestHeaderConfig | None = None,
                 delegate: KubernetesDelegate | None = None) -> None:
        self.token = token
        self.request_header = request_header
        self.delegate = delegate

    async def authenticate(self, request: web.Request) -> UserInfo:
        """The request's user; raises Unauthorized when there is none."""
        if self.request_header is not None:
            try:
                user = compute_front_proxy_user(_peer_certificate(request), request.headers.items(),
                                                self.request_header)
            except FrontProxyRefused as err:
                log.info("front-proxy client certificate refused: %s", err)
                user = None
            if user is not None:
                return user
        token = compute_bearer_token(request.headers.get("Authorization"))
        if token is not None:
            if self.delegate is not None:
                try:
                    user = await self.delegate.review_token(token)
                except Exception as err:  # noqa: BLE001 - an unanswered review authenticates nobody
                    log.warning("TokenReview failed: %s: %s", type(err).__name__, err)
                    user = None
                if user is not None:
                    return user
            elif self.token is not None and hmac.compare_digest(token.encode(), self.token.encode()):
                return UserInfo(name=INSTALLATION_ADMIN)
        raise Unauthorized("Unauthorized")

    async def authorize(self, user: UserInfo, request: web.Request) -> None:
        """Return when ``user`` may do ``request``; raise Forbidden otherwise (InternalError when
        the cluster could not be asked)."""
        if self.delegate is None or compute_always_allowed(user):
            return
        attributes = compute_request_attributes(request.method, request.path, request.query)
        try:
            decision = await self.delegate.review_access(user, attributes)
        except Exception as err:  # noqa: BLE001 - shown as a 500 Status, as kube-apiserver does
            log.warning("SubjectAccessReview failed: %s: %s", type(err).__name__, err)
            raise InternalError(f"Internal error occurred: the authorization check failed: {type(err).__name__}") \
                from err
        if not decision.allowed:
            raise compute_forbidden(user, attributes, decision.reason)


#: Where the middleware leaves the authenticated :class:`UserInfo` on the request.
USER_KEY: web.RequestKey[UserInfo] = web.RequestKey("kubevirt.user", UserInfo)


def auth_middleware(auth: RequestAuth) -> Callable[..., Awaitable[web.StreamResponse]]:
    """aiohttp middleware authenticating and authorizing every request but the health probes
    (raises Unauthorized / Forbidden, which the error middleware renders as a Status)."""

    @web.middleware
    async def check(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        if request.path not in PUBLIC_PATHS:
            user = await auth.authenticate(request)
            await auth.authorize(user, request)
            request[USER_KEY] = user
        return await handler(request)

    return check


def _peer_certificate(request: web.Request) -> bytes | None:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
