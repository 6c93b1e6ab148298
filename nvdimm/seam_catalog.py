"""The built-in seams (see DESIGN.md, "Seams"). Variants live beside their consumers."""

from __future__ import annotations

import importlib

from nvdimm.seams import define_seam


def _importer(*modules: str) -> "object":
    def load() -> None:
        for m in modules:
            importlib.import_module(m)

    return load


def declare() -> None:
    from nvdimm.platform.persistence import PersistenceRule

    define_seam(
        "persistence",
        between="CPU, memory controller and media",
        contract=PersistenceRule,
        default="adr",
        doc="When does a store that is visible to loads become durable across power loss?",
        loader=_importer("nvdimm.platform.persistence"),  # type: ignore[arg-type]
    )
