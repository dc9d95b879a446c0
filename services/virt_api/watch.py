"""Watch streaming: a store watch turned into Kubernetes' streamed JSON lines.

Owns: the ``?watch=1`` response of a list URL — one ``{"type": ..., "object": ...}`` line per
event (``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK`` when ``allowWatchBookmarks`` is set),
``timeoutSeconds``, Table-shaped objects when the client asked for a Table, and ending the stream
with an ``ERROR`` event carrying a Status (``410 Expired`` for a compacted resourceVersion), as
kube-apiserver does (it always answers 200 and reports watch failures in-band). Ordering and
exactly-once delivery come from the store (:meth:`shared.store.ObjectStore.watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

from aiohttp import web

from services.virt_api.negotiation import encode_json_line
from shared.errors import ApiError, InternalError

log = logging.getLogger("kubevirt.virt_api.watch")

#: Watch length when the client gives no timeoutSeconds: kube-apiserver picks 30-60 minutes at
#: random so that clients do not all re-list at once.
DEFAULT_TIMEOUT_RANGE = (1800.0, 3600.0)


async def stream_watch(
    request: web.Request,
    events: Any,
    *,
    timeout_seconds: float | None,
    allow_bookmarks: bool,
    render: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> web.StreamResponse:
    """Serve ``events`` (an async iterator of store WatchEvents) as a watch response.

    ``render`` turns an event's object into what the client asked for (e.g. a one-row Table);
    BOOKMARK objects are never rendered. The store iterator is always closed on return, also
    when the client goes away.
    """
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
    resp.enable_chunked_encoding()
    if timeout_seconds is None:
        timeout_seconds = random.uniform(*DEFAULT_TIMEOUT_RANGE)
    iterator = events.__aiter__()
    try:
        # Headers go out first; a watch that cannot start (410 for a compacted resourceVersion,
        # 503 without NATS) reports it as an ERROR event, like kube-apiserver.
        await resp.prepare(request)
        async with asyncio.timeout(timeout_seconds):
            async for event in iterator:
                if event.type == "BOOKMARK":
                    if not allow_bookmarks:
                        continue
                    obj = event.object
                else:
                    obj = render(event.object) if render else event.object
                await resp.write(encode_json_line({"type": event.type, "object": obj}))
    except TimeoutError:
        pass  # the client's timeoutSeconds (or ours) ran out: a normal end of the watch
    except ApiError as err:
        await _write_error(resp, err)
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception as err:  # noqa: BLE001 - in-band 500, never a trace to the client
        log.exception("watch on %s failed", request.path)
        await _write_error(resp, InternalError(f"Internal error occurred: {type(err).__name__}"))
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


async def _write_error(resp: web.StreamResponse, err: ApiError) -> None:
    with contextlib.suppress(ConnectionResetError):
        await resp.write(encode_json_line({"type": "ERROR", "object": err.to_status()}))
