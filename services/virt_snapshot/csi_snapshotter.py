"""The CSI VolumeSnapshotter: ``snapshot.storage.k8s.io/v1`` VolumeSnapshots on a Kubernetes cluster.

For an installation whose claims live in a Kubernetes cluster with a CSI driver and the
external-snapshotter (``virt-snapshot --volume-snapshotter csi``). Each copy is one VolumeSnapshot
in the request's namespace, named by the copy's ``volumeSnapshotName``, as KubeVirt's
``pkg/storage/snapshot/snapshot.go`` createVolumeSnapshot makes it:

- ``spec.source.persistentVolumeClaimName`` = the claim, ``spec.volumeSnapshotClassName`` chosen
  by :func:`choose_volume_snapshot_class` (KubeVirt getVolumeSnapshotClassName), labels
  ``snapshot.kubevirt.io/source-vm-name`` / ``-namespace``. KubeVirt also sets an ownerReference
  to the VirtualMachineSnapshotContent; here the content lives in kubevirt-py's store, not in the
  cluster, so no ownerReference is written (the cluster's garbage collector would look for an
  owner it cannot find); the content controller deletes the VolumeSnapshots explicitly.
- :meth:`CsiSnapshotter.begin` creates the missing ones (an existing one is kept: idempotent) and
  returns once every one has ``status.creationTime`` (the cut is taken: the caller's
  freeze→thaw window covers it, as KubeVirt unfreezes only then).
- :meth:`CsiSnapshotter.poll` maps ``status.readyToUse``, ``status.error.message`` and
  ``status.restoreSize``; cancel and delete delete the VolumeSnapshots (absent ones are fine).
- Restored claims (the restore controller's claim half) are PersistentVolumeClaims created in the
  cluster with the VolumeSnapshot as ``dataSource``/``dataSourceRef`` (the CSI driver provisions
  them from it) and read back from there; the restore controller looks again every
  ``claim_poll_interval`` seconds until they are Bound. Their ``ownerReferences`` (to the
  VirtualMachine, KubeVirt's volumeOwnershipPolicy Vm) are not written, for the same reason as
  above: the VM lives in kubevirt-py's store, and the cluster's garbage collector would delete a
  claim whose owner it cannot find.

The ``kubernetes`` client is synchronous: every call runs in a thread (:func:`asyncio.to_thread`).
Kubernetes API errors become :class:`SnapshotterError` (retryable for 5xx, 429, timeouts and
connection failures).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from services.virt_snapshot.volume_snapshotter import (
    VOLUME_SNAPSHOT_API_GROUP,
    VOLUME_SNAPSHOT_KIND,
    ClaimState,
    CopyStatus,
    SnapshotRequest,
    SnapshotterError,
    VolumeRequest,
    volume_snapshot_reference,
)
from shared.api.snapshot_vocabulary import SNAPSHOT_SOURCE_NAME_LABEL, SNAPSHOT_SOURCE_NAMESPACE_LABEL
from shared.api.storage import TypedLocalObjectReference
from shared.api.vocabulary import format_time, parse_time, utc_now

VOLUME_SNAPSHOT_VERSION = "v1"
VOLUME_SNAPSHOTS = "volumesnapshots"
VOLUME_SNAPSHOT_CLASSES = "volumesnapshotclasses"
#: KubeVirt's defaultVolumeSnapshotClassAnnotation (its presence marks the default class)
DEFAULT_CLASS_ANNOTATION = "snapshot.storage.kubernetes.io/is-default-class"
#: CDI's StorageProfile: its ``status.snapshotClass`` wins over the driver match (KubeVirt)
STORAGE_PROFILE_GROUP, STORAGE_PROFILE_VERSION, STORAGE_PROFILES = "cdi.kubevirt.io", "v1beta1", "storageprofiles"

class NoSnapshotClass(Exception):
    """No usable VolumeSnapshotClass for a storage class; ``str()`` is KubeVirt's message."""


def choose_volume_snapshot_class(storage_class_name: str, provisioner: str | None, profile_class: str | None,
                                 classes: Sequence[Mapping[str, Any]], volume_name: str) -> str:
    """The VolumeSnapshotClass for a claim of ``storage_class_name`` (KubeVirt getVolumeSnapshotClassName).

    Args:
        storage_class_name: the claim's ``spec.storageClassName``.
        provisioner: that StorageClass's provisioner (None: the StorageClass does not exist).
        profile_class: the CDI StorageProfile's ``status.snapshotClass`` (None/"": no profile or unset).
        classes: every VolumeSnapshotClass (objects as the API serves them).
        volume_name: the VM's volume (for the message).
    Returns the profile's class when set and it exists; else the only class whose ``driver`` is the
    provisioner; else, of several, the first carrying the ``is-default-class`` annotation.
    Raises :class:`NoSnapshotClass` ("No VolumeSnapshotClass: Volume snapshots are not configured
    for this StorageClass [sc] [volume]" or "N matching VolumeSnapshotClasses for sc").
    """
    none = NoSnapshotClass(f"No VolumeSnapshotClass: Volume snapshots are not configured for this StorageClass "
                           f"[{storage_class_name}] [{volume_name}]")
    if provisioner is None:
        raise none
    names = [(c.get("metadata") or {}).get("name") for c in classes]
    if profile_class:
        if profile_class in names:
            return profile_class
        raise none
    matches = [c for c in classes if c.get("driver") == provisioner]
    if not matches:
        raise none
    if len(matches) == 1:
        return str(matches[0]["metadata"]["name"])
    for match in matches:
        if DEFAULT_CLASS_ANNOTATION in ((match.get("metadata") or {}).get("annotations") or {}):
            return str(match["metadata"]["name"])
    raise NoSnapshotClass(f"{len(matches)} matching VolumeSnapshotClasses for {storage_class_name}")


def volume_snapshot_body(request: SnapshotRequest, volume: VolumeRequest, class_name: str) -> dict[str, Any]:
    """The VolumeSnapshot to create for ``volume`` of ``request`` (see the module docstring)."""
    return {"apiVersion": f"{VOLUME_SNAPSHOT_API_GROUP}/{VOLUME_SNAPSHOT_VERSION}", "kind": VOLUME_SNAPSHOT_KIND,
            "metadata": {"name": volume.volume_snapshot_name, "namespace": request.namespace,
                         "labels": {SNAPSHOT_SOURCE_NAME_LABEL: request.vm_name,
                                    SNAPSHOT_SOURCE_NAMESPACE_LABEL: request.namespace}},
            "spec": {"source": {"persistentVolumeClaimName": volume.claim_name},
                     "volumeSnapshotClassName": class_name}}


def copy_status(name: str, snapshot: Mapping[str, Any] | None) -> CopyStatus:
    """A VolumeSnapshot's :class:`CopyStatus`: ``readyToUse``, ``error.message``, ``restoreSize``
    as total bytes (processed = total once ready); None (deleted after its cut) is an error."""
    if snapshot is None:
        return CopyStatus(volume_snapshot_name=name, ready=False, error="missing")
    status = snapshot.get("status") or {}
    ready = status.get("readyToUse") is True
    error = (status.get("error") or {}).get("message") or None
    size = status.get("restoreSize")
    total = int(parse_quantity(size)) if size not in (None, "") else 0
    return CopyStatus(volume_snapshot_name=name, ready=ready, error=None if ready else error,
                      processed_bytes=total if ready else 0, total_bytes=total)


def to_snapshotter_error(err: Exception, what: str) -> SnapshotterError:
    """``err`` of the ``kubernetes`` client as a :class:`SnapshotterError`: "<what>: <the API's
    Status message> (HTTP <code>)"; retryable for 5xx, 429 and transport failures."""
    if isinstance(err, ApiException):
        code = int(err.status or 0)
        message = err.reason or "error"
        try:
            message = json.loads(err.body or "{}").get("message") or message
        except (ValueError, AttributeError):
            pass
        return SnapshotterError(f"{what}: {message} (HTTP {code})", retryable=code == 0 or code >= 500 or code == 429)
    return SnapshotterError(f"{what}: Kubernetes API unreachable: {err}", retryable=True)


def cluster_claim_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A restored claim's body as created in the cluster: ``body`` without
    ``metadata.ownerReferences`` (see the module docstring) and with ``apiVersion``/``kind``."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "ownerReferences"}
    return {**body, "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta}


def claim_state(pvc: Any) -> ClaimState:
    """The :class:`ClaimState` of a ``kubernetes`` client ``V1PersistentVolumeClaim``."""
    meta, status = pvc.metadata, pvc.status
    return ClaimState(phase=(status.phase if status is not None else None) or None,
                      annotations=dict((meta.annotations if meta is not None else None) or {}))


class CsiSnapshotter:
    """VolumeSnapshots through the Kubernetes API (see the module docstring).

    Args:
        api_client: a ``kubernetes.client.ApiClient`` (:func:`shared.kube_client.api_client_from`).
        request_timeout: seconds per API request.
        creation_timeout: seconds :meth:`begin` waits for every ``status.creationTime`` before it
            raises a retryable error (the content controller calls it again).
        creation_interval: seconds between those checks.
        claim_poll_interval: seconds between the restore controller's looks at restored claims
            that are not Bound yet.
    """

    def __init__(self, api_client: Any, *, request_timeout: float = 10.0, creation_timeout: float = 30.0,
                 creation_interval: float = 0.5, claim_poll_interval: float = 2.0) -> None:
        self.claim_poll_interval: float | None = claim_poll_interval
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.storage = client.StorageV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.request_timeout = request_timeout
        self.creation_timeout = creation_timeout
        self.creation_interval = creation_interval

    # -- the API, in threads -------------------------------------------------------------------
    async def _call(self, what: str, fn: Callable[..., Any], *args: Any, missing_ok: bool = False,
                    exists_ok: bool = False) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, _request_timeout=self.request_timeout)
        except ApiException as err:
            if (missing_ok and err.status == 404) or (exists_ok and err.status == 409):
                return None
            raise to_snapshotter_error(err, what) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise to_snapshotter_error(err, what) from None

    async def _get_snapshot(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._call(f"get VolumeSnapshot {namespace}/{name}", self.custom.get_namespaced_custom_object,
                                VOLUME_SNAPSHOT_API_GROUP, VOLUME_SNAPSHOT_VERSION, namespace, VOLUME_SNAPSHOTS, name,
                                missing_ok=True)

    async def _class_for(self, namespace: str, volume: VolumeRequest) -> str:
        pvc = await self._call(f"get PersistentVolumeClaim {namespace}/{volume.claim_name}",
                               self.core.read_namespaced_persistent_volume_claim, volume.claim_name, namespace)
        storage_class = pvc.spec.storage_class_name if pvc is not None and pvc.spec is not None else None
        if not storage_class:
            raise SnapshotterError(f"{namespace}/{volume.claim_name} VolumeSnapshot requested but no storage class",
                                   retryable=False)
        sc = await self._call(f"get StorageClass {storage_class}", self.storage.read_storage_class, storage_class,
                              missing_ok=True)
        profile = await self._call(f"get StorageProfile {storage_class}", self.custom.get_cluster_custom_object,
                                   STORAGE_PROFILE_GROUP, STORAGE_PROFILE_VERSION, STORAGE_PROFILES, storage_class,
                                   missing_ok=True)
        classes = await self._call("list VolumeSnapshotClasses", self.custom.list_cluster_custom_object,
                                   VOLUME_SNAPSHOT_API_GROUP, VOLUME_SNAPSHOT_VERSION, VOLUME_SNAPSHOT_CLASSES,
                                   missing_ok=True)
        try:
            return choose_volume_snapshot_class(storage_class, sc.provisioner if sc is not None else None,
                                                ((profile or {}).get("status") or {}).get("snapshotClass"),
                                                (classes or {}).get("items") or [], volume.volume_name)
        except NoSnapshotClass as err:
            raise SnapshotterError(str(err), retryable=False) from None

    # -- the interface -------------------------------------------------------------------------
    async def begin(self, request: SnapshotRequest) -> str:
        """Create every missing VolumeSnapshot, then wait until all have ``status.creationTime``;
        returns the latest of those times. Classes are chosen for all missing ones before any is
        created, so a volume without a class creates nothing."""
        ns = request.namespace
        existing = {v.volume_snapshot_name: await self._get_snapshot(ns, v.volume_snapshot_name)
                    for v in request.volumes}
        bodies = [volume_snapshot_body(request, v, await self._class_for(ns, v))
                  for v in request.volumes if existing[v.volume_snapshot_name] is None]
        for body in bodies:
            name = body["metadata"]["name"]
            try:
                await asyncio.to_thread(self.custom.create_namespaced_custom_object, VOLUME_SNAPSHOT_API_GROUP,
                                        VOLUME_SNAPSHOT_VERSION, ns, VOLUME_SNAPSHOTS, body,
                                        _request_timeout=self.request_timeout)
            except ApiException as err:
                if err.status != 409:  # AlreadyExists: made by an earlier attempt
                    raise to_snapshotter_error(err, f"create VolumeSnapshot {ns}/{name}") from None
            except (urllib3.exceptions.HTTPError, OSError) as err:
                raise to_snapshotter_error(err, f"create VolumeSnapshot {ns}/{name}") from None
        deadline = asyncio.get_running_loop().time() + self.creation_timeout
        while True:
            times, waiting = [], ""
            for volume in request.volumes:
                name = volume.volume_snapshot_name
                status = ((await self._get_snapshot(ns, name)) or {}).get("status") or {}
                created = parse_time(status.get("creationTime"))
                if created is not None:
                    times.append(created)
                    continue
                error = (status.get("error") or {}).get("message")
                if error:
                    raise SnapshotterError(f"VolumeSnapshot {name} error: {error}")
                waiting = waiting or name
            if not waiting:
                return format_time(max(times) if times else utc_now())
            if asyncio.get_running_loop().time() >= deadline:
                raise SnapshotterError(f"VolumeSnapshot {ns}/{waiting} has no status.creationTime after "
                                       f"{self.creation_timeout:g}s")
            await asyncio.sleep(self.creation_interval)

    async def poll(self, request: SnapshotRequest) -> list[CopyStatus]:
        """Each VolumeSnapshot's state (:func:`copy_status`), in the request's order."""
        return [copy_status(v.volume_snapshot_name, await self._get_snapshot(request.namespace,
                                                                             v.volume_snapshot_name))
                for v in request.volumes]

    async def cancel(self, request: SnapshotRequest) -> None:
        """Delete the request's VolumeSnapshots (the CSI driver drops what it started)."""
        await self.delete(request.namespace, [v.volume_snapshot_name for v in request.volumes])

    async def delete(self, namespace: str, volume_snapshot_names: list[str]) -> None:
        """Delete the VolumeSnapshots; absent ones (404) are fine."""
        for name in volume_snapshot_names:
            await self._call(f"delete VolumeSnapshot {namespace}/{name}", self.custom.delete_namespaced_custom_object,
                             VOLUME_SNAPSHOT_API_GROUP, VOLUME_SNAPSHOT_VERSION, namespace, VOLUME_SNAPSHOTS, name,
                             missing_ok=True)

    def claim_data_source(self, volume_snapshot_name: str) -> TypedLocalObjectReference:
        """``{snapshot.storage.k8s.io, VolumeSnapshot, name}``: the CSI driver provisions from it."""
        return volume_snapshot_reference(volume_snapshot_name)

    async def read_claim(self, namespace: str, name: str) -> ClaimState | None:
        """The cluster's claim ``namespace/name`` (None on 404)."""
        pvc = await self._call(f"get PersistentVolumeClaim {namespace}/{name}",
                               self.core.read_namespaced_persistent_volume_claim, name, namespace, missing_ok=True)
        return claim_state(pvc) if pvc is not None else None

    async def create_claim(self, body: dict[str, Any]) -> None:
        """Create the restored claim in the cluster (:func:`cluster_claim_body`); 409 AlreadyExists
        (made by an earlier attempt) is fine."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "", meta.get("name") or ""
        await self._call(f"create PersistentVolumeClaim {namespace}/{name}",
                         self.core.create_namespaced_persistent_volume_claim, namespace, cluster_claim_body(body),
                         exists_ok=True)

    async def delete_claim(self, namespace: str, name: str) -> None:
        """Delete the cluster's claim; 404 is fine (its pvc-protection finalizer may keep it a while)."""
        await self._call(f"delete PersistentVolumeClaim {namespace}/{name}",
                         self.core.delete_namespaced_persistent_volume_claim, name, namespace, missing_ok=True)

    def close(self) -> None:
        """Close the API client's connections."""
        self.api_client.close()
