"""The pfn and dax info block (``struct nd_pfn_sb``) and the sizing arithmetic behind it.

This module is the only place the info block's byte offsets appear. Everything is
little-endian, as Linux writes it (``drivers/nvdimm/pfn.h``; facts in
``../shared/reference/linux-stack.md`` section 2).

An fsdax ("pfn") or devdax ("dax") namespace starts with 8 KiB Linux keeps for itself:
4 KiB unused, then the 4 KiB info block at offset 4096. The data the personality hands
out starts at ``dataoff``; with ``map=dev`` (``PFN_MODE_PMEM``) the gap between 8 KiB
and ``dataoff`` holds the struct pages of the whole namespace, 64 bytes per 4 KiB page,
rounded up to the alignment::

    [0, 4K) unused | [4K, 8K) info block | [8K, dataoff) memmap (map=dev) | data ...

Worked example, the golden fsdax-dev image (a 240 MiB labelled namespace at physical
address 4 GiB, map=dev, align 2 MiB)::

    >>> lay = plan(start=1 << 32, size=240 << 20, align=2 << 20, mode=PfnMode.PMEM)
    >>> hex(lay.dataoff), lay.npfns, lay.end_trunc, lay.data_size
    ('0x400000', 60416, 0, 247463936)

and with ``map=mem`` (``PFN_MODE_RAM``) only the 8 KiB, rounded up to 2 MiB::

    >>> lay = plan(start=1 << 32, size=240 << 20, align=2 << 20, mode=PfnMode.RAM)
    >>> hex(lay.dataoff), lay.npfns, lay.data_size
    ('0x200000', 60928, 249561088)
"""

from __future__ import annotations

import enum
import errno
import functools
import struct
import uuid as uuidlib
from typing import Any

import attrs

from nvdimm.errors import CorruptMetadata, InvalidArgument, NotFound, NotSupported
from nvdimm.label_format import fletcher64

# -- constants (pfn.h, nd.h, memremap.h) -------------------------------------------------

PFN_SIG = b"NVDIMM_PFN_INFO\x00"
DAX_SIG = b"NVDIMM_DAX_INFO\x00"
#: The signature each personality writes, in ndctl's mode names.
SIGNATURE = {"fsdax": PFN_SIG, "devdax": DAX_SIG}

INFO_OFFSET = 4096  # the info block is read and written at namespace offset SZ_4K
INFO_SIZE = 4096
INFO_RESERVE = 8192  # nd_info_block_reserve(): ALIGN(SZ_8K, PAGE_SIZE)
PAGE_SIZE = 4096
PAGE_SHIFT = 12
MAX_STRUCT_PAGE_SIZE = 64  # reserved per page whatever the running kernel's struct page
SUBSECTION_SIZE = 2 << 20  # memremap_compat_align() on x86_64
MEMREMAP_COMPAT_ALIGN_MAX = 16 << 20  # ndctl's cross-arch physical start alignment
PMD_SIZE = 2 << 20
PUD_SIZE = 1 << 30
#: nd_pfn_supported_alignments() on x86_64 with THP and PUD-level THP.
SUPPORTED_ALIGNMENTS = (PAGE_SIZE, PMD_SIZE, PUD_SIZE)
DEFAULT_ALIGN = PMD_SIZE  # nd_pfn_default_alignment() when THP is available
MIN_NAMESPACE_SIZE = 16 << 20  # a personality cannot claim less (nd_namespace_store)
VERSION_MAJOR = 1
VERSION_MINOR = 4  # what current kernels write


class PfnMode(enum.IntEnum):
    """Where the struct pages of the namespace live (``enum nd_pfn_mode``)."""

    NONE = 0  # invalid on media
    RAM = 1  # map=mem: memmap in system RAM
    PMEM = 2  # map=dev: memmap carved from the namespace (vmem_altmap)

    @property
    def map(self) -> str:
        """ndctl's ``--map`` word for this mode."""
        return {PfnMode.RAM: "mem", PfnMode.PMEM: "dev"}.get(self, "none")

    @property
    def sysfs(self) -> str:
        """What ``pfnN.M/mode`` shows."""
        return {PfnMode.RAM: "ram", PfnMode.PMEM: "pmem"}.get(self, "none")

    @classmethod
    def from_map(cls, word: str) -> PfnMode:
        try:
            return {"mem": cls.RAM, "dev": cls.PMEM}[word]
        except KeyError:
            raise InvalidArgument(f"--map must be 'mem' or 'dev', not {word!r}") from None


# -- errors as nd_pfn_validate returns them ------------------------------------------------


class NoInfoBlock(NotFound):
    """-ENODEV: no info block of this personality (wrong signature, bad checksum, or one
    written for another namespace). Linux's probe then tries the next personality and
    finally attaches the namespace raw."""


class BadInfoMode(CorruptMetadata):
    """-ENXIO: the info block's memmap mode is neither RAM nor PMEM."""

    errno = errno.ENXIO


class CannotFit(InvalidArgument):
    """-ENXIO from ``nd_pfn_init``: with the reservation and the alignment taken, no data
    is left ("unable to satisfy requested alignment")."""

    errno = errno.ENXIO


class UnsupportedInfoBlock(NotSupported):
    """-EOPNOTSUPP: a valid info block this kernel will not use (geometry that no longer
    fits, an alignment it does not support). Linux fails the probe: the namespace stays
    disabled rather than falling back to raw."""


# -- the info block (struct nd_pfn_sb, version 1.4) -----------------------------------------

# signature, uuid, parent_uuid, flags, version_major, version_minor, dataoff, npfns, mode,
# start_pad, end_trunc, align, page_size, page_struct_size, padding, checksum
_INFO = struct.Struct("<16s16s16sIHHQQIIIIIH3994xQ")
_CHECKSUM_OFF = INFO_SIZE - 8
assert _INFO.size == INFO_SIZE


def info_checksum(raw: bytes | bytearray | memoryview) -> int:
    """Fletcher-64 over the 4096 bytes with the checksum field read as zero."""
    return _checksum(bytes(raw[:_CHECKSUM_OFF]))


@functools.lru_cache(maxsize=16)
def _checksum(head: bytes) -> int:
    return fletcher64(head + bytes(8))


@attrs.frozen(slots=True)
class PfnInfo:
    """One ``struct nd_pfn_sb``. ``pack`` writes a correct checksum unless told
    ``keep_checksum`` (to make a corrupt block on purpose)."""

    signature: bytes
    uuid: uuidlib.UUID
    parent_uuid: uuidlib.UUID
    dataoff: int
    npfns: int
    mode: int
    align: int
    end_trunc: int = 0
    start_pad: int = 0
    flags: int = 0
    version_major: int = VERSION_MAJOR
    version_minor: int = VERSION_MINOR
    page_size: int = PAGE_SIZE
    page_struct_size: int = MAX_STRUCT_PAGE_SIZE
    checksum: int = 0

    def pack(self, *, keep_checksum: bool = False) -> bytes:
        raw = _INFO.pack(self.signature, self.uuid.bytes, self.parent_uuid.bytes, self.flags,
                         self.version_major, self.version_minor, self.dataoff, self.npfns,
                         self.mode, self.start_pad, self.end_trunc, self.align,
                         self.page_size, self.page_struct_size, 0)
        csum = self.checksum if keep_checksum else info_checksum(raw)
        return raw[:_CHECKSUM_OFF] + struct.pack("<Q", csum)

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> PfnInfo:
        if len(raw) < INFO_SIZE:
            raise InvalidArgument(f"an info block is {INFO_SIZE} bytes, not {len(raw)}")
        (sig, uid, puid, flags, vmaj, vmin, dataoff, npfns, mode, start_pad, end_trunc,
         align, page_size, pss, csum) = _INFO.unpack_from(raw)
        return cls(signature=sig, uuid=uuidlib.UUID(bytes=uid),
                   parent_uuid=uuidlib.UUID(bytes=puid), dataoff=dataoff, npfns=npfns,
                   mode=mode, align=align, end_trunc=end_trunc, start_pad=start_pad,
                   flags=flags, version_major=vmaj, version_minor=vmin, page_size=page_size,
                   page_struct_size=pss, checksum=csum)

    @property
    def kind(self) -> str:
        """The signature as text (``NVDIMM_PFN_INFO``), as ndctl read-infoblock prints it."""
        return self.signature.rstrip(b"\x00").decode("ascii", "replace")

    @property
    def version(self) -> str:
        return f"{self.version_major}.{self.version_minor}"

    def to_json(self, dev: str) -> dict[str, Any]:
        """``ndctl read-infoblock -j`` (keys in ndctl's order)."""
        return {"dev": dev, "signature": self.kind, "uuid": str(self.uuid),
                "parent_uuid": str(self.parent_uuid), "flags": self.flags,
                "version": self.version, "dataoff": self.dataoff, "npfns": self.npfns,
                "mode": self.mode, "start_pad": self.start_pad, "end_trunc": self.end_trunc,
                "align": self.align, "page_size": self.page_size,
                "page_struct_size": self.page_struct_size}


# -- sizing (nd_pfn_init) -------------------------------------------------------------------


def align_up(x: int, a: int) -> int:
    return -(-x // a) * a


def align_down(x: int, a: int) -> int:
    return x // a * a


def check_align(align: int) -> None:
    """ndctl's ``--align`` check: one of the kernel's supported alignments."""
    if align not in SUPPORTED_ALIGNMENTS:
        raise InvalidArgument(f"unsupported align: {align:#x} (supported: 4K, 2M, 1G)")


@attrs.frozen(slots=True)
class PfnLayout:
    """Where things go in a namespace of ``size`` bytes at physical ``start``.

    ``align`` is the alignment asked for (what the info block records); the arithmetic
    uses ``align_eff = max(align, 2 MiB)`` (``memremap_compat_align``).
    """

    start: int
    size: int
    align: int
    mode: PfnMode
    dataoff: int
    npfns: int
    end_trunc: int
    start_pad: int = 0

    @property
    def align_eff(self) -> int:
        return max(self.align, SUBSECTION_SIZE)

    @property
    def data_size(self) -> int:
        """What the personality exposes: ``pfnN.M/size``, the pmem disk's capacity."""
        return self.size - self.start_pad - self.end_trunc - self.dataoff

    @property
    def range_len(self) -> int:
        """The dev_pagemap's range: the namespace minus padding (struct pages cover it)."""
        return self.size - self.start_pad - self.end_trunc

    @property
    def memmap_reserved(self) -> int:
        """Bytes of the namespace set aside for struct pages (0 with map=mem)."""
        return self.dataoff - INFO_RESERVE if self.mode == PfnMode.PMEM else 0

    @property
    def resource(self) -> int:
        """``pfnN.M/resource``: physical address of the first data byte."""
        return self.start + self.start_pad + self.dataoff

    def info(self, *, signature: bytes, uuid: uuidlib.UUID,
             parent_uuid: uuidlib.UUID | None) -> PfnInfo:
        """The info block ``nd_pfn_init`` writes for this layout (version 1.4)."""
        return PfnInfo(signature=signature, uuid=uuid,
                       parent_uuid=parent_uuid or uuidlib.UUID(int=0), dataoff=self.dataoff,
                       npfns=self.npfns, mode=int(self.mode), align=self.align,
                       end_trunc=self.end_trunc, start_pad=self.start_pad)


def plan(*, start: int, size: int, align: int = DEFAULT_ALIGN,
         mode: PfnMode = PfnMode.PMEM) -> PfnLayout:
    """``nd_pfn_init``'s arithmetic for a namespace of ``size`` bytes at physical ``start``.

    Raises :class:`~nvdimm.errors.InvalidArgument` when ``start`` is not 2 MiB aligned
    (Linux no longer pads the start) and :class:`CannotFit` when nothing is left for
    data once the reservation and alignment are taken (Linux: "unable to satisfy
    requested alignment", -ENXIO).
    """
    if mode not in (PfnMode.RAM, PfnMode.PMEM):
        raise BadInfoMode(f"memmap mode {mode!r} is neither ram nor pmem")
    if not start % SUBSECTION_SIZE == 0:
        raise InvalidArgument(f"namespace start {start:#x} is not aligned to "
                              f"{SUBSECTION_SIZE:#x} (memremap_compat_align)")
    align_eff = max(align, SUBSECTION_SIZE)
    end_trunc = start + size - align_down(start + size, align_eff)
    if mode == PfnMode.PMEM:
        npfns = (size - INFO_RESERVE) // PAGE_SIZE
        page_map_size = MAX_STRUCT_PAGE_SIZE * npfns
        dataoff = align_up(start + INFO_RESERVE + page_map_size, align_eff) - start
    else:
        dataoff = align_up(start + INFO_RESERVE, align_eff) - start
    if dataoff >= size - end_trunc:
        raise CannotFit(f"a {size:#x}-byte namespace cannot satisfy align {align:#x} with "
                          f"map={mode.map}: the data would start at {dataoff:#x}, past its "
                          f"usable end {size - end_trunc:#x}")
    npfns = (size - dataoff - end_trunc) // PAGE_SIZE
    return PfnLayout(start=start, size=size, align=align, mode=mode, dataoff=dataoff,
                     npfns=npfns, end_trunc=end_trunc)


# -- validation (nd_pfn_validate) -----------------------------------------------------------


@attrs.frozen(slots=True)
class Expected:
    """What a configured pfn/dax device insists on (``nd_pfn->uuid/align/mode`` set):
    the on-media block must agree. A probing device has none and adopts the media's."""

    uuid: uuidlib.UUID
    align: int
    mode: PfnMode


def validate(raw: bytes | bytearray | memoryview, *, signature: bytes,
             parent_uuid: uuidlib.UUID | None, start: int, size: int,
             expected: Expected | None = None) -> PfnInfo:
    """Linux's ``nd_pfn_validate`` on the 4 KiB read at offset 4096 of a namespace at
    physical ``start`` of ``size`` bytes. Returns the block with the version back-fill
    applied (fields older versions lack get the values Linux assumes), or raises:

    * :class:`NoInfoBlock` (-ENODEV): other signature, bad checksum, other parent, or
      (configured device) another uuid;
    * :class:`BadInfoMode` (-ENXIO): mode neither RAM nor PMEM;
    * :class:`UnsupportedInfoBlock` (-EOPNOTSUPP): page size or struct page size this
      kernel cannot honour, a dax alignment it does not support, a configured device
      whose align or mode differ, or geometry that does not fit the namespace.
    """
    info = PfnInfo.unpack(raw)
    if info.signature != signature:
        raise NoInfoBlock(f"no {signature.rstrip(bytes(1)).decode()} signature")
    if info.checksum != info_checksum(raw):
        raise NoInfoBlock(f"{info.kind}: checksum {info.checksum:#018x} does not match the "
                          f"contents ({info_checksum(raw):#018x})")
    parent = parent_uuid or uuidlib.UUID(int=0)
    if info.parent_uuid != parent:
        raise NoInfoBlock(f"{info.kind}: written for parent {info.parent_uuid}, not {parent}")
    # Version back-fill: fields an older kernel did not write.
    if info.version_minor < 1:
        info = attrs.evolve(info, start_pad=0, end_trunc=0)
    if info.version_minor < 2:
        info = attrs.evolve(info, align=0)
    if info.version_minor < 4:
        info = attrs.evolve(info, page_struct_size=MAX_STRUCT_PAGE_SIZE, page_size=PAGE_SIZE)
    if info.mode not in (PfnMode.RAM, PfnMode.PMEM):
        raise BadInfoMode(f"{info.kind}: memmap mode {info.mode} is neither ram (1) nor "
                          "pmem (2)")
    dataoff = info.dataoff
    if info.align == 0:
        info = attrs.evolve(info, align=1 << (dataoff.bit_length() - 1) if dataoff else 0)
    align = info.align
    if info.mode == PfnMode.PMEM:
        if info.page_size > PAGE_SIZE:
            raise UnsupportedInfoBlock(f"{info.kind}: page size {info.page_size} is larger "
                                       f"than this kernel's {PAGE_SIZE}")
        if info.page_struct_size < MAX_STRUCT_PAGE_SIZE:
            raise UnsupportedInfoBlock(f"{info.kind}: {info.page_struct_size} bytes reserved "
                                       f"per struct page, this kernel needs "
                                       f"{MAX_STRUCT_PAGE_SIZE}")
    if signature == DAX_SIG and align not in SUPPORTED_ALIGNMENTS:
        raise UnsupportedInfoBlock(f"{info.kind}: device-dax alignment {align:#x} is not "
                                   "supported")
    if expected is not None:
        if info.uuid != expected.uuid:
            raise NoInfoBlock(f"{info.kind}: uuid {info.uuid} is not the device's "
                              f"{expected.uuid}")
        if info.align != expected.align or info.mode != expected.mode:
            raise UnsupportedInfoBlock(f"{info.kind}: settings mismatch (align {align:#x}, "
                                       f"mode {info.mode})")
    start_pad, end_trunc = info.start_pad, info.end_trunc
    problem = ""
    if align > size:
        problem = f"alignment {align:#x} exceeds capacity {size:#x}"
    elif dataoff >= size:
        problem = f"data offset {dataoff:#x} is beyond the namespace's {size:#x} bytes"
    elif (align and (start + dataoff + start_pad) % align) or dataoff % PAGE_SIZE:
        problem = f"bad data offset {dataoff:#x} for align {align:#x}"
    elif (start + start_pad) % SUBSECTION_SIZE:
        problem = "namespace start misaligned"
    elif (start + size - end_trunc) % SUBSECTION_SIZE:
        problem = "namespace end misaligned"
    elif dataoff >= size - start_pad - end_trunc:
        problem = "data offset too large for a small namespace"
    if problem:
        raise UnsupportedInfoBlock(f"{info.kind}: {problem}")
    return info


def layout_of(info: PfnInfo, *, start: int, size: int) -> PfnLayout:
    """The layout a (validated) info block describes."""
    return PfnLayout(start=start, size=size, align=info.align, mode=PfnMode(info.mode),
                     dataoff=info.dataoff, npfns=info.npfns, end_trunc=info.end_trunc,
                     start_pad=info.start_pad)
