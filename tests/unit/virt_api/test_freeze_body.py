"""The freeze subresource's body: ``unfreezeTimeout`` as KubeVirt's handler reads it."""

import pytest

from services.virt_api.freeze_body import (
    TIMEOUT_NOT_SET,
    TIMEOUT_TOO_SHORT,
    UNREADABLE_TIMEOUT,
    compute_unfreeze_timeout_seconds,
)
from shared.errors import BadRequest


@pytest.mark.parametrize("body, content_type, seconds", [
    (b'{"unfreezeTimeout": "5m"}', "application/json", 300),
    (b'{"unfreezeTimeout": "1m30.9s"}', None, 90),
    (b"unfreezeTimeout: 2h\n", "application/yaml", 7200),
])
def test_timeout_in_whole_seconds(body, content_type, seconds):
    assert compute_unfreeze_timeout_seconds(body, content_type) == seconds


@pytest.mark.parametrize("body, content_type, message", [
    (b"", None, TIMEOUT_NOT_SET),
    (b"{}", "application/json", TIMEOUT_NOT_SET),
    (b'{"unfreezeTimeout": null}', "application/json", TIMEOUT_NOT_SET),
    (b"{not json", "application/json", UNREADABLE_TIMEOUT),
    (b'["5m"]', "application/json", UNREADABLE_TIMEOUT),
    (b'{"unfreezeTimeout": 300}', "application/json", UNREADABLE_TIMEOUT),
    (b'{"unfreezeTimeout": "5 minutes"}', "application/json", UNREADABLE_TIMEOUT),
    (b'{"unfreezeTimeout": "5m"}', "text/plain", UNREADABLE_TIMEOUT),
    (b'{"unfreezeTimeout": "0s"}', "application/json", TIMEOUT_TOO_SHORT),
    (b'{"unfreezeTimeout": "-5m"}', "application/json", TIMEOUT_TOO_SHORT),
])
def test_refusals_are_400_with_kubevirts_messages(body, content_type, message):
    with pytest.raises(BadRequest) as err:
        compute_unfreeze_timeout_seconds(body, content_type)
    assert (err.value.code, err.value.message) == (400, message)
