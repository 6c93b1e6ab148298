"""The simulated platform: DIMMs, memory controller, CPU cache, DRAM and firmware (DSM).

Everything the kernel model learns about hardware it learns through this object:
the platform table, the CPU's loads/stores/flushes (``cpu``), and the DSM commands
(label area access, address range scrub, error injection and clearing).
"""

from __future__ import annotations

import attrs

from nvdimm.errors import InvalidArgument
from nvdimm.metrics import Metrics
from nvdimm.platform.dram import Dram
from nvdimm.platform.memctrl import DimmMedia, MemoryController
from nvdimm.platform.nfit import PlatformTable
from nvdimm.platform.persistence import PersistenceDomain, PersistenceRule
from nvdimm.trace import Trace
from nvdimm.units import GiB

# Linux's ARS_CAP reports the unit poison can be cleared in; Optane-class DIMMs say 256.
CLEAR_ERR_UNIT = 256
# ND_CMD_GET_CONFIG_SIZE's max_xfer: how many label bytes one DSM call moves (QEMU: 4 KiB).
LABEL_MAX_XFER = 4096


@attrs.frozen(slots=True)
class ArsRecord:
    """One address-range-scrub result: poisoned SPA range found on a DIMM."""

    handle: int
    address: int
    length: int


@attrs.define(slots=True)
class Platform:
    table: PlatformTable
    rule: PersistenceRule
    dimms: list[DimmMedia]
    dram: Dram
    metrics: Metrics
    trace: Trace
    tracking: bool = True
    memctrl: MemoryController = attrs.field(init=False)
    cpu: PersistenceDomain = attrs.field(init=False)
    _ars_results: list[ArsRecord] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        if len(self.dimms) != len(self.table.dimms):
            raise InvalidArgument("platform table and DIMM media disagree on the DIMM count")
        self.memctrl = MemoryController(self.dimms, list(self.table.ranges))
        self.cpu = PersistenceDomain(self.memctrl, self.rule, tracking=self.tracking,
                                     metrics=self.metrics, trace=self.trace)

    @classmethod
    def create(cls, table: PlatformTable, rule: PersistenceRule, *, dram_size: int = 16 * GiB,
               tracking: bool = True, metrics: Metrics | None = None,
               trace: Trace | None = None) -> Platform:
        media = [DimmMedia.blank(d.capacity, d.label_size) for d in table.dimms]
        return cls(table, rule, media, Dram(dram_size), metrics or Metrics(), trace or Trace(),
                   tracking)

    # -- label storage area (ND_CMD_GET_CONFIG_SIZE / _DATA / SET_CONFIG_DATA) --------

    def get_config_size(self, dimm: int) -> tuple[int, int]:
        """(config_size, max_xfer) of a DIMM's label area; config_size 0 = no labels."""
        return self.table.dimm(dimm).label_size, LABEL_MAX_XFER

    def _label_check(self, dimm: int, off: int, n: int) -> DimmMedia:
        info = self.table.dimm(dimm)
        if off < 0 or n < 0 or off + n > info.label_size:
            raise InvalidArgument(f"label area access [{off:#x}, {off + n:#x}) outside "
                                  f"nmem{dimm}'s {info.label_size:#x}-byte label area")
        return self.dimms[dimm]

    def get_config_data(self, dimm: int, off: int, n: int) -> bytes:
        d = self._label_check(dimm, off, n)
        self.metrics.c["dsm.get_config_data"] += 1
        return d.media.read(d.capacity + off, n)

    def set_config_data(self, dimm: int, off: int, data: bytes) -> None:
        d = self._label_check(dimm, off, len(data))
        self.metrics.c["dsm.set_config_data"] += 1
        self.metrics.c["dsm.label_bytes_written"] += len(data)
        # Firmware writes the label area itself: durable when the command returns.
        d.media.write(d.capacity + off, data)

    # -- errors: inject, scrub, clear -------------------------------------------------

    def inject_error(self, address: int, length: int) -> None:
        """Poison SPA ``[address, address+length)`` (ACPI ARS error injection)."""
        if length <= 0:
            raise InvalidArgument(f"error injection length must be positive, not {length}")
        pieces = self.memctrl.pieces(address, length)
        for dimm, dpa, n in pieces:
            self.dimms[dimm].poison.add(dpa, n)
        self.metrics.c["platform.errors_injected"] += 1
        if self.trace.on:
            self.trace.emit("platform.inject_error", address=address, length=length)

    def ars_cap(self, address: int, length: int) -> int:
        """ARS capabilities for a range: returns ``clear_err_unit``."""
        self.memctrl.pieces(address, length)  # validates the range
        return CLEAR_ERR_UNIT

    def ars_start(self, address: int, length: int) -> None:
        """Scrub an SPA range; results are collected for :meth:`ars_status`."""
        results: list[ArsRecord] = []
        for r in self.table.ranges:
            lo, hi = max(address, r.base), min(address + length, r.base + r.size)
            if lo >= hi:
                continue
            for m in r.mappings:
                d = self.dimms[m.dimm]
                for dpa, n in d.poison.intersect(m.dpa, m.size):
                    spa = self.memctrl.spa_of(m.dimm, dpa)
                    if spa is not None and lo <= spa < hi:
                        results.append(ArsRecord(self.table.dimm(m.dimm).handle, spa, n))
        self._ars_results = sorted(results, key=lambda a: a.address)
        self.metrics.c["platform.scrubs"] += 1
        if self.trace.on:
            self.trace.emit("platform.ars", address=address, length=length,
                            records=len(results))

    def ars_status(self) -> list[ArsRecord]:
        return list(self._ars_results)

    def clear_error(self, address: int, length: int) -> int:
        """Clear poison in an SPA range; returns bytes cleared (whole clear units only)."""
        unit = CLEAR_ERR_UNIT
        if address % unit or length % unit or length <= 0:
            raise InvalidArgument(f"clear-error range [{address:#x}, +{length:#x}) is not "
                                  f"aligned to the {unit}-byte clear unit")
        for dimm, dpa, n in self.memctrl.pieces(address, length):
            self.dimms[dimm].poison.remove(dpa, n)
        self.metrics.c["platform.errors_cleared"] += 1
        if self.trace.on:
            self.trace.emit("platform.clear_error", address=address, length=length)
        return length

    def poisoned(self) -> list[tuple[int, int]]:
        """All poisoned SPA ranges (for tests and dumps)."""
        out = []
        for i, d in enumerate(self.dimms):
            for dpa, n in d.poison:
                spa = self.memctrl.spa_of(i, dpa)
                if spa is not None:
                    out.append((spa, n))
        return sorted(out)
