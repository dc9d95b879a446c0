"""Hostile request bodies and the exact 400 messages virt-api answers them with, shared by the
unit tests of ``services.virt_api.safe_decoding`` and the tests against a real virt-api."""

from __future__ import annotations

BOMB_MESSAGE = (
    "excessive aliasing in the YAML body: its aliases expand to more than 100000 nodes; "
    "write repeated parts out instead of nesting aliases"
)
TOO_DEEP = (
    "the body of the request is nested too deeply: more than 100 levels of objects and lists; "
    "flatten the document"
)


def alias_bomb(levels: int = 10, fanout: int = 9) -> bytes:
    """The tester's bomb: level 0 holds ``fanout`` strings, each next level ``fanout`` aliases of
    the previous one (9**10 strings once expanded, from ~450 bytes)."""
    names = [chr(ord("a") + i) for i in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [" + ",".join(['"x"'] * fanout) + "]"]
    for prev, name in zip(names, names[1:]):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * fanout) + "]")
    return ("\n".join(lines) + "\n").encode()
