"""Watches of VMIMs for the migration end-to-end tests (not a test module).

:class:`MigrationRecorder` keeps every state a watch delivers (a VMIM deleted right after it
turned final is still seen); :class:`PhaseCatcher` signals a process the moment a VMIM reaches a
phase (to hold it there). Both use the kubernetes client's watch on virt-api.
"""

from __future__ import annotations

import os
import threading
import time

from tests.e2e.migration_stack import VMIMS, MigStack


class MigrationRecorder:
    """Every state of the namespace's VMIMs as a watch delivers them (ADDED/MODIFIED/DELETED), so
    a VMIM deleted right after it turned final (cancel) is still seen Failed. Use as a context
    manager; :meth:`states` lists the recorded objects of one VMIM in order."""

    def __init__(self, stack: MigStack):
        self.stack = stack
        self.events: list[tuple[str, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MigrationRecorder:
        listed = self.stack.api.list_namespaced_custom_object("kubevirt.io", "v1", self.stack.namespace, VMIMS)
        self._rv = listed["metadata"]["resourceVersion"]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(self.stack.api.list_namespaced_custom_object, "kubevirt.io", "v1",
                                      self.stack.namespace, VMIMS, resource_version=self._rv, timeout_seconds=5):
                    obj = event["object"]
                    self._rv = obj["metadata"].get("resourceVersion", self._rv)
                    self.events.append((event["type"], obj))
                    if self._stop.is_set():
                        break
            except Exception:  # noqa: BLE001 - a broken watch is resumed from the last revision
                time.sleep(0.2)
            finally:
                w.stop()

    def states(self, name: str) -> list[dict]:
        return [obj for _, obj in list(self.events) if obj["metadata"]["name"] == name]



class PhaseCatcher(threading.Thread):
    """Sends ``sig`` to ``pid`` the moment a watch event shows VMIM ``name`` in ``phase`` (start it
    before the VMIM is created); ``caught`` is set then. Gives up when the VMIM is final or after 60 s."""

    def __init__(self, stack: MigStack, name: str, phase: str, pid: int, sig: int):
        super().__init__(daemon=True)
        self.stack, self.name, self.phase, self.pid, self.sig = stack, name, phase, pid, sig
        self.caught = threading.Event()
        listed = stack.api.list_namespaced_custom_object("kubevirt.io", "v1", stack.namespace, VMIMS)
        self.rv = listed["metadata"]["resourceVersion"]

    def run(self) -> None:
        from kubernetes import watch

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.caught.is_set():
            for event in watch.Watch().stream(self.stack.api.list_namespaced_custom_object, "kubevirt.io", "v1",
                                              self.stack.namespace, VMIMS, resource_version=self.rv,
                                              field_selector=f"metadata.name={self.name}", timeout_seconds=10):
                obj = event["object"]
                self.rv = obj["metadata"].get("resourceVersion", self.rv)
                phase = (obj.get("status") or {}).get("phase")
                if phase == self.phase:
                    os.kill(self.pid, self.sig)
                    self.caught.set()
                    return
                if phase in ("Succeeded", "Failed"):
                    return
