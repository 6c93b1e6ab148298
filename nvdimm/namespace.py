"""namespaceR.M: a span of a region's capacity, and the claim on it.

Two kinds, as in Linux: an *io* namespace (label-less region: the whole region, no
uuid, cannot be resized or deleted) and a *pmem* namespace (described by labels on
every DIMM of the region's interleave set). Byte access (``read_bytes`` /
``write_bytes``) is Linux's ``nsio_rw_bytes``: through the CPU, refusing known-bad
ranges, with every write made durable before it returns.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import TYPE_CHECKING

import attrs

from nvdimm.errors import InvalidArgument, MediaError, ReadOnly
from nvdimm.units import SECTOR_SIZE

if TYPE_CHECKING:
    from nvdimm.claim import Driver
    from nvdimm.region import Region


@attrs.define(slots=True, eq=False)
class Namespace:
    region: Region
    id: int
    kind: str  # "io" (label-less) or "pmem" (labelled)
    offset: int  # region offset of the first byte (= per-DIMM offset × ways)
    size: int
    uuid: uuidlib.UUID | None = None
    name: str = ""
    lbasize: int = SECTOR_SIZE
    label_claim_class: str = "none"  # from a v1.2 label's abstraction GUID
    mode: str = "raw"  # what probing found, in ndctl's words
    enabled: bool = False
    driver: Driver | None = None
    device: object | None = None

    @property
    def dev(self) -> str:
        return f"namespace{self.region.id}.{self.id}"

    @property
    def spa(self) -> int:
        """System physical address of the namespace's first byte."""
        return self.region.spa.base + self.offset

    @property
    def dpa_offset(self) -> int:
        """Offset of this namespace inside each DIMM's part of the region."""
        return self.offset // self.region.ways

    def _check(self, off: int, n: int) -> None:
        if off < 0 or n < 0 or off + n > self.size:
            raise InvalidArgument(
                f"{self.dev}: access [{off:#x}, {off + n:#x}) outside its {self.size:#x} bytes")

    def bad_sectors(self, off: int, n: int) -> bool:
        """Whether ``[off, off+n)`` touches a known-bad range (bus badrange)."""
        return self.region.bus.badrange.overlaps(
            self.spa + off - off % SECTOR_SIZE, n + off % SECTOR_SIZE)

    def read_bytes(self, off: int, n: int) -> bytes:
        """nsio_rw_bytes read: EIO on known-bad sectors, machine-check-safe copy."""
        self._check(off, n)
        if self.bad_sectors(off, n):
            raise MediaError(f"{self.dev}: read of known-bad range at {off:#x}", off, n)
        try:
            return self.region.bus.platform.cpu.load(self.spa + off, n)
        except MediaError as e:
            raise MediaError(f"{self.dev}: machine check at offset {e.offset - self.spa:#x}",
                             e.offset - self.spa, e.length) from None

    def write_bytes(self, off: int, data: bytes) -> None:
        """nsio_rw_bytes write: flushcache copy, then nvdimm_flush (durable on return).

        A write covering whole known-bad sectors clears their poison first, as Linux
        does for 512-byte aligned, non-atomic writes.
        """
        self._check(off, len(data))
        if self.region.read_only:
            raise ReadOnly(f"{self.dev}: region{self.region.id} is read-only")
        if self.bad_sectors(off, len(data)):
            if off % SECTOR_SIZE or len(data) % SECTOR_SIZE:
                raise MediaError(f"{self.dev}: write to a bad range must cover whole sectors",
                                 off, len(data))
            self.region.bus.clear_poison(self.spa + off, len(data))
        cpu = self.region.bus.platform.cpu
        cpu.write_flushcache(self.spa + off, data)
        cpu.nvdimm_flush()

    def to_json(self, verbose: bool = False) -> dict[str, object]:
        """ndctl's view of the namespace (``ndctl list -N``)."""
        out: dict[str, object] = {"dev": self.dev, "mode": self.mode}
        dev = self.device
        describe = getattr(dev, "describe", None)
        if describe is not None and self.enabled:
            out.update(describe())
        else:
            out["size"] = self.size
            if self.uuid is not None:
                out["uuid"] = str(self.uuid)
            out["sector_size"] = self.lbasize
            if not self.enabled:
                out["state"] = "disabled"
        if self.name:
            out["name"] = self.name
        if verbose:
            out["numa_node"] = 0
            out["target_node"] = 0
        return out
