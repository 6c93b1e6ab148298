"""The NFIT-like platform table: which DIMMs exist and how system physical address
ranges (SPA) map onto them.

This is what firmware tells the OS; the kernel's bus, dimm and region objects are
built from it. Values follow what QEMU's ``nvdimm`` device reports by default, so a
one-DIMM machine here looks to the model like the DIMM Linux saw in ../shared/golden.
"""

from __future__ import annotations

import attrs

from nvdimm.errors import InvalidArgument
from nvdimm.units import GiB, KiB, MiB, is_power_of_2

# ACPI's SPA range type GUID for persistent memory.
PMEM_SPA_GUID = "66f0d379-b4f3-4074-ac43-0d3318b78cdb"
# QEMU's NVDIMMs: vendor 0x8086, serial 0x123456 + slot, handle = slot + 1.
QEMU_VENDOR_ID = 0x8086
QEMU_DEVICE_ID = 0x0001
QEMU_SERIAL_BASE = 0x00123456
# Where the first pmem SPA range starts: above 4 GiB of DRAM, 1 GiB aligned.
PMEM_SPA_BASE = 0x1_0000_0000
LABEL_MIN = 1 * KiB


@attrs.frozen(slots=True)
class DimmInfo:
    """One NVDIMM as the platform describes it (NFIT control region + memdev)."""

    index: int
    handle: int
    phys_id: int
    serial: int
    capacity: int  # bytes of DPA space (pmem), excluding the label area
    label_size: int  # bytes of label storage area; 0 = label-less DIMM
    vendor_id: int = QEMU_VENDOR_ID
    device_id: int = QEMU_DEVICE_ID
    revision_id: int = 1
    manufacturing_date: int = 0
    manufacturing_location: int = 0
    flush_hints: int = 1

    @property
    def image_size(self) -> int:
        """Bytes of this DIMM's QEMU backing file: DPA space then label area."""
        return self.capacity + self.label_size

    @property
    def id_string(self) -> str:
        """ndctl's DIMM ``id``: vendor and serial as the NFIT's big-endian byte order
        shows them (QEMU's 0x8086 / 0x123456 print as ``8680-56341200``)."""
        v = int.from_bytes(self.vendor_id.to_bytes(2, "little"), "big")
        s = int.from_bytes(self.serial.to_bytes(4, "little"), "big")
        return f"{v:04x}-{s:08x}"


@attrs.frozen(slots=True)
class Mapping:
    """One DIMM's part of an SPA range: DPA ``[dpa, dpa + size)`` at ``position``."""

    dimm: int
    dpa: int
    size: int
    position: int


@attrs.frozen(slots=True)
class SpaRange:
    """A system physical address range striped across ``mappings`` (the interleave set)."""

    index: int
    base: int
    size: int
    mappings: tuple[Mapping, ...]
    granularity: int = 4 * KiB  # interleave granularity; irrelevant for one way

    @property
    def ways(self) -> int:
        return len(self.mappings)

    def locate(self, offset: int) -> tuple[int, int, int]:
        """Range offset -> (mapping index, DPA, bytes until the next stripe boundary)."""
        if self.ways == 1:
            m = self.mappings[0]
            return 0, m.dpa + offset, self.size - offset
        g = self.granularity
        stripe, within = divmod(offset, g)
        row, way = divmod(stripe, self.ways)
        m = self.mappings[way]
        return way, m.dpa + row * g + within, g - within


@attrs.frozen(slots=True)
class PlatformTable:
    dimms: tuple[DimmInfo, ...]
    ranges: tuple[SpaRange, ...]

    def dimm(self, index: int) -> DimmInfo:
        for d in self.dimms:
            if d.index == index:
                return d
        raise InvalidArgument(f"no DIMM {index}")


def build_table(*, dimms: int, dimm_size: int, label_size: int,
                interleave: bool = False, granularity: int = 4 * KiB) -> PlatformTable:
    """The table QEMU would build for ``dimms`` DIMMs of ``dimm_size`` bytes of pmem each.

    Without ``interleave`` every DIMM gets its own SPA range (one region each, as QEMU
    does); with it, all DIMMs form one interleave set.
    """
    if dimms < 1 or dimms > 32:
        raise InvalidArgument(f"a machine has 1 to 32 DIMMs, not {dimms}")
    if dimm_size < 16 * MiB:
        raise InvalidArgument(f"DIMM size {dimm_size} is below the 16 MiB minimum")
    if dimm_size % (4 * KiB):
        raise InvalidArgument(f"DIMM size {dimm_size:#x} must be a multiple of 4 KiB")
    if label_size and (label_size < 128 * KiB or not is_power_of_2(label_size)):
        raise InvalidArgument(
            f"label size {label_size} must be 0 (label-less) or a power of two of at "
            "least 128K (QEMU's minimum)")
    if interleave and not is_power_of_2(dimms):
        raise InvalidArgument(
            f"an interleave set needs a power-of-two number of DIMMs, not {dimms}")
    infos = tuple(
        DimmInfo(index=i, handle=i + 1, phys_id=i, serial=QEMU_SERIAL_BASE + i,
                 capacity=dimm_size, label_size=label_size)
        for i in range(dimms))
    ranges: list[SpaRange] = []
    base = PMEM_SPA_BASE
    if interleave:
        maps = tuple(Mapping(dimm=i, dpa=0, size=dimm_size, position=i) for i in range(dimms))
        ranges.append(SpaRange(index=0, base=base, size=dimm_size * dimms, mappings=maps,
                               granularity=granularity))
    else:
        for i in range(dimms):
            ranges.append(SpaRange(index=i, base=base, size=dimm_size,
                                   mappings=(Mapping(dimm=i, dpa=0, size=dimm_size, position=0),)))
            base += -(-dimm_size // GiB) * GiB
    return PlatformTable(infos, tuple(ranges))
