"""Seam ``direct_access``: what a DAX provider promises whoever maps its blocks.

Filesystem DAX needs, for a byte range of the block device under it, the kernel address
and the pfn of the pmem behind it, so it can copy to and from it (read/write) and hand
the pfn to a process's page table (mmap). The provider is the pmem driver (raw or fsdax
namespace); a BTT (sector mode) namespace refuses, since it moves a block on every write
and so has no stable pfn to give (no DAX on sector mode); a device-dax instance has no
operations for filesystems either. :func:`dax_provider` builds the variant for a device.

What the provider promises is the seam. Three variants, one per era:

============ ===== ======== ======= ======== ====== ==================================
variant      errs  lifetime notify  failure  mc     what it cannot express
============ ===== ======== ======= ======== ====== ==================================
bdev-2016    no    no       no      no       no     a bad sector is mapped like any
                                                    other; nobody hears of a change or
                                                    an error; a kernel read of poison
                                                    is a fatal machine check
dax-ops      yes   no       no      device   yes    which mappings exist; any notice
                                                    *before* a block changes
widened      yes   yes      yes     mapping  yes    (the seed's proposal)
============ ===== ======== ======= ======== ====== ==================================

A filesystem also asks ``layout_busy``: whether it can find pages of a range that are
still pinned (``dax_layout_busy_page``, 4.17) before it frees their blocks; bdev-2016
cannot, so a truncate there frees a block a DMA is still writing into.

(errs: refuses known-bad ranges; lifetime: the provider sees a mapping open and close;
notify: it tells the holder before a block it handed out changes; failure: who hears of a
media failure; mc: reads are machine-check safe and report how much they copied.)

Every variant implements the uniform :class:`DirectAccess` contract (``map``,
``release``, ``read``, ``write``, ``zero``, ``flush`` for the consumer; ``remap``,
``media_error``, ``outstanding`` for the provider's side) and exposes its capability
flags, so tests and experiments run over all of them; each also has its era's native
call (``bdev_direct_access``; ``direct_access`` + ``copy_*_iter`` + ``zero_page_range``
+ ``recovery_write``; ``direct_access`` returning a :class:`DaxHandle`).

Addresses: ``kaddr`` is the model's direct-map address of the pmem (x86_64 ``__va``,
4-level paging, no KASLR); ``pfn`` the physical page number. Writes are
``memcpy_flushcache`` copies: durable after :meth:`~DirectAccess.flush` (nvdimm_flush).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

import attrs

from drivers.pmem import PmemDevice
from mm.fault import HwPoisoned
from nvdimm.errors import Busy, InvalidArgument, MediaError, NoDevice, NotSupported
from nvdimm.seams import seam, variant

PAGE = 4096
SECTOR = 512
#: x86_64 PAGE_OFFSET (the direct map) with 4-level paging and no KASLR.
KADDR_BASE = 0xFFFF_8880_0000_0000
LINE = 64
# pfn_t flags (include/linux/pfn_t.h), reference section 5.6
PFN_DEV = 1 << 61
PFN_MAP = 1 << 60
# memory-failure flags a holder sees (include/linux/mm.h)
MF_ACTION_REQUIRED = 1 << 1
MF_MEM_PRE_REMOVE = 1 << 7


class OutOfRange(InvalidArgument):
    """ERANGE: past the end of the device, or nothing available there."""

    errno = errno.ERANGE


class KernelMachineCheck(MediaError):
    """The kernel consumed poison with an ordinary copy: without a machine-check-safe
    copy, the real kernel would panic here. The model raises instead."""


@attrs.frozen(slots=True)
class DaxExtent:
    """What one ``map`` handed out: ``length`` bytes from device ``offset``."""

    offset: int
    length: int
    kaddr: int
    pfn: int
    pfn_flags: int
    handle: DaxHandle | None = None

    @property
    def has_page(self) -> bool:
        """``pfn_t_has_page``: struct pages back the pfns, so they can be pinned."""
        return bool(self.pfn_flags & PFN_MAP) or not self.pfn_flags & PFN_DEV

    @property
    def end(self) -> int:
        return self.offset + self.length


@attrs.frozen(slots=True)
class RemapReport:
    """What a provider-side change did: ``notified`` holders told first; ``outstanding``
    mappings of the range the provider knows to be open afterwards (None: it cannot
    know); ``applied`` whether the change happened."""

    notified: int
    outstanding: int | None
    applied: bool


class DaxHolder(Protocol):
    """Whoever maps blocks under the widened contract (a filesystem, per mapping)."""

    def on_remap(self, offset: int, length: int) -> None:
        """The provider is about to change ``[offset, +length)``: stop using it and
        release its handles; the change waits for that."""
        ...

    def on_error(self, offset: int, length: int) -> None:
        """Media under ``[offset, +length)`` failed."""
        ...


class FailureHolder(Protocol):
    """The device-wide holder of the dax-ops era (``dax_holder_operations``, 5.19)."""

    def notify_failure(self, offset: int, length: int, mf_flags: int) -> None: ...


@runtime_checkable
class DirectAccess(Protocol):
    """The ``direct_access`` seam's contract (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def can_report_errors(self) -> bool:
        """Known-bad ranges are refused when mapped."""
        ...

    @property
    def sees_lifetime(self) -> bool:
        """The provider knows which ranges are mapped until they are released."""
        ...

    @property
    def can_notify(self) -> bool:
        """The provider tells the holder before a block it handed out changes."""
        ...

    @property
    def notifies_failure(self) -> str:
        """Who hears of a media failure: ``""`` (nobody), ``"device"`` (one holder for
        the whole device) or ``"mapping"`` (each holder of the failed range)."""
        ...

    @property
    def mc_safe(self) -> bool:
        """Reads survive poison and say how much they copied."""
        ...

    @property
    def layout_busy(self) -> bool:
        """A filesystem can find pages of a range still pinned before it frees their
        blocks (``dax_layout_busy_page``)."""
        ...

    @property
    def linear(self) -> bool:
        """Device offset ``o`` is at pfn ``pfn(0) + o // 4096``."""
        ...

    def set_holder(self, holder: Any) -> None:
        """Register the device's one failure holder (``notify_failure``); a provider
        whose era has none ignores it."""
        ...

    def put_holder(self, holder: Any) -> None:
        """Unregister ``holder`` if it is the device's failure holder."""
        ...

    def map(self, offset: int, length: int, holder: Any = None) -> DaxExtent:
        """kaddr and pfn for ``[offset, +length)`` (``offset`` page aligned); the extent
        may be shorter than asked. Raises what the variant refuses with."""
        ...

    def release(self, extent: DaxExtent) -> None: ...

    def read(self, offset: int, n: int) -> bytes:
        """Copy out; a short result means the rest could not be read (poison)."""
        ...

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Copy in (flushcache); durable after :meth:`flush`. Returns bytes written."""
        ...

    def zero(self, offset: int, length: int) -> None: ...

    def flush(self) -> None: ...

    def remap(self, offset: int, length: int,
              change: Callable[[], None] | None = None) -> RemapReport:
        """The provider changes the blocks of ``[offset, +length)`` (``change`` does it;
        default: reinitialise them with zeroes)."""
        ...

    def media_error(self, offset: int, length: int) -> int:
        """Media under the range failed; returns how many holders were told."""
        ...

    def outstanding(self, offset: int, length: int) -> int | None:
        """Open mappings of the range the provider knows of (None: it cannot know)."""
        ...


def capabilities(da: DirectAccess) -> dict[str, Any]:
    return {"can_report_errors": da.can_report_errors, "sees_lifetime": da.sees_lifetime,
            "can_notify": da.can_notify, "notifies_failure": da.notifies_failure,
            "mc_safe": da.mc_safe}


def dax_provider(device: object, name: str | None = None, *, btt_remap: str | None = None,
                 **kwargs: Any) -> DirectAccess:
    """The ``direct_access`` variant ``name`` (default: the seam's) over ``device``.
    A device-dax device refuses with NotSupported (EOPNOTSUPP). So does a BTT under the
    ``btt_remap`` variant ``deny-dax`` (that seam's default); under the others the
    provider is a :class:`drivers.btt.remap.BttDax`, whose promises come from the
    ``btt_remap`` variant (``name`` must still be a ``direct_access`` variant)."""
    if not isinstance(device, PmemDevice):
        dev_name = getattr(device, "name", type(device).__name__)
        ns = getattr(device, "ns", None)
        if getattr(ns, "mode", None) == "sector":
            # drivers.btt sits beside this module and imports it: import it when needed.
            from drivers.btt.btt import BttDevice
            from drivers.btt.remap import BttDax

            policy = seam("btt_remap").create(btt_remap)
            if policy.allows_dax and isinstance(device, BttDevice):
                if name is not None:
                    seam("direct_access").info(name)  # a misspelt variant still fails
                return BttDax(device, policy, **kwargs)
            why = ("sector mode: the BTT moves a block on every write, so it has no stable "
                   f"pfn to hand out (no DAX on BTT; btt_remap={policy.name})")
        else:
            why = "it has no dax_operations for filesystems"
        raise NotSupported(f"{dev_name} cannot provide direct access: {why}")
    da: DirectAccess = seam("direct_access").create(name, device=device, **kwargs)
    return da


# -- the common machinery ------------------------------------------------------------------


@attrs.define(slots=True, eq=False)
class _Pmem:
    """What every variant does with a pmem device."""

    #: Device offset ``o`` is at pfn ``base + o // 4096`` (the pmem is one range).
    linear: ClassVar[bool] = True
    name: ClassVar[str]  # each variant's

    # What a provider without mapping lifetimes does (bdev-2016, dax-ops; widened
    # overrides all three): it never knew of a mapping, so it tells nobody.

    def release(self, extent: DaxExtent) -> None:
        return None

    def remap(self, offset: int, length: int,
              change: Callable[[], None] | None = None) -> RemapReport:
        self._check_range(offset, length)
        (change or self._default_change(offset, length))()
        self._trace("remap", variant=self.name, offset=offset, len=length, notified=0)
        return RemapReport(0, None, True)

    def outstanding(self, offset: int, length: int) -> int | None:
        return None

    def set_holder(self, holder: Any) -> None:
        return None  # before dax-ops (5.19) a device had no failure holder

    def put_holder(self, holder: Any) -> None:
        return None
    device: PmemDevice

    @property
    def size(self) -> int:
        return self.device.size

    def _alive(self) -> None:
        if self.device.disk.dead:
            raise NoDevice(f"{self.device.name}: the dax device is gone")

    def _pfn_flags(self) -> int:
        pgmap = getattr(self.device, "pgmap", None)
        if pgmap is not None and pgmap.memmap.struct_pages:
            return PFN_DEV | PFN_MAP
        return PFN_DEV

    def _extent(self, offset: int, length: int, handle: DaxHandle | None = None) -> DaxExtent:
        phys = self.device.spa + offset
        return DaxExtent(offset, length, KADDR_BASE + phys, phys >> 12, self._pfn_flags(),
                         handle)

    def _bad(self, offset: int, length: int) -> tuple[int, int] | None:
        """The first known-bad byte range overlapping ``[offset, +length)``."""
        bb = self.device.badblocks
        if not bb.count:
            return None
        first = offset // SECTOR
        last = -(-(offset + length) // SECTOR)
        rc, start, n = bb.check(first, last - first)
        return (start * SECTOR, n * SECTOR) if rc else None

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise OutOfRange(f"{self.device.name}: [{offset:#x}, +{length:#x}) is beyond "
                             f"its {self.size:#x} bytes")

    def _load(self, offset: int, n: int) -> bytes:
        c = self.device.metrics.c
        c["dax.reads"] += 1  # for the cost model: kernel copies out of pmem
        c["dax.bytes_read"] += n
        return self.device.cpu.load(self.device.spa + offset, n)

    def _mc_read(self, offset: int, n: int) -> bytes:
        """copy_mc_to_kernel: copy up to the first poisoned cache line."""
        try:
            return self._load(offset, n)
        except MediaError as e:
            start = self.device.spa + offset
            good = max(0, (e.offset & ~(LINE - 1)) - start) if e.offset >= start else 0
            good = min(good, n)
            m = self.device.metrics.c
            m["dax.mc_short_copies"] += 1
            return self._load(offset, good) if good else b""

    def _flushcache(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        spa = self.device.spa + offset
        self.device.cpu.write_flushcache(spa, data)
        self.device.metrics.c["dax.bytes_written"] += len(data)
        tr = self.device.trace
        if tr.on:
            n = len(data)
            lines = ((spa + n - 1) >> 6) - (spa >> 6) + 1 if n else 0
            tr.emit("dax.copy_in", dev=self.device.name, offset=offset, len=n, spa=spa,
                    lines=lines, how="memcpy_flushcache (NT stores, not fenced)")
        return len(data)

    def flush(self) -> None:
        self.device.flush()

    def _default_change(self, offset: int, length: int) -> Callable[[], None]:
        def reinit() -> None:
            first = offset // PAGE * PAGE
            last = -(-(offset + length) // PAGE) * PAGE
            self.device.do_write(first // SECTOR, bytes(last - first), 0)

        return reinit

    def _trace(self, event: str, **fields: Any) -> None:
        tr = self.device.trace
        if tr.on:
            tr.emit(f"dax.{event}", dev=self.device.name, **fields)


# -- bdev-2016 -------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class BlkDaxCtl:
    """``struct blk_dax_ctl`` after the call: in ``sector``, ``size``; out ``addr``,
    ``pfn``; ``avail`` is what the call returned (bytes)."""

    sector: int
    size: int
    addr: int
    pfn: int
    pfn_flags: int
    avail: int


@variant(
    "direct_access", "bdev-2016",
    history="""The interface filesystem DAX used from 4.0 to 4.12: block_device_operations
    ->direct_access, called through bdev_direct_access(bdev, struct blk_dax_ctl *) (a
    sector in, a kernel address and a pfn_t out; the size argument arrived around 4.7).
    It was a block-device method because DAX was a block-device feature; the 2016 LSF/MM
    discussions of pmem errors and of DAX on BTT took place against it. 4.12/4.13 replaced
    it with struct dax_device and dax_operations.""",
    tradeoffs="""The smallest possible contract: translation and nothing else. It costs the
    provider no state, but the provider never learns who holds an address, cannot refuse
    or report a known-bad range (the 2016 pmem driver did not consult badblocks here), and
    cannot warn anyone before a block changes. Copies are plain memcpy: a kernel read of
    poison is a machine check the kernel cannot recover from.""",
)
@attrs.define(slots=True, eq=False)
class Bdev2016(_Pmem):
    """Sector -> kernel address and pfn, nothing more.

    Contract: for a page-aligned sector inside the device, returns the address and pfn
    and how many bytes are contiguous from there (``min(avail, size)``). Nothing else is
    promised: no error information (a poisoned sector maps like any other), no lifetime
    (the provider forgets the call at once), no notification. Errors: EINVAL for a
    sector not page aligned, ERANGE past the end, ENXIO for a size not page-multiple.

    ::

        poison sector 8                     badblocks {8}
        bdev_direct_access(sector 8, 4096)  addr __va(spa + 4K), pfn, 4096: no error
        memcpy from addr                    machine check: the kernel panics
    """

    name: ClassVar[str] = "bdev-2016"
    #: No dax_layout_busy_page (4.17): a filesystem cannot find DAX pages still pinned
    #: (for DMA) when it frees their blocks, so truncate frees them anyway.
    layout_busy: ClassVar[bool] = False
    can_report_errors: ClassVar[bool] = False
    sees_lifetime: ClassVar[bool] = False
    can_notify: ClassVar[bool] = False
    notifies_failure: ClassVar[str] = ""
    mc_safe: ClassVar[bool] = False

    def bdev_direct_access(self, sector: int, size: int) -> BlkDaxCtl:
        if size < 0:
            raise InvalidArgument(f"{self.device.name}: negative size {size}")
        self._alive()
        capacity = self.size // SECTOR
        if sector < 0 or sector + -(-size // SECTOR) > capacity:
            raise OutOfRange(f"{self.device.name}: sector {sector} + {size} bytes is past "
                             f"its {capacity} sectors")
        if sector % (PAGE // SECTOR):
            raise InvalidArgument(f"{self.device.name}: sector {sector} is not page aligned")
        avail = self.size - sector * SECTOR
        if avail <= 0:
            raise OutOfRange(f"{self.device.name}: nothing at sector {sector}")
        if avail % PAGE:
            raise NoDevice(f"{self.device.name}: {avail} bytes is not whole pages")
        e = self._extent(sector * SECTOR, 0)
        self.device.metrics.c["dax.direct_access"] += 1
        self._trace("direct_access", variant=self.name, sector=sector, size=size)
        return BlkDaxCtl(sector, size, e.kaddr, e.pfn, e.pfn_flags, min(avail, size))

    def map(self, offset: int, length: int, holder: Any = None) -> DaxExtent:
        if offset % PAGE:
            raise InvalidArgument(f"{self.device.name}: offset {offset:#x} not page aligned")
        ctl = self.bdev_direct_access(offset // SECTOR, length)
        return self._extent(offset, ctl.avail)

    def read(self, offset: int, n: int) -> bytes:
        self._check_range(offset, n)
        try:
            return self._load(offset, n)
        except MediaError as e:
            self.device.metrics.c["dax.fatal_machine_checks"] += 1
            raise KernelMachineCheck(f"{self.device.name}: kernel memcpy consumed poison at "
                                     f"physical {e.offset:#x}", e.offset, e.length) from None

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        self._check_range(offset, len(data))
        return self._flushcache(offset, data)  # memcpy_to_pmem

    def zero(self, offset: int, length: int) -> None:
        """clear_pmem: stores and write-back; poison is not cleared."""
        self._check_range(offset, length)
        cpu = self.device.cpu
        cpu.store(self.device.spa + offset, bytes(length))
        cpu.writeback(self.device.spa + offset, length)

    def media_error(self, offset: int, length: int) -> int:
        self._trace("media_error", variant=self.name, offset=offset, len=length, notified=0)
        return 0



# -- dax-ops ----------------------------------------------------------------------------------


@variant(
    "direct_access", "dax-ops",
    history="""struct dax_device and dax_operations (4.12/4.13, Dan Williams): DAX became a
    property of a dax_device, not of a block device; direct_access takes a page offset and a
    page count. copy_from_iter (4.13) and copy_to_iter (~4.18) let the driver pick the copy
    (flushcache in, machine-check-safe out); 5.7 added zero_page_range (zero and clear
    poison); 5.17 folded the copy ops into device flags (NOCACHE, NOMC); 5.19 added
    DAX_RECOVERY_WRITE / recovery_write and turned the refusal of known-bad ranges from
    EIO into EHWPOISON, and gave the device one holder with notify_failure.""",
    tradeoffs="""Errors are visible: a known-bad range is refused, a read that meets poison
    comes back short instead of crashing, zeroing clears poison. But the provider still
    sees no mapping's lifetime: a failure can be reported only to one device-wide holder
    (a filesystem, which must use its reverse map to find the owners), and there is no
    way at all to warn before a block that was handed out changes.""",
)
@attrs.define(slots=True, eq=False)
class DaxOps(_Pmem):
    """Page offset -> kernel address and pfn, with copy, zero and recovery helpers.

    Contract: ``direct_access(pgoff, nr_pages)`` returns how many pages are contiguous
    (at least 1, at most ``nr_pages`` when bad blocks exist anywhere, else up to the end)
    and their address and pfn; a range holding a known-bad sector is refused with
    EHWPOISON (``hwpoison=False``: EIO, as before 5.19) unless the mode is
    ``recovery_write``, which gets the good pages before the first bad one.
    ``copy_to_iter`` is machine-check safe: it returns the bytes it could copy and how
    many it could not. ``zero_page_range`` and ``recovery_write`` clear poison. A
    device-wide holder hears of media failures after the fact; no one hears of a change
    before it happens.

    ::

        poison sector 8                      badblocks {8}
        direct_access(pgoff 1, 1)            -EHWPOISON (before 5.19: -EIO)
        copy_to_iter(offset 0, 8192)         4096 copied, 4096 not copied (no crash)
    """

    hwpoison: bool = True
    holder: Any = None  # a FailureHolder, set by set_holder

    name: ClassVar[str] = "dax-ops"
    layout_busy: ClassVar[bool] = True
    can_report_errors: ClassVar[bool] = True
    sees_lifetime: ClassVar[bool] = False
    can_notify: ClassVar[bool] = False
    notifies_failure: ClassVar[str] = "device"
    mc_safe: ClassVar[bool] = True

    # -- native -----------------------------------------------------------------------

    def direct_access(self, pgoff: int, nr_pages: int,
                      mode: str = "access") -> tuple[int, int, int]:
        """``(pages available, kaddr, pfn)`` for ``nr_pages`` from page ``pgoff``."""
        if nr_pages < 0:
            raise InvalidArgument(f"{self.device.name}: negative page count {nr_pages}")
        if mode not in ("access", "recovery_write"):
            raise InvalidArgument(f"dax access mode {mode!r}")
        self._alive()
        to_end = self.size // PAGE - pgoff
        if pgoff < 0 or to_end <= 0:
            raise OutOfRange(f"{self.device.name}: page {pgoff} is past its "
                             f"{self.size // PAGE} pages")
        offset = pgoff * PAGE
        bad = self._bad(offset, nr_pages * PAGE)
        if bad is not None:
            if mode == "access":
                self.device.metrics.c["dax.direct_access_refused"] += 1
                self._trace("direct_access_refused", variant=self.name, pgoff=pgoff,
                            bad=bad[0])
                msg = (f"{self.device.name}: pages [{pgoff}, +{nr_pages}) hold a known-bad "
                       f"sector at byte {bad[0]:#x}")
                if self.hwpoison:
                    raise HwPoisoned(msg, bad[0], bad[1])
                raise MediaError(msg, bad[0], bad[1])
            avail = max(1, (bad[0] - offset) // PAGE)
        elif self.device.badblocks.count:
            avail = nr_pages
        else:
            avail = to_end
        avail = min(avail, nr_pages, to_end)
        e = self._extent(offset, avail * PAGE)
        self.device.metrics.c["dax.direct_access"] += 1
        self._trace("direct_access", variant=self.name, pgoff=pgoff, pages=avail)
        return avail, e.kaddr, e.pfn

    def copy_from_iter(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Flushcache copy in; returns bytes copied."""
        self._check_range(offset, len(data))
        return self._flushcache(offset, data)

    def copy_to_iter(self, offset: int, n: int) -> tuple[bytes, int]:
        """Machine-check-safe copy out: ``(bytes copied, bytes not copied)``."""
        self._check_range(offset, n)
        data = self._mc_read(offset, n)
        return data, n - len(data)

    def zero_page_range(self, pgoff: int, nr_pages: int = 1) -> None:
        """Zero one page, clearing its poison (``dax_zero_page_range`` allows one page)."""
        if nr_pages != 1:
            raise InvalidArgument("dax_zero_page_range zeroes exactly one page")
        self._alive()
        self._check_range(pgoff * PAGE, PAGE)
        self.device.do_write(pgoff * PAGE // SECTOR, bytes(PAGE), 0)

    def recovery_write(self, pgoff: int, data: bytes | bytearray | memoryview) -> int:
        """Whole pages written over poison: the poison is cleared first."""
        n = len(data)
        if n % PAGE or n == 0:
            raise InvalidArgument("recovery_write needs whole pages")
        self._check_range(pgoff * PAGE, n)
        self.device.do_write(pgoff * PAGE // SECTOR, data, 0)
        self.device.metrics.c["dax.recovery_writes"] += 1
        return n

    def set_holder(self, holder: Any) -> None:
        """``fs_dax_get_by_bdev`` with holder ops: one holder per device (EBUSY else)."""
        if self.holder is not None and self.holder is not holder:
            raise Busy(f"{self.device.name}: the dax device already has a holder")
        self.holder = holder

    def put_holder(self, holder: Any) -> None:
        if self.holder is holder:
            self.holder = None

    # -- the uniform contract ----------------------------------------------------------

    def map(self, offset: int, length: int, holder: Any = None) -> DaxExtent:
        if offset % PAGE:
            raise InvalidArgument(f"{self.device.name}: offset {offset:#x} not page aligned")
        pages, _, _ = self.direct_access(offset // PAGE, -(-length // PAGE))
        return self._extent(offset, pages * PAGE)

    def read(self, offset: int, n: int) -> bytes:
        return self.copy_to_iter(offset, n)[0]

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        return self.copy_from_iter(offset, data)

    def zero(self, offset: int, length: int) -> None:
        if offset % PAGE or length % PAGE:
            raise InvalidArgument("zeroing goes by whole pages")
        for pg in range(offset // PAGE, (offset + length) // PAGE):
            self.zero_page_range(pg)

    def media_error(self, offset: int, length: int) -> int:
        told = 0
        if self.holder is not None:
            self.holder.notify_failure(offset, length, MF_ACTION_REQUIRED)
            told = 1
        self._trace("media_error", variant=self.name, offset=offset, len=length,
                    notified=told)
        return told



# -- widened ------------------------------------------------------------------------------------


@attrs.define(slots=True, eq=False)
class DaxHandle:
    """A mapping handed out under the widened contract; open until :meth:`close`."""

    provider: Widened = attrs.field(repr=False)
    id: int
    offset: int
    length: int
    kaddr: int
    pfn: int
    holder: Any = attrs.field(repr=False)
    open: bool = True

    def overlaps(self, offset: int, length: int) -> bool:
        return self.open and self.offset < offset + length and offset < self.offset + self.length

    def close(self) -> None:
        self.provider.close(self)


@variant(
    "direct_access", "widened",
    history="""The seed's proposal (LSF/MM 2016, "pmem as storage vs pmem as memory"):
    treat a DAX mapping as an object the provider can see, so that storage-style services
    (remapping a failing block, BTT-like atomicity, relocation) and memory-style users
    (mmap, DMA) can coexist. Linux took parts of it later and piecemeal: the device-wide
    holder and notify_failure (5.19), MF_MEM_PRE_REMOVE before a device goes away (6.x),
    dax_break_layout for truncate; no per-mapping lifetime exists.""",
    tradeoffs="""The provider keeps state per open mapping (a handle), and every change of a
    block handed out costs a round trip to its holder, who must unmap (and wait for pins)
    before the change proceeds: slower changes, and a holder that never releases blocks
    them. In exchange nothing changes under a live mapping, and errors reach exactly the
    holders of the failed range.""",
)
@attrs.define(slots=True, eq=False)
class Widened(DaxOps):
    """dax-ops, plus mappings with a lifetime the provider sees and callbacks to holders.

    Contract: everything dax-ops promises, and ``direct_access(pgoff, nr_pages, holder)``
    returns a :class:`DaxHandle` the provider records until it is closed. Before the
    provider changes a block it handed out (:meth:`remap`) it calls ``on_remap(range)`` on
    the holder of every open handle overlapping it, and proceeds only once none is open
    (else EBUSY and nothing changes). When media under open handles fails it calls their
    holders' ``on_error(range)``.

    ::

        h = direct_access(pgoff 1, 1, holder)   provider records [4K, 8K) -> holder
        remap([4K, 8K))                         holder.on_remap first; it closes h; then change
        media error at 4K (h reopened)          holder.on_error([4K, 8K))
    """

    handles: dict[int, DaxHandle] = attrs.field(factory=dict)
    _next: int = 1

    name: ClassVar[str] = "widened"
    sees_lifetime: ClassVar[bool] = True
    can_notify: ClassVar[bool] = True
    notifies_failure: ClassVar[str] = "mapping"

    def open_handle(self, pgoff: int, nr_pages: int, holder: Any,
                    mode: str = "access") -> DaxHandle:
        """``direct_access`` with a holder: a handle open until closed."""
        if holder is None or not hasattr(holder, "on_remap") or not hasattr(holder, "on_error"):
            raise InvalidArgument("the widened contract needs a holder with on_remap and "
                                  "on_error")
        pages, kaddr, pfn = DaxOps.direct_access(self, pgoff, nr_pages, mode)
        h = DaxHandle(self, self._next, pgoff * PAGE, pages * PAGE, kaddr, pfn, holder)
        self._next += 1
        self.handles[h.id] = h
        self.device.metrics.c["dax.handles_opened"] += 1
        self._trace("open", variant=self.name, handle=h.id, offset=h.offset, len=h.length)
        return h

    def close(self, handle: DaxHandle) -> None:
        if self.handles.pop(handle.id, None) is not None:
            handle.open = False
            self.device.metrics.c["dax.handles_closed"] += 1
            self._trace("close", variant=self.name, handle=handle.id)

    def _overlapping(self, offset: int, length: int) -> list[DaxHandle]:
        return [h for h in self.handles.values() if h.overlaps(offset, length)]

    def map(self, offset: int, length: int, holder: Any = None) -> DaxExtent:
        if offset % PAGE:
            raise InvalidArgument(f"{self.device.name}: offset {offset:#x} not page aligned")
        h = self.open_handle(offset // PAGE, -(-length // PAGE), holder)
        return self._extent(offset, h.length, h)

    def release(self, extent: DaxExtent) -> None:
        if extent.handle is not None:
            self.close(extent.handle)

    def remap(self, offset: int, length: int,
              change: Callable[[], None] | None = None) -> RemapReport:
        self._check_range(offset, length)
        told = 0
        for h in self._overlapping(offset, length):
            if not h.open:
                continue  # an earlier holder's callback closed it
            lo = max(offset, h.offset)
            hi = min(offset + length, h.offset + h.length)
            h.holder.on_remap(lo, hi - lo)
            told += 1
        left = len(self._overlapping(offset, length))
        self._trace("remap", variant=self.name, offset=offset, len=length, notified=told,
                    left=left)
        if left:
            self.device.metrics.c["dax.remaps_refused"] += 1
            raise Busy(f"{self.device.name}: {left} mapping(s) of [{offset:#x}, "
                       f"+{length:#x}) still open after notice: the change waits")
        (change or self._default_change(offset, length))()
        return RemapReport(told, 0, True)

    def media_error(self, offset: int, length: int) -> int:
        told = 0
        for h in self._overlapping(offset, length):
            lo = max(offset, h.offset)
            hi = min(offset + length, h.offset + h.length)
            h.holder.on_error(lo, hi - lo)
            told += 1
        if self.holder is not None:
            self.holder.notify_failure(offset, length, MF_ACTION_REQUIRED)
            told += 1
        self._trace("media_error", variant=self.name, offset=offset, len=length,
                    notified=told)
        return told

    def outstanding(self, offset: int, length: int) -> int | None:
        return len(self._overlapping(offset, length))


# -- a holder for tests and experiments ---------------------------------------------------------


@attrs.define(slots=True, eq=False)
class RecordingHolder:
    """A holder that writes down what it was told and, if ``release``, closes the
    extents it holds that a remap touches (as a well-behaved filesystem unmaps)."""

    provider: DirectAccess | None = attrs.field(default=None, repr=False)
    release: bool = True
    events: list[tuple[str, int, int]] = attrs.field(factory=list)
    held: list[DaxExtent] = attrs.field(factory=list)

    def take(self, offset: int, length: int) -> DaxExtent:
        assert self.provider is not None
        e = self.provider.map(offset, length, self)
        self.held.append(e)
        return e

    def on_remap(self, offset: int, length: int) -> None:
        self.events.append(("remap", offset, length))
        if self.release and self.provider is not None:
            for e in list(self.held):
                if e.offset < offset + length and offset < e.end:
                    self.provider.release(e)
                    self.held.remove(e)

    def on_error(self, offset: int, length: int) -> None:
        self.events.append(("error", offset, length))

    def notify_failure(self, offset: int, length: int, mf_flags: int) -> None:
        self.events.append(("failure", offset, length))
