"""virtctl migrate --wait keeps following through a short API outage (services.virtctl.migrate_command)."""

from __future__ import annotations

import pytest

from services.virtctl import main  # noqa: F401 - registers the command group the module extends
from services.virtctl import migrate_command
from shared import errors


def vmim(phase: str, rv: str) -> dict:
    return {"metadata": {"name": "m1", "resourceVersion": rv}, "status": {"phase": phase}}


class FlakyApi:
    """A watch that fails with 503 ``failures`` times, then streams the final phase."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.watches: list[dict] = []

    async def watch(self, path, params):
        self.watches.append(dict(params))
        if self.failures:
            self.failures -= 1
            raise errors.ServiceUnavailable("NATS JetStream unavailable")
        yield {"type": "MODIFIED", "object": vmim("Succeeded", "9")}


async def test_a_503_while_following_is_retried_from_the_same_version(monkeypatch) -> None:
    monkeypatch.setattr(migrate_command, "UNAVAILABLE_RETRY_INTERVAL", 0.0)
    api = FlakyApi(failures=2)
    with migrate_command.Display(terminal=False) as display:
        final = await migrate_command._follow(api, "/vmims", vmim("Scheduling", "5"), "5", display)
    assert final["status"]["phase"] == "Succeeded"
    assert [w["resourceVersion"] for w in api.watches] == ["5", "5", "5"]


async def test_an_outage_longer_than_the_limit_is_raised(monkeypatch) -> None:
    monkeypatch.setattr(migrate_command, "UNAVAILABLE_RETRY_INTERVAL", 0.0)
    monkeypatch.setattr(migrate_command, "UNAVAILABLE_RETRY_SECONDS", -1.0)
    with migrate_command.Display(terminal=False) as display, pytest.raises(errors.ServiceUnavailable):
        await migrate_command._follow(FlakyApi(failures=5), "/vmims", vmim("Scheduling", "5"), "5", display)
