"""virtctl console's stdin when it is not a terminal: a pipe is read as it comes, a redirected
file or /dev/null (which epoll refuses with EPERM) is queued at once instead of failing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from services.virtctl.console_command import _Stdin


@pytest.mark.parametrize("content", [
    pytest.param(None, id="dev-null"),
    pytest.param(b"uname -a\necho done\n", id="regular-file"),
])
async def test_stdin_redirected_from_a_file_is_queued_not_an_error(tmp_path: Path, monkeypatch, content):
    path = Path("/dev/null") if content is None else tmp_path / "input"
    if content is not None:
        path.write_bytes(content)
    with path.open("rb") as handle:
        monkeypatch.setattr(sys, "stdin", handle)
        with _Stdin() as stdin:
            queued = b""
            while not stdin.queue.empty():
                queued += stdin.queue.get_nowait()
    assert queued == (content or b"")
