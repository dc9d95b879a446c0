"""Delegated authentication and authorization: virt-api asks the Kubernetes API server.

Owns the calls an aggregated API server makes to the cluster it extends (k8s.io/apiserver's
delegating authenticator and authorizer): TokenReview for a bearer token, SubjectAccessReview
for a request, and reading the request-header settings from the ConfigMap
``kube-system/extension-apiserver-authentication``. Answers are kept for a short while
(:data:`CACHE_TTL`, k8s.io/apiserver's defaults for both allowed and denied decisions and for
token reviews), so a burst of requests costs one review. The bodies and their reading are the pure
functions of :mod:`services.virt_api.authentication` and :mod:`services.virt_api.authorization`.

The ``kubernetes`` client is synchronous: each call runs in a thread (:func:`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from services.virt_api.authentication import (
    AUTHENTICATION_CONFIGMAP_NAME,
    AUTHENTICATION_CONFIGMAP_NAMESPACE,
    RequestHeaderConfig,
    UserInfo,
    compute_request_header_config,
    compute_token_review,
    compute_token_review_user,
)
from services.virt_api.authorization import (
    AccessDecision,
    RequestAttributes,
    compute_access_decision,
    compute_subject_access_review,
)

#: Seconds an answer (allowed or denied, authenticated or not) is reused.
CACHE_TTL = 10.0
#: Answers kept at most per cache (the oldest go first).
CACHE_SIZE = 4096
#: Seconds one review may take.
REQUEST_TIMEOUT = 10.0

K = TypeVar("K")
V = TypeVar("V")


class DecisionCache(Generic[K, V]):
    """Answers by key for ``ttl`` seconds (``clock``: a monotonic clock in seconds), at most
    ``size`` of them."""

    def __init__(self, ttl: float = CACHE_TTL, size: int = CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> tuple[bool, V | None]:
        """(True, answer) while ``key``'s answer is fresh; (False, None) otherwise."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if self.clock() >= entry[0]:
            del self._entries[key]
            return False, None
        return True, entry[1]

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` for ``key`` for ``ttl`` seconds."""
        self._entries.pop(key, None)
        self._entries[key] = (self.clock() + self.ttl, value)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


class KubernetesDelegate:
    """Reviews asked of the Kubernetes API server through ``api_client`` (a
    ``kubernetes.client.ApiClient``, :func:`shared.kube_client.apply_api_client`). Failures of
    the call raise the ``kubernetes`` client's exceptions."""

    def __init__(self, api_client: Any, *, ttl: float = CACHE_TTL) -> None:
        from kubernetes import client

        self.api_client = api_client
        self._authn = client.AuthenticationV1Api(api_client)
        self._authz = client.AuthorizationV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._tokens: DecisionCache[str, UserInfo | None] = DecisionCache(ttl)
        self._access: DecisionCache[tuple[UserInfo, RequestAttributes], AccessDecision] = DecisionCache(ttl)

    async def review_token(self, token: str) -> UserInfo | None:
        """Who holds ``token`` (None: nobody the cluster knows)."""
        key = hashlib.sha256(token.encode()).hexdigest()  # the token itself is not kept
        fresh, user = self._tokens.get(key)
        if fresh:
            return user
        body: Any = compute_token_review(token)  # the client sends a dict body as it is
        answer = await asyncio.to_thread(self._authn.create_token_review, body, _request_timeout=REQUEST_TIMEOUT)
        user = compute_token_review_user(self.api_client.sanitize_for_serialization(answer))
        self._tokens.put(key, user)
        return user

    async def review_access(self, user: UserInfo, attributes: RequestAttributes) -> AccessDecision:
        """Whether ``user`` may do ``attributes`` (a SubjectAccessReview)."""
        fresh, decision = self._access.get((user, attributes))
        if fresh and decision is not None:
            return decision
        body: Any = compute_subject_access_review(user, attributes)
        answer = await asyncio.to_thread(self._authz.create_subject_access_review, body,
                                         _request_timeout=REQUEST_TIMEOUT)
        decision = compute_access_decision(self.api_client.sanitize_for_serialization(answer))
        self._access.put((user, attributes), decision)
        return decision

    async def read_request_header_config(self) -> RequestHeaderConfig:
        """The front proxy's settings from ``kube-system/extension-apiserver-authentication``.
        Raises ValueError when they are missing or malformed."""
        configmap = await asyncio.to_thread(self._core.read_namespaced_config_map, AUTHENTICATION_CONFIGMAP_NAME,
                                            AUTHENTICATION_CONFIGMAP_NAMESPACE, _request_timeout=REQUEST_TIMEOUT)
        return compute_request_header_config(configmap.data or {})

    def close(self) -> None:
        """Release the client's connections."""
        self.api_client.close()
