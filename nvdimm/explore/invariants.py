"""Invariants: named checks that an experiment runs after every workload.

A check is a function of the machine (booted, after the workload and its recovery)
and the workload's :class:`~nvdimm.explore.experiment.Outcome`, returning one message
per violation (nothing when the invariant holds). Subsystems and users register
checks by decorator::

    from nvdimm.explore.invariants import invariant

    @invariant("mm.no-mapped-pfn-freed", subsystem="mm",
               doc="no pfn with a live mapping is on a free list")
    def _no_mapped_free(machine, outcome):
        ...
        return [f"pfn {pfn:#x} is mapped and free" for pfn in bad]

The registry holds functions, never machine state; it imports nothing of the model,
so any layer may register without pulling the experiment machinery in. A check that
does not apply to a machine (no sector namespaces for a BTT check) returns nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from nvdimm.errors import InvalidArgument

if TYPE_CHECKING:
    from nvdimm.explore.experiment import Outcome
    from nvdimm.machine import Machine

CheckFn = Callable[["Machine", "Outcome"], Iterable[str]]
F = TypeVar("F", bound=Callable[..., Any])

WORD = 8  # the x86 power-fail atomic unit


@attrs.frozen(slots=True)
class Invariant:
    name: str
    subsystem: str
    doc: str
    check: CheckFn = attrs.field(repr=False)


_REGISTRY: dict[str, Invariant] = {}


def register_invariant(name: str, check: CheckFn, *, subsystem: str, doc: str) -> Invariant:
    """Register ``check`` under ``name`` (registering a name again replaces it)."""
    inv = Invariant(name, subsystem, " ".join(doc.split()), check)
    _REGISTRY[name] = inv
    return inv


def invariant(name: str, *, subsystem: str, doc: str) -> Callable[[F], F]:
    """Decorator form of :func:`register_invariant`."""

    def register(fn: F) -> F:
        register_invariant(name, fn, subsystem=subsystem, doc=doc)
        return fn

    return register


def invariants(names: Sequence[str] | None = None) -> list[Invariant]:
    """The registered invariants (``names``: only these, in this order)."""
    if names is None:
        return list(_REGISTRY.values())
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise InvalidArgument(f"no invariant {', '.join(map(repr, unknown))}; registered: "
                              f"{', '.join(_REGISTRY)}")
    return [_REGISTRY[n] for n in names]


def check_invariants(machine: Machine, outcome: Outcome,
                     names: Sequence[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Run the invariants; every name maps to its violations (empty when it holds)."""
    return {inv.name: tuple(inv.check(machine, outcome)) for inv in invariants(names)}


# -- built-in invariants --------------------------------------------------------------


@invariant("data.expected", subsystem="workload", doc="""
    Data the workload was promised durable (a FUA write, a flush, the persistence
    recipe it followed) reads back exactly as written after recovery.""")
def _data_expected(machine: Machine, outcome: Outcome) -> list[str]:
    out = []
    for c in outcome.checks:
        if c.durable and c.found != c.expected:
            out.append(f"{c.name}: promised durable, reads back {c.status()}")
    return out


@invariant("data.words-old-or-new", subsystem="platform", doc="""
    Every aligned 8-byte word of checked data reads as its value before or after the
    workload's write, never a mix: x86's power-fail atomic unit.""")
def _words_old_or_new(machine: Machine, outcome: Outcome) -> list[str]:
    out = []
    for c in outcome.checks:
        bad = c.foreign_words()
        if bad:
            out.append(f"{c.name}: {bad} 8-byte word(s) hold neither the old nor the new value")
    return out


@invariant("nd.namespaces-enabled", subsystem="nvdimm", doc="""
    After recovery every namespace on the bus is enabled: each came back from its
    labels and info blocks and a driver claimed it.""")
def _namespaces_enabled(machine: Machine, outcome: Outcome) -> list[str]:
    return [f"{ns.dev} ({ns.mode}) did not come back enabled"
            for ns in machine.bus.namespaces() if not ns.enabled]
