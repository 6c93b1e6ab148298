"""The fsdax personality: Linux's ``nd_pfn`` device on the claim model.

A namespace in fsdax mode carries a pfn info block (:mod:`drivers.pfn_format`) and is
exposed as a pmem disk, /dev/pmemN, over its *data area* only: sector 0 of the disk is
namespace offset ``dataoff``. Around that disk the kernel gives the namespace struct
pages (``memremap_pages`` with a ``MEMORY_DEVICE_FS_DAX`` dev_pagemap) so that DAX
mappings of files on it can be pinned; where those struct pages live is the ``memmap``
seam (:mod:`mm.memmap`):

* ``validate`` refuses what ndctl and the kernel refuse (``--map`` other than mem/dev,
  an alignment other than 4K/2M/1G, a namespace under 16 MiB or not 16 MiB aligned,
  an alignment that leaves no data, and a memmap that does not fit in DRAM), before any
  write;
* ``format`` writes the info block ``nd_pfn_init`` would (version 1.4, a new uuid, the
  namespace's uuid as parent, null for a label-less namespace) and clears known bad
  blocks in the memmap reservation as Linux does;
* ``attach`` validates the info block as ``nd_pfn_validate`` does, remaps the pages
  (charging DRAM for a memmap in RAM) and registers the pmem disk. A block this kernel
  does not recognise (wrong checksum, another parent) makes the namespace come up raw,
  as Linux's probe does; one it recognises but cannot use (-EOPNOTSUPP) fails;
* ``detach`` flushes the disk and tears the pagemap down.

The memmap variant is, by default, Linux's choice from the info block's mode (map=dev:
``pmem``; map=mem: ``ram``; device-dax with map=mem: ``compound``). A driver built with
``memmap="none"`` (or another variant) explores the alternative on the same media; with
no ``--map`` given it then writes map=mem unless the variant is ``pmem``.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any, ClassVar

import attrs

from drivers.pfn_format import (
    DEFAULT_ALIGN,
    INFO_OFFSET,
    INFO_RESERVE,
    INFO_SIZE,
    MEMREMAP_COMPAT_ALIGN_MAX,
    MIN_NAMESPACE_SIZE,
    PAGE_SIZE,
    PFN_SIG,
    SUBSECTION_SIZE,
    PfnInfo,
    PfnLayout,
    PfnMode,
    UnsupportedInfoBlock,
    check_align,
    layout_of,
    plan,
    validate,
)
from drivers.pmem import PmemDevice, PmemDriver, disk_name
from mm.memmap import MemmapPolicy, VmemAltmap
from mm.page import Page
from mm.pagemap import DevPagemap, MemoryType, PagemapTable
from nvdimm.errors import InvalidArgument, NoSpace, NvdimmError
from nvdimm.namespace import Namespace
from nvdimm.seams import seam
from nvdimm.units import human_size

PAGE_SHIFT = 12


def setup_altmap(layout: PfnLayout) -> VmemAltmap:
    """The altmap ``__nvdimm_setup_pfn`` builds for map=dev: the range starts at a
    subsection boundary, the first 8 KiB (plus any pad down to it) are the driver's,
    and the pages from there to ``dataoff`` hold the memmap."""
    base = layout.start + layout.start_pad
    base_pfn = base >> PAGE_SHIFT
    sub = SUBSECTION_SIZE >> PAGE_SHIFT
    aligned = base_pfn // sub * sub
    return VmemAltmap(base_pfn=aligned,
                      end_pfn=(layout.start + layout.size - layout.end_trunc - 1) >> PAGE_SHIFT,
                      reserve=INFO_RESERVE // PAGE_SIZE + base_pfn - aligned,
                      free=(layout.dataoff - INFO_RESERVE) // PAGE_SIZE)


def linux_memmap_variant(signature: bytes, mode: PfnMode) -> str:
    """The memmap variant Linux's choice amounts to for an info block."""
    if mode == PfnMode.PMEM:
        return "pmem"
    return "ram" if signature == PFN_SIG else "compound"


@attrs.define(slots=True, eq=False)
class FsdaxDevice(PmemDevice):
    """/dev/pmemN over an fsdax namespace's data area, with its pagemap."""

    info: PfnInfo = attrs.field(kw_only=True)
    layout: PfnLayout = attrs.field(kw_only=True)
    pgmap: DevPagemap = attrs.field(kw_only=True)

    def pfn_of(self, offset: int) -> int:
        """The pfn of byte ``offset`` of the disk."""
        if not 0 <= offset < self.size:
            raise InvalidArgument(f"{self.name}: offset {offset:#x} is outside its "
                                  f"{self.size:#x} bytes")
        return (self.spa + offset) >> PAGE_SHIFT

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"map": PfnMode(self.info.mode).map, "size": self.size,
                               "uuid": str(self.info.uuid)}
        if self.ns.uuid is not None:
            out["raw_uuid"] = str(self.ns.uuid)
        out["sector_size"] = self.lbasize
        out["align"] = self.info.align
        out["blockdev"] = self.name
        return out

    def sysfs(self) -> dict[str, str]:
        """The pfn device's sysfs attributes (``/sys/bus/nd/devices/pfnR.M/``)."""
        return {"resource": hex(self.layout.resource), "size": str(self.size),
                "align": str(self.info.align), "mode": PfnMode(self.info.mode).sysfs}

    def memmap_json(self) -> dict[str, Any]:
        return memmap_json(self.layout, self.pgmap)


def memmap_json(layout: PfnLayout, pgmap: DevPagemap) -> dict[str, Any]:
    """What the memmap of a pfn/dax namespace costs and can do."""
    out: dict[str, Any] = {"map": layout.mode.map, "dataoff": layout.dataoff,
                           "reserved_on_pmem": layout.memmap_reserved}
    out.update(pgmap.to_json())
    return out


@attrs.define(slots=True)
class PfnDriver:
    """Binds fsdax namespaces. ``memmap`` picks the seam variant (None: as Linux);
    ``pagemaps`` is the kernel's pfn -> pgmap table, shared with the dax driver."""

    mode: str = "fsdax"
    memmap: str | None = None
    pagemaps: PagemapTable = attrs.field(factory=PagemapTable)

    signature: ClassVar[bytes] = PFN_SIG
    pgmap_type: ClassVar[MemoryType] = MemoryType.FS_DAX
    options: ClassVar[tuple[str, ...]] = ("map", "align", "sector_size")
    #: Whether the pagemap describes each ``align`` chunk as one compound page (device-dax
    #: does; fsdax hands out 4 KiB blocks, unless the ``compound`` variant is forced on it
    #: to ask "what if").
    compound_pages: ClassVar[bool] = False

    def __attrs_post_init__(self) -> None:
        if self.memmap is not None:
            seam("memmap").info(self.memmap)  # an unknown variant fails here

    # -- options ------------------------------------------------------------------------

    def _settings(self, options: dict[str, object]) -> tuple[PfnMode, int]:
        extra = {k for k, v in options.items() if v is not None and k not in self.options}
        if extra:
            raise InvalidArgument(f"{self.mode} mode takes no {', '.join(sorted(extra))} "
                                  "option")
        word = options.get("map")
        if word is None:
            word = "dev" if self.memmap in (None, "pmem") else "mem"
        if not isinstance(word, str):
            raise InvalidArgument(f"--map must be 'mem' or 'dev', not {word!r}")
        mode = PfnMode.from_map(word)
        align = options.get("align")
        align = DEFAULT_ALIGN if align is None else align
        if not isinstance(align, int):
            raise InvalidArgument(f"align must be a size, not {align!r}")
        check_align(align)
        return mode, align

    def _variant(self, mode: PfnMode) -> MemmapPolicy:
        name = self.memmap or linux_memmap_variant(self.signature, mode)
        policy: MemmapPolicy = seam("memmap").create(name)
        if policy.uses_altmap and mode != PfnMode.PMEM:
            raise InvalidArgument(f"memmap variant {name!r} keeps struct pages on the device: "
                                  "it needs --map=dev")
        return policy

    def _pgmap(self, ns: Namespace, layout: PfnLayout) -> DevPagemap:
        policy = self._variant(layout.mode)
        compound = self.compound_pages or policy.name == "compound"
        shift = (layout.align // PAGE_SIZE).bit_length() - 1 if compound else 0
        return DevPagemap(self.pgmap_type, layout.start + layout.start_pad, layout.range_len,
                          ns.dev, policy, align=layout.align,
                          altmap=setup_altmap(layout) if policy.uses_altmap else None,
                          page_free=self._page_free(ns), vmemmap_shift=shift)

    def _page_free(self, ns: Namespace) -> Any:
        bus = ns.region.bus

        def page_free(page: Page) -> None:
            if bus.trace.on:
                bus.trace.emit(f"{self.mode}.page_free", ns=ns.dev, pfn=page.pfn)

        return page_free

    def validate(self, ns: Namespace, **options: object) -> None:
        mode, align = self._settings(options)
        size = options.get("sector_size")
        if size is not None and size not in (512, 4096):
            raise InvalidArgument(f"{self.mode} namespaces have 512 or 4096-byte sectors, "
                                  f"not {size}")
        if ns.size < MIN_NAMESPACE_SIZE:
            raise InvalidArgument(f"{ns.dev}: {human_size(ns.size)} is too small for "
                                  f"{self.mode} (at least {human_size(MIN_NAMESPACE_SIZE)})")
        ways = ns.region.ways
        if ns.size % (align * ways):
            want = -(-ns.size // (align * ways)) * align * ways
            raise InvalidArgument(f"'--size=' must align to interleave-width: {ways} and "
                                  f"alignment: {align}; did you intend --size={want >> 20}M?")
        if ns.spa % MEMREMAP_COMPAT_ALIGN_MAX:
            raise InvalidArgument(f"{ns.dev}: physical start {ns.spa:#x} is not 16 MiB "
                                  f"aligned, as ndctl requires for {self.mode}")
        layout = plan(start=ns.spa, size=ns.size, align=align, mode=mode)
        pgmap = self._pgmap(ns, layout)  # what attach will remap: is there DRAM for it?
        need = pgmap.memmap.cost(pgmap.request).dram_bytes
        dram = ns.region.bus.platform.dram
        free = dram.free + dram.charges.get(f"memmap:{ns.dev}", 0)  # reconfigure frees it
        if need > free:
            raise NoSpace(f"{ns.dev}: its memmap needs {human_size(need)} of DRAM "
                          f"(map={mode.map}) but only {human_size(free)} of "
                          f"{human_size(dram.size)} is free; use --map=dev")
        if isinstance(size, int):
            ns.lbasize = size  # what the label records

    # -- format ---------------------------------------------------------------------------

    def format(self, ns: Namespace, **options: object) -> None:
        mode, align = self._settings(options)
        layout = plan(start=ns.spa, size=ns.size, align=align, mode=mode)
        bus = ns.region.bus
        uid = uuidlib.UUID(int=bus.rng.getrandbits(128), version=4)
        info = layout.info(signature=self.signature, uuid=uid, parent_uuid=ns.uuid)
        self._clear_memmap_errors(ns, layout)
        ns.write_bytes(INFO_OFFSET, info.pack())
        if ns.region.label_version == "1.2":
            ns.label_claim_class = "pfn" if self.signature == PFN_SIG else "dax"
        bus.metrics.c[f"{self.mode}.formats"] += 1
        if bus.trace.on:
            bus.trace.emit(f"{self.mode}.format", ns=ns.dev, map=mode.map, align=align,
                           dataoff=layout.dataoff, npfns=layout.npfns, uuid=str(uid))

    @staticmethod
    def _clear_memmap_errors(ns: Namespace, layout: PfnLayout) -> None:
        """``nd_pfn_clear_memmap_errors``: known bad sectors in ``[8K, dataoff)`` are
        rewritten with zeroes (the memmap is re-initialised anyway)."""
        bus = ns.region.bus
        start = ns.spa + INFO_RESERVE
        for spa, n in list(bus.badrange.intersect(start, layout.dataoff - INFO_RESERVE)):
            first = (spa - ns.spa) // 512 * 512
            last = -(-(spa + n - ns.spa) // 512) * 512
            ns.write_bytes(first, bytes(last - first))

    # -- bind -----------------------------------------------------------------------------

    def read_info(self, ns: Namespace) -> PfnInfo:
        """The validated info block (``nd_pfn_validate`` as probe runs it)."""
        raw = ns.read_bytes(INFO_OFFSET, INFO_SIZE)
        return validate(raw, signature=self.signature, parent_uuid=ns.uuid, start=ns.spa,
                        size=ns.size)

    def detect(self, ns: Namespace) -> bool:
        """Our info block is there and valid. A valid block this kernel will not use
        raises UnsupportedInfoBlock: the probe fails instead of falling back to raw."""
        try:
            self.read_info(ns)
        except UnsupportedInfoBlock:
            raise
        except NvdimmError:
            return False
        return True

    def attach(self, ns: Namespace) -> object:
        bus = ns.region.bus
        try:
            info = self.read_info(ns)
        except UnsupportedInfoBlock:
            raise  # -EOPNOTSUPP: Linux fails the probe
        except NvdimmError as e:  # no usable block: the namespace comes up raw
            if bus.trace.on:
                bus.trace.emit(f"{self.mode}.probe_raw", ns=ns.dev, reason=e.message)
            ns.mode = "raw"
            return PmemDriver().attach(ns)
        layout = layout_of(info, start=ns.spa, size=ns.size)
        pgmap = self._pgmap(ns, layout)
        self.pagemaps.memremap_pages(pgmap, dram=bus.platform.dram, metrics=bus.metrics,
                                     trace=bus.trace, kernel=bus)
        try:
            dev = self._device(ns, info, layout, pgmap)
        except BaseException:
            self.pagemaps.memunmap_pages(pgmap, dram=bus.platform.dram, metrics=bus.metrics,
                                         trace=bus.trace)
            raise
        bus.metrics.c[f"{self.mode}.attaches"] += 1
        if bus.trace.on:
            bus.trace.emit(f"{self.mode}.attach", ns=ns.dev, dev=getattr(dev, "name", ""),
                           map=layout.mode.map, dataoff=layout.dataoff,
                           memmap=pgmap.memmap.name)
        return dev

    def _device(self, ns: Namespace, info: PfnInfo, layout: PfnLayout,
                pgmap: DevPagemap) -> object:
        bus = ns.region.bus
        return FsdaxDevice(ns, disk_name(ns), layout.start_pad + layout.dataoff,
                           layout.data_size, bus.platform.cpu, bus.metrics, bus.trace,
                           lbasize=ns.lbasize, info=info, layout=layout, pgmap=pgmap)

    def detach(self, ns: Namespace, device: object) -> None:
        if isinstance(device, PmemDevice):
            device.flush()
        pgmap = getattr(device, "pgmap", None)
        if isinstance(pgmap, DevPagemap):
            bus = ns.region.bus
            self.pagemaps.memunmap_pages(pgmap, dram=bus.platform.dram, metrics=bus.metrics,
                                         trace=bus.trace)
        # Unbound, the namespace is no longer claimed: ndctl lists it as raw (with -i)
        # until it is enabled again and probing finds the info block.
        ns.mode = "raw"
