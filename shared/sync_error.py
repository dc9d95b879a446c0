"""SyncError: why one reconcile of one key failed, and whether to retry it.

Modelled on KubeVirt's ``common.SyncError`` (``pkg/virt-controller/watch/common``): a stable,
machine-readable ``reason`` (virt-controller shows it in the VM's ``Failure`` condition) and a
message for people. :func:`shared.workers.run_worker` requeues a key whose reconcile raised a
retryable SyncError with per-key exponential backoff; ``retry_after`` (seconds) overrides that
delay when the error knows better. Reasons shared by services are
:class:`shared.api.vocabulary.Reason`.
"""

from __future__ import annotations


class SyncError(Exception):
    """A reconcile failure.

    Args:
        message: human readable text (goes to logs and the ``Failure`` condition message).
        reason: stable CamelCase reason, e.g. ``FailedCreate``, ``FailedDelete``.
        retryable: False for errors that cannot heal by retrying (bad spec); the key is then
            only reconciled again when its objects change.
        retry_after: seconds to wait before the retry instead of the queue's backoff.
    """

    def __init__(self, message: str, *, reason: str, retryable: bool = True,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"SyncError(reason={self.reason!r}, message={self.message!r}, retryable={self.retryable})"
