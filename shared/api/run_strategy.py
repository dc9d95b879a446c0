"""The one reader of a VirtualMachine's effective run strategy (pure).

KubeVirt's ``VirtualMachine.RunStrategy()`` (``staging/src/kubevirt.io/api/core/v1/types.go``):

* ``spec.running`` and ``spec.runStrategy`` both set -> an error (they are mutually exclusive);
* ``spec.running`` set (deprecated) -> ``true`` is Always, ``false`` is Halted;
* ``spec.runStrategy`` set -> that strategy;
* neither -> Halted.

Where KubeVirt passes an unrecognised value on and fails later (``syncRunStrategy``'s default
case), this reader refuses it at once, so virt-api and virt-controller agree on what a VM's
strategy is. virt-api's admission already rejects both cases on create/update; the error can
only be met on objects written around it.
"""

from __future__ import annotations

from typing import Protocol

from shared.api.vocabulary import RunStrategy

__all__ = ["RunStrategyError", "read_run_strategy", "run_strategy_of"]


class RunStrategyError(ValueError):
    """The spec names no valid run strategy; ``str(error)`` says why (KubeVirt's wording:
    ``running and runstrategy are mutually exclusive`` / ``unknown runstrategy: <value>``)."""


class _HasRunFields(Protocol):
    @property
    def running(self) -> bool | None: ...

    @property
    def run_strategy(self) -> str | None: ...


def read_run_strategy(running: bool | None, run_strategy: str | None) -> RunStrategy:
    """The effective strategy from ``spec.running`` and ``spec.runStrategy`` (None = unset).

    Raises :class:`RunStrategyError` when both are set or ``run_strategy`` is not one of
    :class:`RunStrategy` (an empty string included)."""
    if running is not None and run_strategy is not None:
        raise RunStrategyError("running and runstrategy are mutually exclusive")
    if running is not None:
        return RunStrategy.ALWAYS if running else RunStrategy.HALTED
    if run_strategy is None:
        return RunStrategy.HALTED
    try:
        return RunStrategy(run_strategy)
    except ValueError:
        raise RunStrategyError(f"unknown runstrategy: {run_strategy}") from None


def run_strategy_of(spec: _HasRunFields) -> RunStrategy:
    """:func:`read_run_strategy` of a ``VirtualMachineSpec`` (or anything with ``running`` and
    ``run_strategy`` attributes). Raises :class:`RunStrategyError`."""
    return read_run_strategy(spec.running, spec.run_strategy)
