"""The one error type of the supply-chain tool.

Every refusal (bad checksum, unknown key, stale lock, failed signature, policy violation) is a
SupplyChainError whose str() is a single readable line naming the thing refused; the CLI prints
it and exits non-zero. Build tools have no Kubernetes Status to render, so this does not use
shared.errors.
"""


class SupplyChainError(Exception):
    """A fail-closed refusal; str() is one line, e.g.
    "package hello-0:1.0-1.x86_64: signed by unpinned key 1234abcd"."""
