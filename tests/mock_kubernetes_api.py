"""A mock Kubernetes API for the tests of the services that call a cluster's API server (named a
mock: no real API server can run here) — the CSI VolumeSnapshotter, and virt-api's delegated
authentication and authorization (TokenReview, SubjectAccessReview, the ConfigMap
kube-system/extension-apiserver-authentication) — served by aiohttp on 127.0.0.1 and reached by
the real ``kubernetes`` client through a kubeconfig (:func:`serve_mock`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

SNAP = "/apis/snapshot.storage.k8s.io/v1"
CUT = "2026-03-04T05:06:07Z"
NS = "default"


class MockKubernetesApi:
    """A mock Kubernetes API (no real API server can run here): serves only the paths the CSI
    snapshotter uses, from in-memory dicts — persistentvolumeclaims (get, create, delete),
    storageclasses, storageprofiles, volumesnapshotclasses, volumesnapshots — with Kubernetes'
    Status bodies for 404/409. A created claim gets ``status.phase: Pending`` (as the API server
    sets it); the test plays the CSI driver by binding it (:meth:`bind_claim`). ``cut_on_create`` / ``ready_on_create`` play the external-snapshotter (set
    ``status.creationTime`` / ``readyToUse`` on creation); ``fail`` maps a method+path to an
    HTTP status answered once; ``requests`` records (method, path).

    Reviews, as the Kubernetes API server answers them: a TokenReview is authenticated when its
    token is a key of ``tokens`` (value: the ``status.user`` object); a SubjectAccessReview is
    allowed when ``access(spec)`` says so (default: users in ``allowed_users``; a refusal has
    ``status.reason`` ``denied_reason``). ``token_reviews`` / ``access_reviews`` record the specs
    received. ``configmaps`` holds ConfigMaps by (namespace, name)."""

    def __init__(self) -> None:
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}
        self.storage_classes: dict[str, dict[str, Any]] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        self.classes: dict[str, dict[str, Any]] = {}
        self.snapshots: dict[tuple[str, str], dict[str, Any]] = {}
        self.cut_on_create = True
        self.ready_on_create = False
        self.fail: dict[tuple[str, str], int] = {}
        self.requests: list[tuple[str, str]] = []
        self.tokens: dict[str, dict[str, Any]] = {}
        self.allowed_users: set[str] = set()
        self.denied_reason = ""
        self.access: Any = lambda spec: spec["user"] in self.allowed_users
        self.token_reviews: list[dict[str, Any]] = []
        self.access_reviews: list[dict[str, Any]] = []
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.app = web.Application(middlewares=[self._middleware])
        r = self.app.router
        r.add_get("/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}", self._claim)
        r.add_post("/api/v1/namespaces/{ns}/persistentvolumeclaims", self._create_claim)
        r.add_delete("/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}", self._delete_claim)
        r.add_get("/apis/storage.k8s.io/v1/storageclasses/{name}", self._storage_class)
        r.add_get("/apis/cdi.kubevirt.io/v1beta1/storageprofiles/{name}", self._profile)
        r.add_get(SNAP + "/volumesnapshotclasses", self._classes)
        r.add_post(SNAP + "/namespaces/{ns}/volumesnapshots", self._create)
        r.add_get(SNAP + "/namespaces/{ns}/volumesnapshots/{name}", self._get)
        r.add_delete(SNAP + "/namespaces/{ns}/volumesnapshots/{name}", self._delete)
        r.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self._token_review)
        r.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", self._access_review)
        r.add_get("/api/v1/namespaces/{ns}/configmaps/{name}", self._configmap)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        code = self.fail.pop((request.method, request.path), None)
        if code is not None:
            return _status(code, "Injected", f"injected failure {code}")
        return await handler(request)

    def add_claim(self, name: str, storage_class: str | None, ns: str = NS) -> None:
        spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        if storage_class is not None:
            spec["storageClassName"] = storage_class
        self.claims[(ns, name)] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                   "metadata": {"name": name, "namespace": ns}, "spec": spec,
                                   "status": {"phase": "Bound"}}

    def bind_claim(self, name: str, ns: str = NS) -> None:
        """What the CSI driver and the PV controller do once the volume is provisioned."""
        claim = self.claims[(ns, name)]
        claim["spec"]["volumeName"] = f"pvc-{claim['metadata']['uid']}"
        claim["status"] = {"phase": "Bound", "accessModes": claim["spec"].get("accessModes"),
                           "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]}}

    def add_storage_class(self, name: str, provisioner: str) -> None:
        self.storage_classes[name] = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                      "metadata": {"name": name}, "provisioner": provisioner}

    def add_class(self, name: str, driver: str, default: bool = False) -> None:
        meta: dict[str, Any] = {"name": name}
        if default:
            meta["annotations"] = {"snapshot.storage.kubernetes.io/is-default-class": "true"}
        self.classes[name] = {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                              "metadata": meta, "driver": driver, "deletionPolicy": "Delete"}

    async def _claim(self, request: web.Request) -> web.Response:
        return _found(self.claims.get((request.match_info["ns"], request.match_info["name"])),
                      "persistentvolumeclaims", request.match_info["name"])

    async def _create_claim(self, request: web.Request) -> web.Response:
        ns, body = request.match_info["ns"], await request.json()
        name = body["metadata"]["name"]
        if (ns, name) in self.claims:
            return _status(409, "AlreadyExists", f'persistentvolumeclaims "{name}" already exists')
        body["metadata"].update(namespace=ns, uid=f"uid-{name}", creationTimestamp=CUT,
                                finalizers=["kubernetes.io/pvc-protection"])
        body["status"] = {"phase": "Pending"}
        self.claims[(ns, name)] = body
        return web.json_response(body, status=201)

    async def _delete_claim(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        obj = self.claims.pop((request.match_info["ns"], name), None)
        return _found(obj, "persistentvolumeclaims", name)

    async def _storage_class(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return _found(self.storage_classes.get(name), "storageclasses.storage.k8s.io", name)

    async def _profile(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return _found(self.profiles.get(name), "storageprofiles.cdi.kubevirt.io", name)

    async def _classes(self, _: web.Request) -> web.Response:
        return web.json_response({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClassList",
                                  "metadata": {}, "items": list(self.classes.values())})

    async def _create(self, request: web.Request) -> web.Response:
        ns, body = request.match_info["ns"], await request.json()
        name = body["metadata"]["name"]
        if (ns, name) in self.snapshots:
            return _status(409, "AlreadyExists",
                           f'volumesnapshots.snapshot.storage.k8s.io "{name}" already exists')
        body["metadata"].update(namespace=ns, uid=f"uid-{name}", creationTimestamp=CUT)
        status: dict[str, Any] = {}
        if self.cut_on_create:
            status["creationTime"] = CUT
        if self.ready_on_create:
            status.update(readyToUse=True, restoreSize="1Gi")
        if status:
            body["status"] = status
        self.snapshots[(ns, name)] = body
        return web.json_response(body, status=201)

    async def _get(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return _found(self.snapshots.get((request.match_info["ns"], name)),
                      "volumesnapshots.snapshot.storage.k8s.io", name)

    async def _delete(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        obj = self.snapshots.pop((request.match_info["ns"], name), None)
        return _found(obj, "volumesnapshots.snapshot.storage.k8s.io", name)


    async def _token_review(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.token_reviews.append(body["spec"])
        user = self.tokens.get(body["spec"].get("token", ""))
        body["status"] = {"authenticated": True, "user": user} if user is not None else {
            "authenticated": False, "error": "invalid bearer token"}
        return web.json_response(body, status=201)

    async def _access_review(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.access_reviews.append(body["spec"])
        body["status"] = {"allowed": True} if self.access(body["spec"]) else {
            "allowed": False, **({"reason": self.denied_reason} if self.denied_reason else {})}
        return web.json_response(body, status=201)

    async def _configmap(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return _found(self.configmaps.get((request.match_info["ns"], name)), "configmaps", name)


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                              "reason": reason, "code": code}, status=code)


def _found(obj: dict[str, Any] | None, resource: str, name: str) -> web.Response:
    if obj is None:
        return _status(404, "NotFound", f'{resource} "{name}" not found')
    return web.json_response(obj)


@asynccontextmanager
async def serve_mock(directory: Path) -> AsyncIterator[tuple[MockKubernetesApi, Path]]:
    """Serve a :class:`MockKubernetesApi` on 127.0.0.1; yields it and a kubeconfig (written in
    ``directory``) pointing at it."""
    mock = MockKubernetesApi()
    server = TestServer(mock.app, host="127.0.0.1")
    await server.start_server()
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "mock",
        "clusters": [{"name": "mock", "cluster": {"server": f"http://127.0.0.1:{server.port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "mock", "context": {"cluster": "mock", "user": "u"}}]}))
    try:
        yield mock, kubeconfig
    finally:
        await server.close()
