"""Seams: named interfaces between subsystems, each with swappable variants.

A :class:`Seam` has a contract (a ``typing.Protocol``), a catalogue of variants and a
default. A variant is a class registered with :func:`variant`; a machine config picks
one variant name per seam and the machine builds an instance with :meth:`Seam.create`.

Users add variants without forking, by decorator::

    from nvdimm.seams import variant

    @variant("persistence", "my-adr", history="...", tradeoffs="...")
    class MyAdr: ...

or by an entry point in the group ``nvdimm.variants`` whose object is such a class
(the decorator runs when the entry point is loaded). The catalogue is a registry of
classes, like the kernel's driver list; it holds no machine state.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any, TypeVar

import attrs

from nvdimm.errors import InvalidArgument

T = TypeVar("T")

ENTRY_POINT_GROUP = "nvdimm.variants"


@attrs.frozen(slots=True)
class VariantInfo:
    seam: str
    name: str
    cls: type
    history: str
    tradeoffs: str


@attrs.define(slots=True)
class Seam:
    name: str
    between: str
    contract: type | None
    default: str
    doc: str
    variants: dict[str, VariantInfo] = attrs.field(factory=dict)
    _loader: Callable[[], None] | None = None

    def names(self) -> list[str]:
        self._load()
        return list(self.variants)

    def info(self, name: str) -> VariantInfo:
        self._load()
        try:
            return self.variants[name]
        except KeyError:
            raise InvalidArgument(
                f"seam {self.name!r} has no variant {name!r}; "
                f"choose one of: {', '.join(self.variants)}") from None

    def create(self, name: str | None = None, **kwargs: Any) -> Any:
        """Instantiate variant ``name`` (the default when None)."""
        return self.info(name or self.default).cls(**kwargs)

    def _load(self) -> None:
        if self._loader is not None:
            loader, self._loader = self._loader, None
            loader()


_SEAMS: dict[str, Seam] = {}
_entry_points_loaded = False
_builtins_declared = False


def define_seam(name: str, *, between: str, contract: type | None, default: str, doc: str,
                loader: Callable[[], None] | None = None) -> Seam:
    """Declare a seam. ``loader`` imports the module holding its built-in variants."""
    if name in _SEAMS:
        return _SEAMS[name]
    seam = Seam(name=name, between=between, contract=contract, default=default, doc=doc,
                loader=loader)
    _SEAMS[name] = seam
    return seam


def seam(name: str) -> Seam:
    _load_entry_points()
    try:
        s = _SEAMS[name]
    except KeyError:
        raise InvalidArgument(
            f"no seam named {name!r}; known seams: {', '.join(sorted(_SEAMS))}") from None
    s._load()
    return s


def all_seams() -> list[Seam]:
    _load_entry_points()
    for s in _SEAMS.values():
        s._load()
    return list(_SEAMS.values())


def variant(seam_name: str, name: str, *, history: str,
            tradeoffs: str) -> Callable[[type[T]], type[T]]:
    """Class decorator registering a variant of ``seam_name`` under ``name``."""

    def register(cls: type[T]) -> type[T]:
        _declare_builtins()
        try:
            s = _SEAMS[seam_name]
        except KeyError:
            raise InvalidArgument(
                f"cannot register variant {name!r}: no seam {seam_name!r}") from None
        s.variants[name] = VariantInfo(seam_name, name, cls, history.strip(), tradeoffs.strip())
        cls.variant_name = name  # type: ignore[attr-defined]
        return cls

    return register


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    _declare_builtins()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        ep.load()  # the decorator on the loaded class registers it


def _declare_builtins() -> None:
    # The built-in seams are declared before any variant registers, whichever module
    # is imported first; their variant modules load lazily on first use of the seam.
    global _builtins_declared
    if _builtins_declared:
        return
    _builtins_declared = True
    from nvdimm import seam_catalog

    seam_catalog.declare()
