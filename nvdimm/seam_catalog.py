"""The built-in seams (see DESIGN.md, "Seams"). Variants live beside their consumers."""

from __future__ import annotations

import importlib

from nvdimm.seams import Seam, define_seam


def _declare(name: str, *, contract: str, between: str, default: str, doc: str) -> Seam:
    """Declare seam ``name`` whose contract (and variants) live at ``contract``,
    ``"module:Attr"``. The module is named, not imported: most live above this layer
    (DESIGN.md, "Layers"); it loads, registering its variants, on the seam's first use."""
    module, attr = contract.split(":")

    def load() -> None:
        s.contract = getattr(importlib.import_module(module), attr)

    s = define_seam(name, between=between, contract=None, default=default, doc=doc,
                    loader=load)
    return s


def declare() -> None:
    # Seams are declared before their contract modules are imported: importing a
    # contract module runs its variants' @variant decorators, which need the seam.
    _declare(
        "persistence", contract="nvdimm.platform.persistence:PersistenceRule",
        between="CPU, memory controller and media",
        default="adr",
        doc="When does a store that is visible to loads become durable across power loss?",
    )
    _declare(
        "memmap", contract="mm.memmap:MemmapPolicy",
        between="pfn/dax drivers and mm",
        default="pmem",
        doc="Where do the struct pages of device memory live (DRAM, the device, nowhere), "
            "what does that cost, and what can the pages then do?",
    )
    _declare(
        "direct_access", contract="drivers.direct_access:DirectAccess",
        between="fs/DAX and the DAX provider (pmem, btt)",
        default="dax-ops",
        doc="What does a DAX provider promise whoever maps its blocks: an address and a "
            "pfn only, error reports and copy helpers, or a mapping lifetime it can see "
            "and notices before a block changes?",
    )
    _declare(
        "btt_remap", contract="drivers.btt.remap:BttRemap",
        between="btt and whoever maps its blocks",
        default="deny-dax",
        doc="A BTT moves a block on every write; what happens to a DAX mapping of the "
            "block it moves: refuse DAX, remap regardless, tell the holder first, or "
            "write in place while mapped?",
    )
    _declare(
        "pmem_tier", contract="mm.tier:PmemTier",
        between="mm and pmem used as memory",
        default="kmem-numa",
        doc="When pmem is a level of the volatile memory hierarchy, which shape does it "
            "take: a lower NUMA tier, swap, a page-cache extension or a DAX block cache?",
    )
