"""Which error answers carry ``Retry-After``: the error's own value, else 1 s for 503 and 504."""

from __future__ import annotations

import pytest

from services.virt_api.app import status_response
from shared.errors import AlreadyExists, ServiceUnavailable, Timeout, TooManyRequests


@pytest.mark.parametrize(("err", "expected"), [
    (ServiceUnavailable("the object store is unavailable"), "1"),
    (Timeout("the create may or may not have been stored"), "1"),
    (AlreadyExists('virtualmachines.kubevirt.io "vm" already exists'), None),
])
def test_unavailable_and_unknown_outcomes_ask_the_client_to_retry(err, expected):
    assert status_response(err).headers.get("Retry-After") == expected


def test_an_errors_own_retry_after_wins():
    err = TooManyRequests("too many requests")
    err.retry_after_seconds = 7
    assert status_response(err).headers["Retry-After"] == "7"
