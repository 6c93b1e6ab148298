"""Device-dax: a namespace's data area as a character device, /dev/daxR.M.

Linux's ``dax_pmem`` binds a namespace that carries a dax info block (the pfn info
block with the ``NVDIMM_DAX_INFO`` signature) and creates one dax region (id = the
region's number) holding one device-dax instance named after the namespace
(``namespace0.1`` -> ``dax0.1``). There is no block device and no filesystem: a process
maps the device and gets the pmem directly, at the device's alignment only
(``drivers/dax/device.c``, reference section 4.7):

* a mapping must be shared (MAP_PRIVATE is refused with EINVAL) and start and end on
  ``align`` boundaries (the kernel picks aligned addresses for it);
* a fault smaller than ``align`` gets SIGBUS (a 4 KiB access to a 2 MiB device); a
  fault larger than ``align`` falls back to a smaller size; a fault of exactly
  ``align`` inserts a PTE, PMD or PUD;
* its pagemap is ``MEMORY_DEVICE_GENERIC``; with ``align`` above 4 KiB the pages are
  compound pages of that size, which (memmap in RAM) is what lets their tail struct
  pages be shared (``memmap`` variant ``compound``).

Faults proper (page tables, processes) arrive with issue 5 part 2; :meth:`DaxDevice.fault`
already answers what Linux's handler would.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import attrs

from drivers.pfn import PfnDriver, memmap_json
from drivers.pfn_format import DAX_SIG, PMD_SIZE, PUD_SIZE, PfnInfo, PfnLayout, PfnMode
from mm.memmap import PAGE_SIZE
from mm.pagemap import DevPagemap, MemoryType
from nvdimm.errors import InvalidArgument
from nvdimm.metrics import Metrics
from nvdimm.namespace import Namespace
from nvdimm.trace import Trace

#: Fault sizes a page table can map, by name.
FAULT_SIZES = {PAGE_SIZE: "pte", PMD_SIZE: "pmd", PUD_SIZE: "pud"}


class Fault(enum.Enum):
    """What the device-dax fault handler answers (``VM_FAULT_*``)."""

    INSERTED = "inserted"  # VM_FAULT_NOPAGE: the entry was installed
    FALLBACK = "fallback"  # VM_FAULT_FALLBACK: retry with a smaller entry
    SIGBUS = "sigbus"  # VM_FAULT_SIGBUS: the process gets SIGBUS


def dax_name(ns: Namespace) -> str:
    """daxR.M: the region's number and the namespace's id."""
    return f"dax{ns.region.id}.{ns.id}"


@attrs.define(slots=True, eq=False)
class DaxDevice:
    """One device-dax instance: ``size`` bytes at physical ``spa``, mapped at ``align``."""

    ns: Namespace
    name: str
    spa: int
    size: int
    align: int
    info: PfnInfo
    layout: PfnLayout
    pgmap: DevPagemap
    metrics: Metrics
    trace: Trace
    target_node: int = 0
    #: The driver bound to the instance: ``device_dax`` (the character device) or
    #: ``kmem`` (System RAM: /dev/daxX.Y is gone and cannot be mapped).
    driver: str = "device_dax"

    @property
    def region_id(self) -> int:
        return self.ns.region.id

    def pfn_of(self, offset: int) -> int:
        """The pfn of byte ``offset`` of the device."""
        if not 0 <= offset < self.size:
            raise InvalidArgument(f"{self.name}: offset {offset:#x} is outside its "
                                  f"{self.size:#x} bytes")
        return (self.spa + offset) >> 12

    # -- the alignment rules (section 4.7) ------------------------------------------------

    def check_mmap(self, *, offset: int, length: int, shared: bool = True,
                   addr: int | None = None) -> None:
        """Whether ``mmap(addr, length, ..., MAP_SHARED if shared, fd, offset)`` is
        accepted (``check_vma``); raises InvalidArgument (EINVAL) when it is not.
        ``addr`` None means the kernel chooses, and it chooses an aligned address."""
        if self.driver != "device_dax":
            from nvdimm.errors import NoDevice

            raise NoDevice(f"/dev/{self.name} is gone: the instance is bound to "
                           f"{self.driver} (System RAM); unbind it to map it again")
        mask = self.align - 1
        if not shared:
            raise InvalidArgument(f"{self.name}: device-dax mappings must be shared "
                                  "(MAP_PRIVATE is refused)")
        if length <= 0:
            raise InvalidArgument(f"{self.name}: empty mapping")
        start = 0 if addr is None else addr
        if start & mask or (start + length) & mask:
            raise InvalidArgument(f"{self.name}: mapping [{start:#x}, {start + length:#x}) "
                                  f"is not aligned to the device's {self.align:#x}")
        if offset & mask:
            raise InvalidArgument(f"{self.name}: offset {offset:#x} is not aligned to "
                                  f"{self.align:#x}")

    def fault(self, *, offset: int, size: int, vma_start: int | None = None,
              vma_end: int | None = None, address: int | None = None) -> Fault:
        """What a fault of ``size`` bytes (4K, 2M or 1G entry) at device ``offset``
        gets. ``vma_start``/``vma_end``/``address`` describe the mapping when known: an
        entry the VMA cannot hold whole falls back."""
        if size not in FAULT_SIZES:
            raise InvalidArgument(f"a fault maps 4 KiB, 2 MiB or 1 GiB, not {size:#x}")
        verdict = self._fault(offset, size, vma_start, vma_end, address)
        self.metrics.c[f"dax.fault_{FAULT_SIZES[size]}_{verdict.value}"] += 1
        if self.trace.on:
            self.trace.emit("dax.fault", dev=self.name, offset=offset, size=size,
                            result=verdict.value)
        return verdict

    def _fault(self, offset: int, size: int, vma_start: int | None, vma_end: int | None,
               address: int | None) -> Fault:
        if size < self.align:
            return Fault.SIGBUS  # the device cannot be mapped in smaller pieces
        if size > self.align:
            return Fault.FALLBACK  # a smaller entry will do
        if None not in (vma_start, vma_end, address):
            assert vma_start is not None and vma_end is not None and address is not None
            entry = address & ~(size - 1)
            if entry < vma_start or entry + size > vma_end:
                return Fault.FALLBACK
        base = offset & ~(size - 1)
        if base < 0 or base + size > self.size:
            return Fault.SIGBUS  # no pfn behind it (dax_pgoff_to_phys fails)
        return Fault.INSERTED

    # -- what ndctl shows ---------------------------------------------------------------

    def device_json(self) -> dict[str, Any]:
        return {"chardev": self.name, "size": self.size, "target_node": self.target_node,
                "align": self.align, "mode": "devdax"}

    def daxregion_json(self) -> dict[str, Any]:
        return {"id": self.region_id, "size": self.size, "align": self.align,
                "devices": [self.device_json()]}

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"map": PfnMode(self.info.mode).map, "size": self.size,
                               "uuid": str(self.info.uuid)}
        if self.ns.uuid is not None:
            out["raw_uuid"] = str(self.ns.uuid)
        out["daxregion"] = self.daxregion_json()
        out["align"] = self.info.align
        return out

    def sysfs(self) -> dict[str, str]:
        """The nd dax device's sysfs attributes (``/sys/bus/nd/devices/daxR.M/``)."""
        return {"resource": hex(self.spa), "size": str(self.size), "align": str(self.align),
                "mode": PfnMode(self.info.mode).sysfs}

    def memmap_json(self) -> dict[str, Any]:
        return memmap_json(self.layout, self.pgmap)


@attrs.define(slots=True)
class DaxDriver(PfnDriver):
    """Binds devdax namespaces (``dax_pmem``): the pfn machinery with the DAX signature,
    a ``MEMORY_DEVICE_GENERIC`` pagemap and a character device instead of a disk."""

    mode: str = "devdax"

    signature: ClassVar[bytes] = DAX_SIG
    pgmap_type: ClassVar[MemoryType] = MemoryType.GENERIC
    compound_pages: ClassVar[bool] = True

    def _device(self, ns: Namespace, info: PfnInfo, layout: PfnLayout,
                pgmap: DevPagemap) -> object:
        bus = ns.region.bus
        return DaxDevice(ns, dax_name(ns), layout.resource, layout.data_size, info.align,
                         info, layout, pgmap, bus.metrics, bus.trace)
