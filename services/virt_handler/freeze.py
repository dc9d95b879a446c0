"""Guest filesystem freeze with a persisted unfreeze deadline (``Freeze``/``Unfreeze`` commands).

``FreezeKeeper`` performs what ``freeze_decision`` decides:

- ``freeze``: the deadline is written first (``VmiFiles.write_freeze_deadline``, atomic), a timer
  is armed, then ``virDomainFSFreeze`` is asked; a failed freeze drops both (a freeze that timed
  out keeps them: the agent may still freeze, and the timer thaws it);
- ``thaw`` (``Unfreeze``): ``virDomainFSThaw``, then the timer and the record go;
- the timer, at the deadline: thaw, retried (``compute_thaw_retry_delay``) until it works or the
  domain is gone, then the record goes and the VMI is queued (its ``fsFreezeStatus`` follows);
- ``reconcile`` (each sync of a running VMI, from the records kept in memory) and
  ``recover_all`` (handler start-up, which reads the records from disk): a record
  past its deadline -> thaw now (in the background, retried); before it -> arm the timer; the
  domain gone -> drop the record. So a handler killed while a guest is frozen still thaws it
  at the deadline once it runs again.

Spans ``freeze`` and ``thaw`` (under the command's trace; a timer's thaw under the VMI's).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from services.virt_handler.freeze_decision import (
    ArmTimer,
    DropRecord,
    ThawNow,
    compute_deadline,
    compute_freeze_recovery,
    compute_fs_freeze_status,
    compute_thaw_retry_delay,
)
from services.virt_handler.hypervisor_types import DomainNotFound, HypervisorError
from services.virt_handler.vmi_files import VmiFiles
from shared import tracing

log = logging.getLogger(__name__)

SERVICE = "virt-handler"


class FreezeKeeper:
    """Freezes and thaws the guests of this node and keeps their unfreeze deadlines.

    ``hypervisor``: the gateway; ``files``: the per-VMI files; ``changed(key)``: queues a VMI
    whose freeze state changed; ``lookup(key)``: the cached VMI dict (for the timer's span; None
    when unknown); ``wall_clock``: epoch seconds (tests pass a fake); ``retry_delay(failures)``:
    seconds between failed thaws.
    """

    def __init__(self, hypervisor: Any, files: VmiFiles, *, changed: Callable[[str], None],
                 lookup: Callable[[str], dict[str, Any] | None] = lambda _key: None,
                 wall_clock: Callable[[], float] = time.time,
                 retry_delay: Callable[[int], float] = compute_thaw_retry_delay):
        self.hv = hypervisor
        self.files = files
        self.changed = changed
        self.lookup = lookup
        self.wall_clock = wall_clock
        self.retry_delay = retry_delay
        self._timers: dict[str, asyncio.Task[None]] = {}  # VMI uid -> its thaw timer
        # VMI uid -> its recorded deadline: the files' contents, read once at start-up
        # (recover_all) and kept in step with every write, so a sync reads no file
        self._deadlines: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, uid: str) -> asyncio.Lock:
        return self._locks.setdefault(uid, asyncio.Lock())

    def deadline_of(self, uid: str) -> float | None:
        """The recorded unfreeze deadline of the VMI ``uid`` (epoch seconds), None when none."""
        return self._deadlines.get(uid)

    async def _record(self, uid: str, deadline: float) -> None:
        await asyncio.to_thread(self.files.write_freeze_deadline, uid, deadline)
        self._deadlines[uid] = deadline

    async def _drop_record(self, uid: str) -> None:
        self._deadlines.pop(uid, None)
        await asyncio.to_thread(self.files.remove_freeze_deadline, uid)

    # -- commands ----------------------------------------------------------------------------
    async def freeze(self, key: str, name: str, uid: str, unfreeze_timeout_seconds: int) -> None:
        """Arm the deadline, then freeze domain ``name`` (VMI ``key``/``uid``). Raises
        ``HypervisorError`` from libvirt, ``ValueError`` for a timeout that is not positive,
        OSError when the record cannot be written (then nothing was frozen)."""
        async with self._lock(uid):
            now = self.wall_clock()
            deadline = compute_deadline(now, unfreeze_timeout_seconds)
            await self._record(uid, deadline)
            self._arm(key, name, uid, deadline - now)
            with tracing.child_span(SERVICE, "freeze", attributes={"kubevirt.unfreeze_timeout_seconds":
                                                                   unfreeze_timeout_seconds}):
                try:
                    if await self._agent_freeze_status(name) == "frozen":
                        count = 0  # already frozen (KubeVirt: idempotent); only the deadline moved
                    else:
                        count = await self.hv.fs_freeze(name)
                except HypervisorError as err:
                    tracing.mark_failed(err.reason, err.message)
                    if err.reason != "Timeout":  # refused: nothing is frozen, nothing to thaw
                        self._disarm(uid)
                        await self._drop_record(uid)
                    raise
        log.info("froze %s filesystem(s) of %s until %.0f unless unfrozen", count, key, deadline)

    async def thaw(self, key: str, name: str, uid: str) -> None:
        """Thaw domain ``name`` and drop its deadline (idempotent). Raises ``HypervisorError``
        (the record and the timer then stay: the timer still thaws at the deadline)."""
        async with self._lock(uid):
            with tracing.child_span(SERVICE, "thaw"):
                try:
                    await self.hv.fs_thaw(name)
                except HypervisorError as err:
                    tracing.mark_failed(err.reason, err.message)
                    raise
            self._disarm(uid)
            await self._drop_record(uid)
        log.info("thawed %s", key)

    async def _agent_freeze_status(self, name: str) -> str | None:
        """The guest agent's ``guest-fsfreeze-status`` (``frozen``/``thawed``), None when the
        driver has no agent command (test driver) or the agent does not say."""
        try:
            answer = await self.hv.agent_command(name, "guest-fsfreeze-status")
        except HypervisorError as err:
            if err.reason == "Unsupported":
                return None
            raise
        return answer if isinstance(answer, str) else None

    # -- deadlines ---------------------------------------------------------------------------
    async def reconcile(self, key: str, name: str, uid: str, domain_active: bool) -> str | None:
        """Act on the VMI's recorded deadline (module docstring) and return its
        ``status.fsFreezeStatus`` (``"frozen"`` or None)."""
        deadline = self._deadlines.get(uid)
        now = self.wall_clock()
        decision = compute_freeze_recovery(deadline, now, domain_active)
        if isinstance(decision, DropRecord):
            self._disarm(uid)
            await self._drop_record(uid)
            return None
        if isinstance(decision, (ThawNow, ArmTimer)) and uid not in self._timers:
            self._arm(key, name, uid, decision.delay if isinstance(decision, ArmTimer) else 0.0)
        return compute_fs_freeze_status(deadline, now)

    async def recover_all(self) -> None:
        """Start-up: every VMI directory holding a deadline is reconciled (its domain looked up
        by the recorded VMI's namespace and name), whether or not the VMI is still in the store."""
        from services.virt_handler.domain import domain_name

        for uid in await asyncio.to_thread(self.files.uids_with_freeze_deadline):
            deadline = await asyncio.to_thread(self.files.read_freeze_deadline, uid)
            if deadline is not None:
                self._deadlines[uid] = deadline
            meta = (self.files.recorded_vmi(uid) or {}).get("metadata") or {}
            if not meta.get("name"):
                await self._drop_record(uid)
                continue
            key, name = f"{meta.get('namespace', '')}/{meta['name']}", domain_name(meta.get("namespace", ""),
                                                                                  meta["name"])
            try:
                domain = await self.hv.get_domain(name)
            except HypervisorError as err:
                log.warning("freeze recovery of %s: %s; the sync retries", key, err)
                continue
            active = domain is not None and domain.is_active and domain.uid == uid
            await self.reconcile(key, name, uid, active)

    def is_armed(self, uid: str) -> bool:
        """Whether a thaw timer runs for the VMI ``uid``."""
        return uid in self._timers

    async def stop(self) -> None:
        """Cancel the timers (the records stay: the next handler honours them)."""
        timers, self._timers = list(self._timers.values()), {}
        for task in timers:
            task.cancel()
        await asyncio.gather(*timers, return_exceptions=True)

    def _arm(self, key: str, name: str, uid: str, delay: float) -> None:
        self._disarm(uid)
        task = asyncio.get_running_loop().create_task(self._expire(key, name, uid, delay), name=f"thaw-{key}")
        self._timers[uid] = task
        task.add_done_callback(lambda done: self._timers.pop(uid, None) if self._timers.get(uid) is done else None)

    def _disarm(self, uid: str) -> None:
        task = self._timers.pop(uid, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _expire(self, key: str, name: str, uid: str, delay: float) -> None:
        await asyncio.sleep(max(delay, 0.0))
        failures = 0
        while True:
            async with self._lock(uid):
                if self._timers.get(uid) is not asyncio.current_task():
                    return  # thawed or re-armed meanwhile
                with tracing.object_span(SERVICE, "thaw", self.lookup(key), once_per_version=False,
                                         attributes={"kubevirt.thaw_cause": "unfreeze timeout"}):
                    done = await self._try_thaw(key, name, uid)
                if done:
                    self._timers.pop(uid, None)
                    await self._drop_record(uid)
                    self.changed(key)
                    return
            failures += 1
            await asyncio.sleep(self.retry_delay(failures))

    async def _try_thaw(self, key: str, name: str, uid: str) -> bool:
        """One thaw at the deadline: True when the guest is thawed or its domain is gone."""
        try:
            await self.hv.fs_thaw(name)
        except DomainNotFound:
            log.info("unfreeze timeout of %s: the domain is gone", key)
            return True
        except HypervisorError as err:
            try:
                domain = await self.hv.get_domain(name)
                gone = domain is None or not domain.is_active or domain.uid != uid
            except HypervisorError:
                gone = False  # libvirt unreachable: keep trying
            if gone:
                return True
            tracing.mark_failed(err.reason, err.message)
            log.warning("unfreeze timeout of %s: thaw failed (%s); retrying", key, err.message)
            return False
        log.warning("unfreeze timeout of %s reached without Unfreeze: thawed the guest", key)
        return True
