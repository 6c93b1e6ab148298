"""regionN: one interleave set (an SPA range striped across DIMMs) and its namespaces.

Capacity is allocated per DIMM: a pmem namespace takes the same DPA span on every DIMM
of the set. Allocations are aligned to the region's ``align`` (16 MiB, Linux's
``MEMREMAP_COMPAT_ALIGN_MAX``) divided by the number of ways; the unaligned tail of a
region (for QEMU's 256 MiB file with a 128 KiB label area, the last 15.875 MiB) is
never handed out, which is why Linux's largest namespace there is 240 MiB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from nvdimm.errors import InvalidArgument, NoSpace
from nvdimm.platform.nfit import SpaRange
from nvdimm.units import PAGE_SIZE, MiB, align_down, align_up, human_size

if TYPE_CHECKING:
    from nvdimm.bus import NvdimmBus
    from nvdimm.dimm import Dimm
    from nvdimm.namespace import Namespace

REGION_ALIGN = 16 * MiB


@attrs.define(slots=True, eq=False)
class Region:
    bus: NvdimmBus
    id: int
    spa: SpaRange
    dimms: list[Dimm]  # in mapping (position) order
    cookie_v11: int
    cookie_v12: int
    labelled: bool = False
    label_version: str = ""  # "1.1" or "1.2" when labelled
    read_only: bool = False
    enabled: bool = True
    namespaces: list[Namespace] = attrs.field(factory=list)
    # The idle "seed" namespace's id: the next namespace created takes it, and a new
    # seed then takes the lowest id no namespace uses (Linux allocates ids from an IDA).
    seed_id: int = 0

    def advance_seed(self) -> None:
        used = {ns.id for ns in self.namespaces}
        self.seed_id = next(i for i in range(len(used) + 1) if i not in used)

    @property
    def dev(self) -> str:
        return f"region{self.id}"

    @property
    def ways(self) -> int:
        return self.spa.ways

    @property
    def size(self) -> int:
        return self.spa.size

    @property
    def align(self) -> int:
        return REGION_ALIGN if self.size >= REGION_ALIGN else PAGE_SIZE

    @property
    def dimm_span(self) -> int:
        """Bytes each DIMM contributes to this region."""
        return self.spa.size // self.ways

    @property
    def iset_cookie(self) -> int:
        return self.cookie_v12 if self.label_version == "1.2" else self.cookie_v11

    # -- capacity -----------------------------------------------------------------

    def free_extents(self, exclude: Namespace | None = None) -> list[tuple[int, int]]:
        """Allocatable ``(region_offset, size)`` extents, aligned, lowest first."""
        if not self.labelled:
            return []
        unit = self.align // self.ways  # per-DIMM alignment
        used = sorted((ns.dpa_offset, ns.dpa_offset + ns.size // self.ways)
                      for ns in self.namespaces if ns is not exclude and ns.size)
        out = []
        pos = 0
        for s, e in [*used, (self.dimm_span, self.dimm_span)]:
            lo, hi = align_up(pos, unit), align_down(s, unit)
            if hi > lo:
                out.append((lo * self.ways, (hi - lo) * self.ways))
            pos = max(pos, e)
        return out

    @property
    def available_size(self) -> int:
        return sum(n for _, n in self.free_extents())

    @property
    def max_available_extent(self) -> int:
        return max((n for _, n in self.free_extents()), default=0)

    def allocate(self, size: int) -> int:
        """Region offset for a new namespace of ``size`` bytes (first fit)."""
        if size <= 0 or size % self.align:
            raise InvalidArgument(
                f"{self.dev}: namespace size {size} ({human_size(size)}) must be a positive "
                f"multiple of the region alignment {human_size(self.align)}")
        for off, n in self.free_extents():
            if n >= size:
                return off
        raise NoSpace(f"{self.dev}: no free extent of {human_size(size)}; the largest is "
                      f"{human_size(self.max_available_extent)} "
                      f"({human_size(self.available_size)} available in all)")

    def namespace(self, dev: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.dev == dev:
                return ns
        return None

    @property
    def persistence_domain(self) -> str:
        """What ndctl prints: from the platform's advertised capability."""
        if not self.bus.platform_advertises_persistence:
            return "unknown"
        dom = self.bus.platform.rule.persistence_domain
        return dom if dom else "unknown"

    def to_json(self, verbose: bool = False, *,
                mappings: bool | None = None) -> dict[str, object]:
        """ndctl's region object. ``mappings`` (default: ``verbose``) adds the per-DIMM
        mappings, which ndctl prints only when DIMMs are listed too (``-D``)."""
        out: dict[str, object] = {
            "dev": self.dev,
            "size": self.size,
            "align": self.align,
            "available_size": self.available_size,
            "max_available_extent": self.max_available_extent,
            "type": "pmem",
        }
        if verbose:
            out["numa_node"] = 0
            out["target_node"] = 0
        if self.labelled:  # Linux has no interleave-set cookie for a label-less region
            out["iset_id"] = self.iset_cookie
        if verbose if mappings is None else mappings:
            out["mappings"] = [
                {"dimm": d.dev, "offset": m.dpa, "length": m.size, "position": m.position}
                for d, m in zip(self.dimms, self.spa.mappings, strict=True)]
        out["persistence_domain"] = self.persistence_domain
        if not self.enabled:
            out["state"] = "disabled"
        return out
