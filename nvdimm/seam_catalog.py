"""The built-in seams (see DESIGN.md, "Seams"). Variants live beside their consumers."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from nvdimm.seams import define_seam


def _importer(*modules: str) -> Callable[[], None]:
    def load() -> None:
        for m in modules:
            importlib.import_module(m)

    return load


def declare() -> None:
    # Seams are declared before their contract modules are imported: importing a
    # contract module runs its variants' @variant decorators, which need the seam.
    persistence = define_seam(
        "persistence",
        between="CPU, memory controller and media",
        contract=None,
        default="adr",
        doc="When does a store that is visible to loads become durable across power loss?",
        loader=_importer("nvdimm.platform.persistence"),
    )
    from nvdimm.platform.persistence import PersistenceRule

    persistence.contract = PersistenceRule

    def load_memmap() -> None:
        # By name: the variants live in mm/, above this layer (DESIGN.md, "Layers").
        memmap.contract = importlib.import_module("mm.memmap").MemmapPolicy

    memmap = define_seam(
        "memmap",
        between="pfn/dax drivers and mm",
        contract=None,
        default="pmem",
        doc="Where do the struct pages of device memory live (DRAM, the device, nowhere), "
            "what does that cost, and what can the pages then do?",
        loader=load_memmap,
    )

    def load_direct_access() -> None:
        # By name: the variants live in drivers/, above this layer (DESIGN.md, "Layers").
        direct_access.contract = importlib.import_module("drivers.direct_access").DirectAccess

    direct_access = define_seam(
        "direct_access",
        between="fs/DAX and the DAX provider (pmem, btt)",
        contract=None,
        default="dax-ops",
        doc="What does a DAX provider promise whoever maps its blocks: an address and a "
            "pfn only, error reports and copy helpers, or a mapping lifetime it can see "
            "and notices before a block changes?",
        loader=load_direct_access,
    )

    def load_btt_remap() -> None:
        # By name: the variants live in drivers/btt/, above this layer.
        btt_remap.contract = importlib.import_module("drivers.btt.remap").BttRemap

    btt_remap = define_seam(
        "btt_remap",
        between="btt and whoever maps its blocks",
        contract=None,
        default="deny-dax",
        doc="A BTT moves a block on every write; what happens to a DAX mapping of the "
            "block it moves: refuse DAX, remap regardless, tell the holder first, or "
            "write in place while mapped?",
        loader=load_btt_remap,
    )

    def load_pmem_tier() -> None:
        # By name: the variants live in mm/, above this layer.
        pmem_tier.contract = importlib.import_module("mm.tier").PmemTier

    pmem_tier = define_seam(
        "pmem_tier",
        between="mm and pmem used as memory",
        contract=None,
        default="kmem-numa",
        doc="When pmem is a level of the volatile memory hierarchy, which shape does it "
            "take: a lower NUMA tier, swap, a page-cache extension or a DAX block cache?",
        loader=load_pmem_tier,
    )
