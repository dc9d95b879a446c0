"""libvirt domain events on one node: wake the VMI's sync and announce the change on the bus.

Each ``LifecycleEvent`` of the ``Hypervisor`` (``Started``, ``Stopped``, ``Suspended``,
``AgentConnected``...) queues the VMI of its domain (``<namespace>_<name>``) and is published
as a ``shared.events.DomainEvent`` on ``domain_event_subject(node, namespace, name)`` (best
effort: a failed publish is only logged). Agent connect/disconnect events update the known
agent state and make the next sync ask the agent at once; ``Reconnected`` (libvirt came back)
queues everything. The ``Defined``/``Started`` events of a start this handler made itself
(``SyncState.own_events``) are only published: the sync that started the domain has already
read its state after them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from services.virt_handler.hypervisor_types import LifecycleEvent
from services.virt_handler.sync_executor import SyncState
from shared import events
from shared.api.vocabulary import format_micro_time

log = logging.getLogger(__name__)


def compute_key_of_domain(name: str) -> str | None:
    """The VMI key of a domain called ``<namespace>_<name>`` (None for other names; Kubernetes
    names never contain ``_``, so the first one separates)."""
    namespace, sep, rest = name.partition("_")
    return f"{namespace}/{rest}" if sep and namespace and rest else None


class DomainEventRelay:
    """Turns the domain events of one node into queued keys and bus messages.

    ``enqueue(key)`` queues a VMI; ``enqueue_everything()`` queues all (after a reconnect);
    ``uid_of(key)``: the uid of the cached VMI ("" when none); ``bus`` None: no publishing.
    """

    def __init__(self, node_name: str, state: SyncState, *, bus: Any, publish: bool,
                 enqueue: Callable[[str], None], enqueue_everything: Callable[[], Awaitable[None]],
                 uid_of: Callable[[str], str], clock: Callable[[], datetime]):
        self.node_name = node_name
        self.state = state
        self.bus = bus if publish else None
        self.enqueue = enqueue
        self.enqueue_everything = enqueue_everything
        self.uid_of = uid_of
        self.clock = clock

    async def run(self, subscription: AsyncIterator[LifecycleEvent]) -> None:
        """Consume ``subscription`` until it ends (cancel the task to stop earlier)."""
        async for event in subscription:
            if event.event == "Reconnected":
                await self.enqueue_everything()
                continue
            key = compute_key_of_domain(event.name)
            if event.event in ("AgentConnected", "AgentDisconnected"):
                self.state.agent_connected[event.name] = event.event == "AgentConnected"
                if key is not None and key in self.state.guest_status:  # ask the (re)connected agent at once
                    self.state.guest_status[key] = (None, self.state.guest_status[key][1])
            if key is not None:
                if not self.state.is_own_event(event.name, event.event):
                    self.enqueue(key)
                await self.publish(key, event)

    async def publish(self, key: str, event: LifecycleEvent) -> None:
        """Announce ``event`` of the domain of ``key`` on the bus (best effort)."""
        if self.bus is None:
            return
        namespace, name = key.split("/", 1)
        message = events.DomainEvent(node=self.node_name, namespace=namespace, name=name, uid=self.uid_of(key),
                                     event=event.event, detail=event.detail,
                                     timestamp=format_micro_time(self.clock()))
        try:
            await self.bus.publish(events.domain_event_subject(self.node_name, namespace, name),
                                   events.encode(message))
        except Exception as err:  # noqa: BLE001 - notifications are best effort
            log.debug("publishing domain event failed: %s", err)
