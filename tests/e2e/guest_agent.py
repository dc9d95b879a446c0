"""A shell in a real guest through its QEMU guest agent, for end-to-end tests (not a test module).

:class:`AgentShell` sends guest agent commands to a libvirt domain (``virDomainQemuAgentCommand``,
what ``virsh qemu-agent-command`` does) and runs shell command lines in the guest with
``guest-exec`` (``/bin/sh -c``), returning their output. The tests use it as the host's root user
inspects a guest; the product's own paths (freeze, thaw) go through virt-handler.
"""

from __future__ import annotations

import base64
import json
import time

import libvirt
import libvirt_qemu


class GuestCommandError(AssertionError):
    """A guest command line ended with a non-zero status (message: the status and its output)."""


class AgentShell:
    """Guest agent commands on ``domain`` (a ``libvirt.virDomain``)."""

    def __init__(self, domain: libvirt.virDomain):
        self.domain = domain

    def agent(self, command: str, timeout: int = 10, **arguments: object) -> dict:
        """The agent's JSON answer to ``command`` with ``arguments``; libvirtError on failure."""
        message: dict[str, object] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        return json.loads(libvirt_qemu.qemuAgentCommand(self.domain, json.dumps(message), timeout, 0))

    def ping(self) -> bool:
        """True when the agent answers ``guest-ping``."""
        try:
            return self.agent("guest-ping", timeout=5) == {"return": {}}
        except libvirt.libvirtError:
            return False

    def run(self, line: str, timeout: float = 60, check: bool = True) -> str:
        """Standard output of ``/bin/sh -c line`` in the guest (stderr appended); GuestCommandError
        on a non-zero status when ``check``; AssertionError when it does not end within ``timeout`` s."""
        pid = self.agent("guest-exec", path="/bin/sh", arg=["-c", line], **{"capture-output": True})["return"]["pid"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.agent("guest-exec-status", pid=pid)["return"]
            if status.get("exited"):
                out = base64.b64decode(status.get("out-data", "")).decode(errors="replace")
                err = base64.b64decode(status.get("err-data", "")).decode(errors="replace")
                if check and status.get("exitcode", 0) != 0:
                    raise GuestCommandError(f"{line!r} -> {status.get('exitcode')}: {out}{err}")
                return out + err
            time.sleep(0.2)
        raise AssertionError(f"{line!r} did not end within {timeout} s in the guest")
