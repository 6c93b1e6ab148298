"""The persistence domain: when does a store the CPU can see survive a power failure?

A store is *visible* at once (loads see it) but *durable* only when it has travelled
far enough towards the media. How far is far enough is the platform's rule, the seam
``persistence``:

* ``adr``: the memory controller's write-pending queue (WPQ) is drained on power loss,
  so a store is durable once its cache line is written back (CLWB) and fenced (SFENCE);
  a non-temporal (NT) store once fenced.
* ``eadr``: the CPU caches are protected too: a cached store is durable when made;
  NT stores (write-combining buffers) still need a fence.
* ``flush-hint``: no ADR: after write-back and fence the data waits in the WPQ until a
  write to the DIMM's flush-hint address drains it (``generic_nvdimm_flush``).

Each store moves through :class:`Stage` s (visible, written back, fenced, flushed); a
rule names the stage at which each kind of store becomes durable.

:class:`PersistenceDomain` models the CPU side: stores, NT stores, CLWB, SFENCE, the
flush hint and Linux's ``memcpy_flushcache`` / ``nvdimm_flush``. It keeps the stores
that are not durable yet as *records* (one per store call, split only at page and
cache-line boundaries when part of a store moves on), indexed by 4 KiB page. A record
that becomes durable is written to the backend and dropped, so a domain that flushes
what it writes holds almost nothing. Only a crash or an enumeration expands records
into cache lines and 8-byte units (:mod:`nvdimm.platform.crash`).

A line only ever becomes durable as a prefix of its stores: when a store becomes
durable, every earlier store to the same line does too (a write-back carries the whole
line; an NT store to a cached line evicts it first; a cached store to a line with
unfenced NT data takes the line from the write-combining buffer).

With ``tracking=False`` stores go straight to the backend: loads and stores are as
cheap as the media, fences and write-backs only count, and a crash keeps everything
that was visible (:meth:`is_durable` is always true). Use it when not exploring crashes.

:meth:`PersistenceDomain.export_pending` / :meth:`~PersistenceDomain.import_pending`
carry the in-flight stores across a save and load of the machine.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from typing import Protocol

import attrs

from nvdimm.errors import Busy, InvalidArgument
from nvdimm.metrics import Metrics
from nvdimm.platform.crash import (
    CrashImage,
    CrashPolicy,
    CrashReport,
    PendingLine,
    build_report,
    choose_prefixes,
    count_images,
    enumerate_images,
    patches_for,
)
from nvdimm.seams import variant
from nvdimm.trace import Trace

_SAVE_MAGIC = b"NVDCPU01"
_SAVE_HEAD = struct.Struct("<8sI")  # magic, record count
_SAVE_REC = struct.Struct("<QQIBB")  # seq, addr, length, nt, stage; then the data

LINE_SHIFT = 6
LINE = 1 << LINE_SHIFT
PAGE_SHIFT = 12
PAGE = 1 << PAGE_SHIFT


class Stage(enum.IntEnum):
    """How far a store has travelled from the CPU towards the media."""

    VISIBLE = 0  # executed: in a CPU cache line (cached) or a write-combining buffer (NT)
    WRITTEN_BACK = 1  # on its way out: CLWB issued (cached); where NT stores start
    FENCED = 2  # an SFENCE completed it: accepted by the memory controller (in the WPQ)
    FLUSHED = 3  # a flush-hint write drained the WPQ into the DIMM


# The same stages as plain ints, for the hot paths (an enum member lookup costs ~0.1 us).
_VISIBLE, _WRITTEN_BACK, _FENCED, _FLUSHED = (int(s) for s in Stage)


class Backend(Protocol):
    """The memory-controller side: durable media addressed by system physical address."""

    def read(self, addr: int, n: int, /) -> bytes:
        """May raise :class:`nvdimm.errors.MediaError` for poison."""
        ...

    def write(self, addr: int, data: bytes | bytearray | memoryview, /) -> None: ...


class PersistenceRule(Protocol):
    """The ``persistence`` seam: at which stage does each kind of store become durable?"""

    @property
    def name(self) -> str: ...

    @property
    def persistence_domain(self) -> str:
        """What Linux's region sysfs ``persistence_domain`` reports for this platform."""
        ...

    @property
    def cached_durable_at(self) -> Stage:
        """The stage at which an ordinary (cached) store is durable."""
        ...

    @property
    def nt_durable_at(self) -> Stage:
        """The stage at which a non-temporal store is durable."""
        ...

    @property
    def flush_hints(self) -> bool:
        """The DIMMs have flush-hint addresses, so ``nvdimm_flush`` writes them."""
        ...


@attrs.frozen(slots=True)
class StageRule:
    """A persistence rule stated as data: the stage at which each kind of store becomes
    durable. The built-in variants below are instances with Linux's values; a user's
    variant can subclass this with other defaults and needs no code."""

    name: str
    persistence_domain: str
    cached_durable_at: Stage
    nt_durable_at: Stage
    flush_hints: bool = False


@variant(
    "persistence", "adr",
    history="""Asynchronous DRAM Refresh, required on every Intel persistent-memory
    platform: on power loss the memory controller drains its write-pending queues to the
    DIMMs. Linux reports persistence_domain=memory_controller (ND_REGION_PERSIST_MEMCTRL).""",
    tradeoffs="""Only the WPQ needs hold-up energy, but software must write back (CLWB,
    CLFLUSHOPT) and fence every line it needs durable, or use NT stores and a fence; a
    forgotten flush is a bug that only shows after a power failure.""",
)
@attrs.frozen(slots=True)
class AdrRule(StageRule):
    """ADR: durable once written back and fenced (cached), or fenced (NT).

    ::

        store  [0x40] = 1    visible 1, durable 0   (dirty in the CPU cache)
        clwb   0x40          visible 1, durable 0   (write-back in flight)
        sfence               visible 1, durable 1   (in the WPQ, which ADR drains)
    """

    name: str = "adr"
    persistence_domain: str = "memory_controller"
    cached_durable_at: Stage = Stage.FENCED
    nt_durable_at: Stage = Stage.FENCED
    flush_hints: bool = False


@variant(
    "persistence", "eadr",
    history="""Extended ADR, on 3rd-generation Xeon Scalable platforms: the CPU caches
    are flushed on power loss too. Linux reports persistence_domain=cpu_cache
    (ND_REGION_PERSIST_CACHE); nvdimm_has_cache() is false, dax write_cache is off and
    dax_flush() does nothing.""",
    tradeoffs="""A visible cached store is durable: no CLWB needed, and code written for
    ADR still works (its flushes become wasted work). NT stores still need a fence. The
    platform pays for hold-up energy big enough to drain every cache.""",
)
@attrs.frozen(slots=True)
class EadrRule(StageRule):
    """eADR: a cached store is durable as soon as it is visible; NT stores after a fence.

    ::

        store  [0x40] = 1    visible 1, durable 1   (the cache is in the domain)
        clwb   0x40          visible 1, durable 1   (unneeded)
        sfence               visible 1, durable 1   (unneeded for cached stores)
    """

    name: str = "eadr"
    persistence_domain: str = "cpu_cache"
    cached_durable_at: Stage = Stage.VISIBLE
    nt_durable_at: Stage = Stage.FENCED
    flush_hints: bool = False


@variant(
    "persistence", "flush-hint",
    history="""Platforms without an ADR guarantee advertise flush-hint addresses in the
    NFIT; writing one makes the memory controller drain that DIMM's WPQ ("deep flush").
    Linux's generic_nvdimm_flush writes one hint per DIMM; the region's
    persistence_domain is empty and the pmem queue advertises FUA.""",
    tradeoffs="""Durability needs write-back, fence and an uncached MMIO write per DIMM,
    so every REQ_FUA / REQ_PREFLUSH and every deep flush pays a round trip; user space
    cannot issue the hint, so MAP_SYNC-style flushing from user space is not enough.""",
)
@attrs.frozen(slots=True)
class FlushHintRule(StageRule):
    """No ADR: durable only after write-back, fence and a write to the flush hint.

    ::

        store  [0x40] = 1    visible 1, durable 0   (dirty in the CPU cache)
        clwb   0x40          visible 1, durable 0   (write-back in flight)
        sfence               visible 1, durable 0   (waiting in the unprotected WPQ)
        flush hint           visible 1, durable 1   (WPQ drained to the DIMM)
    """

    name: str = "flush-hint"
    persistence_domain: str = ""
    cached_durable_at: Stage = Stage.FLUSHED
    nt_durable_at: Stage = Stage.FLUSHED
    flush_hints: bool = True


class _Rec:
    """A pending store, or the part of one inside a page: the unit of bookkeeping."""

    __slots__ = ("addr", "data", "nt", "seq", "stage")

    def __init__(self, seq: int, addr: int, data: bytes, nt: bool, stage: int) -> None:
        self.seq = seq
        self.addr = addr
        self.data = data
        self.nt = nt
        self.stage = stage


@attrs.frozen(slots=True)
class PendingStore:
    """A store (or the part of one that is left) that is visible but not yet durable."""

    seq: int
    addr: int
    length: int
    nt: bool
    stage: Stage


@attrs.define(slots=True, eq=False)
class PersistenceDomain:
    """The CPU caches and memory controller in front of ``backend``, under ``rule``.

    ``size`` (default: ``backend.size`` when it has one) bounds addresses so that a bad
    store is refused when made, not when it becomes durable.
    """

    backend: Backend
    rule: PersistenceRule
    _tracking: bool = attrs.field(default=True, alias="tracking")
    # Plain attribute mirroring ``not tracking`` for hot paths: True means a store is
    # exactly a media write, so a driver may write through a direct map (the kernel's
    # memremap of the range) and skip this model.
    direct: bool = attrs.field(init=False, default=False)
    metrics: Metrics | None = attrs.field(default=None, repr=False)
    trace: Trace | None = attrs.field(default=None, repr=False)
    size: int | None = attrs.field(default=None, kw_only=True)
    # pending records by 4 KiB page number, each list in program order
    _pages: dict[int, list[_Rec]] = attrs.field(init=False, factory=dict, repr=False)
    _wb_pages: set[int] = attrs.field(init=False, factory=set, repr=False)  # await a fence
    _wpq_pages: set[int] = attrs.field(init=False, factory=set, repr=False)  # await a hint
    _seq: int = attrs.field(init=False, default=0, repr=False)
    _epoch: int = attrs.field(init=False, default=0, repr=False)  # bumps on every change
    _cached_at: int = attrs.field(init=False, default=0, repr=False)
    _nt_at: int = attrs.field(init=False, default=0, repr=False)
    _fence_is_enough: bool = attrs.field(init=False, default=True, repr=False)

    def __attrs_post_init__(self) -> None:
        self.direct = not self._tracking
        stages = set(Stage)
        if self.rule.cached_durable_at not in stages or self.rule.nt_durable_at not in stages:
            raise InvalidArgument(f"persistence rule {self.rule.name!r}: durable stages must "
                                  "be nvdimm.platform.persistence.Stage values")
        self._cached_at = int(self.rule.cached_durable_at)
        self._nt_at = int(self.rule.nt_durable_at)
        self._fence_is_enough = max(self._cached_at, self._nt_at) <= Stage.FENCED
        if self.size is None:
            size = getattr(self.backend, "size", None)
            self.size = size if isinstance(size, int) else None
        if self.size is not None and self.size < 0:
            raise InvalidArgument(f"size must not be negative: {self.size}")

    @property
    def tracking(self) -> bool:
        """Whether pending stores are tracked for crashes (False: the cheap mode)."""
        return self._tracking

    @tracking.setter
    def tracking(self, on: bool) -> None:
        if not on and self._pages:
            raise Busy("cannot switch tracking off while stores are pending; crash or flush first")
        self._tracking = on
        self.direct = not on

    # -- what Linux derives from the platform ------------------------------------------

    @property
    def persistence_domain(self) -> str:
        return self.rule.persistence_domain

    @property
    def has_cache(self) -> bool:
        """Linux ``nvdimm_has_cache``: cached stores need a write-back to be durable."""
        return self._cached_at > Stage.VISIBLE

    @property
    def has_flush(self) -> int:
        """Linux ``nvdimm_has_flush``: 1 when the DIMMs have flush hints, else 0 (ADR)."""
        return 1 if self.rule.flush_hints else 0

    # -- CPU operations -----------------------------------------------------------------

    def load(self, addr: int, n: int) -> bytes:
        """What the CPU sees: pending stores overlaid on the backend. Poison in the backend
        raises :class:`nvdimm.errors.MediaError` even where a pending store covers it."""
        self._check(addr, n)
        pages = self._pages
        if not pages or n == 0:
            return self.backend.read(addr, n)
        lo, hi = addr >> PAGE_SHIFT, (addr + n - 1) >> PAGE_SHIFT
        if lo == hi:
            if lo not in pages:
                return self.backend.read(addr, n)
            hit = [lo]
        else:
            hit = self._pending_pages(lo, hi)
            if not hit:
                return self.backend.read(addr, n)
        buf = bytearray(self.backend.read(addr, n))
        end = addr + n
        for pno in hit:
            for r in pages[pno]:
                a = r.addr
                b = a + len(r.data)
                if b <= addr or a >= end:
                    continue
                s = a if a > addr else addr
                e = b if b < end else end
                buf[s - addr:e - addr] = r.data[s - a:e - a]
        return bytes(buf)

    def store(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Ordinary cached store(s): visible now, durable when the rule says."""
        n = len(data)
        if addr < 0 or (self.size is not None and addr + n > self.size):
            self._check(addr, n)
        m = self.metrics
        if m is not None:
            c = m.c
            c["cpu.stores"] += 1
            c["cpu.bytes_stored"] += n
        if n == 0:
            return
        if not self._tracking:
            self.backend.write(addr, data)
            return
        self._add(addr, bytes(data), False, _VISIBLE)

    def store_nt(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Non-temporal stores: bypass the cache, durable after a fence (plus the flush
        hint where the rule needs one)."""
        n = len(data)
        if addr < 0 or (self.size is not None and addr + n > self.size):
            self._check(addr, n)
        m = self.metrics
        if m is not None:
            c = m.c
            c["cpu.nt_stores"] += 1
            c["cpu.bytes_stored"] += n
        if n == 0:
            return
        if not self._tracking:
            self.backend.write(addr, data)
            return
        self._add(addr, bytes(data), True, _WRITTEN_BACK)

    def writeback(self, addr: int, n: int) -> None:
        """CLWB every cache line touching ``[addr, addr + n)``; durable after a fence."""
        self._check(addr, n)
        if n == 0:
            return
        first, last = addr >> LINE_SHIFT, (addr + n - 1) >> LINE_SHIFT
        if self.metrics is not None:
            self.metrics.c["cpu.writebacks"] += last - first + 1
        if self._pages:
            self._advance(first << LINE_SHIFT, (last + 1) << LINE_SHIFT, _WRITTEN_BACK)

    def evict(self, addr: int, n: int) -> None:
        """The cache evicts the lines touching ``[addr, addr + n)`` on its own: their
        cached stores reach the memory controller now, before software asked (durable
        under ADR; still waiting for the flush hint without it).

        Crashes already allow for evictions at any time; this makes one happen, for
        experiments that need a particular early write-back."""
        self._check(addr, n)
        if n == 0 or not self._pages:
            return
        first, last = addr >> LINE_SHIFT, (addr + n - 1) >> LINE_SHIFT
        self._advance(first << LINE_SHIFT, (last + 1) << LINE_SHIFT, _FENCED)

    def fence(self) -> None:
        """SFENCE: written-back lines and NT stores reach the memory controller."""
        if self.metrics is not None:
            self.metrics.c["cpu.fences"] += 1
        durable = self._promote(self._wb_pages, _WRITTEN_BACK, _FENCED,
                                None if self._fence_is_enough else self._wpq_pages)
        tr = self.trace
        if tr is not None and tr.on:
            tr.emit("cpu.fence", durable=durable)

    def flush_hint(self) -> None:
        """Write the DIMMs' flush-hint addresses: the WPQ drains into the media."""
        if self.metrics is not None:
            self.metrics.c["cpu.flush_hints"] += 1
        durable = self._promote(self._wpq_pages, _FENCED, _FLUSHED, None)
        tr = self.trace
        if tr is not None and tr.on:
            tr.emit("cpu.flush_hint", durable=durable)

    def _promote(self, todo: set[int], stage: int, to: int, then: set[int] | None) -> int:
        """Move the pending records of the pages in ``todo`` from ``stage`` to ``to``,
        write what is now durable to the backend, and file the pages still pending in
        ``then`` (the next queue to drain). Returns the bytes made durable."""
        if not todo:
            return 0
        self._epoch += 1
        durable = 0
        pages = self._pages
        for pno in todo:
            lst = pages.get(pno)
            if lst is None:
                continue
            for r in lst:
                if r.stage == stage:
                    r.stage = to
            durable += self._settle(pno)
            if then is not None and pno in pages:
                then.add(pno)
        todo.clear()
        return durable

    def write_flushcache(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Linux ``memcpy_flushcache``: cached store + write-back for an unaligned head,
        NT stores for the 8-byte-aligned body and a 4-byte NT store if 4 or more bytes
        remain, cached store + write-back for the last 1-3 bytes. No fence."""
        n = len(data)
        if not (addr | n) & 7:  # the pmem driver's case: aligned body only
            self.store_nt(addr, data)
            return
        self._check(addr, n)
        mv = memoryview(data)
        done = min((-addr) & 7, n)
        if done:
            self.store(addr, mv[:done])
            self.writeback(addr, done)
        body = (n - done) & ~7
        if body:
            self.store_nt(addr + done, mv[done:done + body])
            done += body
        if n - done >= 4:
            self.store_nt(addr + done, mv[done:done + 4])
            done += 4
        if done < n:
            self.store(addr + done, mv[done:])
            self.writeback(addr + done, n - done)

    def nvdimm_flush(self) -> None:
        """Linux ``generic_nvdimm_flush``: fence, write the flush hints if the DIMMs have
        them, fence."""
        self.fence()
        if self.rule.flush_hints:
            self.flush_hint()
        self.fence()

    # -- questions ----------------------------------------------------------------------

    def pending_bytes(self) -> int:
        """Bytes of stores that are visible but not durable (0 with tracking off)."""
        return sum(len(r.data) for lst in self._pages.values() for r in lst)

    def pending(self) -> list[PendingStore]:
        """The stores not yet durable, in program order (split pieces listed apart)."""
        recs = [r for lst in self._pages.values() for r in lst]
        recs.sort(key=lambda r: (r.seq, r.addr))
        return [PendingStore(r.seq, r.addr, len(r.data), r.nt, Stage(r.stage)) for r in recs]

    def is_durable(self, addr: int, n: int) -> bool:
        """No store to ``[addr, addr + n)`` can be lost by a crash now (always true with
        tracking off, where a crash keeps everything)."""
        self._check(addr, n)
        if not self._pages or n == 0:
            return True
        end = addr + n
        for pno in self._pending_pages(addr >> PAGE_SHIFT, (end - 1) >> PAGE_SHIFT):
            for r in self._pages[pno]:
                if r.addr < end and r.addr + len(r.data) > addr:
                    return False
        return True

    # -- saving in-flight state ---------------------------------------------------------

    def export_pending(self) -> bytes:
        """The pending stores as bytes, so a machine saved to disk keeps its in-flight
        data (and a later crash can still lose it). Reload with :meth:`import_pending`."""
        recs = sorted((r for lst in self._pages.values() for r in lst),
                      key=lambda r: (r.seq, r.addr))
        out = [_SAVE_HEAD.pack(_SAVE_MAGIC, len(recs))]
        for r in recs:
            out.append(_SAVE_REC.pack(r.seq, r.addr, len(r.data), r.nt, r.stage))
            out.append(r.data)
        return b"".join(out)

    def import_pending(self, blob: bytes) -> None:
        """Restore stores saved by :meth:`export_pending` into an empty domain. Stores the
        current rule already counts as durable are written through at once; with
        tracking off every store is."""
        if self._pages:
            raise Busy("cannot import pending stores: stores are already pending")
        recs = self._parse_pending(blob)
        self._epoch += 1
        if not self._tracking:
            for r in recs:
                self.backend.write(r.addr, r.data)
            return
        for r in recs:
            pno = r.addr >> PAGE_SHIFT
            self._pages.setdefault(pno, []).append(r)
            self._file(pno, r.stage)
            self._seq = max(self._seq, r.seq)
        for pno in list(self._pages):
            self._settle(pno)

    def _parse_pending(self, blob: bytes) -> list[_Rec]:
        def bad(why: str) -> InvalidArgument:
            return InvalidArgument(f"saved CPU cache state is unusable: {why}")

        if len(blob) < _SAVE_HEAD.size:
            raise bad("too short")
        magic, count = _SAVE_HEAD.unpack_from(blob)
        if magic != _SAVE_MAGIC:
            raise bad("bad magic")
        off = _SAVE_HEAD.size
        recs: list[_Rec] = []
        for _ in range(count):
            if off + _SAVE_REC.size > len(blob):
                raise bad("truncated")
            seq, addr, n, nt, stage = _SAVE_REC.unpack_from(blob, off)
            off += _SAVE_REC.size
            data = blob[off:off + n]
            off += n
            if len(data) != n or n == 0:
                raise bad(f"record at {addr:#x} is truncated or empty")
            if (addr >> PAGE_SHIFT) != ((addr + n - 1) >> PAGE_SHIFT):
                raise bad(f"record at {addr:#x} crosses a page")
            if nt not in (0, 1) or stage not in set(Stage):
                raise bad(f"record at {addr:#x} has a bad kind or stage")
            if self.size is not None and addr + n > self.size:
                raise bad(f"record at {addr:#x} lies beyond {self.size:#x}")
            if recs and (seq, addr) <= (recs[-1].seq, recs[-1].addr):
                raise bad("records out of program order")
            recs.append(_Rec(seq, addr, bytes(data), bool(nt), stage))
        if off != len(blob):
            raise bad("trailing bytes")
        return recs

    # -- power failure ------------------------------------------------------------------

    def crash(self, policy: CrashPolicy) -> CrashReport:
        """Power failure: ``policy`` decides which pending stores survive; they are written
        to the backend and every cache, buffer and queue is emptied."""
        lines = self._pending_lines()
        kept = choose_prefixes(lines, policy)
        if not self._tracking:
            report = CrashReport(policy.name, False)
        else:
            report = build_report(policy.name, lines, kept)
        self._commit(patches_for(lines, kept), report)
        return report

    def crash_images(self, limit: int | None = None) -> Iterator[CrashImage]:
        """The distinct images a crash could leave now, without changing any state, in a
        fixed order whose first image keeps nothing pending (see :func:`enumerate_images`)."""
        if limit is not None and limit < 0:
            raise InvalidArgument(f"limit must not be negative: {limit}")
        return enumerate_images(self._pending_lines(), self.backend.read, owner=id(self),
                                epoch=self._epoch, limit=limit)

    def count_crash_images(self) -> int:
        """How many images :meth:`crash_images` yields (the product over pending lines of
        each line's distinct outcomes)."""
        return count_images(self._pending_lines(), self.backend.read)

    def apply_crash_image(self, image: CrashImage) -> CrashReport:
        """Crash, choosing ``image`` (from :meth:`crash_images` on this state) as the outcome."""
        if image.owner != id(self) or image.epoch != self._epoch:
            raise InvalidArgument(f"crash image {image.index} was computed from another state "
                                  "(another domain, or stores happened since)")
        lines = self._pending_lines()
        kept = [k for _, k, _ in image.prefixes]
        if [a for a, _, _ in image.prefixes] != [line.addr for line in lines]:
            raise InvalidArgument(f"crash image {image.index} does not match the pending lines")
        if not self._tracking:
            report = CrashReport("image", False)
        else:
            report = build_report(f"image {image.index}", lines, kept)
        self._commit(list(image.patches), report)
        return report

    # -- bookkeeping --------------------------------------------------------------------

    def _check(self, addr: int, n: int) -> None:
        if addr < 0 or n < 0:
            raise InvalidArgument(f"bad range: addr={addr:#x} n={n}")
        if self.size is not None and addr + n > self.size:
            raise InvalidArgument(f"range [{addr:#x}, {addr + n:#x}) beyond {self.size:#x}")

    def _pending_pages(self, lo: int, hi: int) -> list[int]:
        """Page numbers in ``[lo, hi]`` with pending records, ascending."""
        pages = self._pages
        if hi - lo < len(pages):
            return [p for p in range(lo, hi + 1) if p in pages]
        return sorted(p for p in pages if lo <= p <= hi)

    def _add(self, addr: int, data: bytes, nt: bool, stage: int) -> None:
        self._epoch += 1
        self._seq += 1
        seq = self._seq
        now_durable = stage >= (self._nt_at if nt else self._cached_at)
        pages = self._pages
        end = addr + len(data)
        pno = addr >> PAGE_SHIFT
        if (end - 1) >> PAGE_SHIFT == pno:  # the common case: inside one page
            lst = pages.get(pno)
            if now_durable and lst is None:
                self.backend.write(addr, data)
                return
            rec = _Rec(seq, addr, data, nt, stage)
            if lst is None:
                pages[pno] = [rec]
            else:
                lst.append(rec)
            if now_durable:
                self._settle(pno)
            elif stage == _WRITTEN_BACK:
                self._wb_pages.add(pno)
            else:
                self._file(pno, stage)
            return
        while True:
            cut = min(end, (pno + 1) << PAGE_SHIFT)
            piece = data if cut - addr == len(data) else data[:cut - addr]
            lst = pages.get(pno)
            if now_durable and lst is None:
                self.backend.write(addr, piece)
            else:
                rec = _Rec(seq, addr, piece, nt, stage)
                if lst is None:
                    pages[pno] = [rec]
                else:
                    lst.append(rec)
                if now_durable:
                    self._settle(pno)
                else:
                    self._file(pno, stage)
            if cut >= end:
                return
            data = data[cut - addr:]
            addr = cut
            pno += 1

    def _file(self, pno: int, stage: int) -> None:
        if stage == _WRITTEN_BACK:
            self._wb_pages.add(pno)
        elif stage == _FENCED:
            self._wpq_pages.add(pno)

    def _advance(self, la: int, lb: int, target: int) -> None:
        """Cached stores in lines ``[la, lb)`` that have not reached ``target`` reach it
        (records straddling the range are split at its line boundaries)."""
        self._epoch += 1
        pages = self._pages
        for pno in self._pending_pages(la >> PAGE_SHIFT, (lb - 1) >> PAGE_SHIFT):
            lst = pages[pno]
            out: list[_Rec] | None = None
            moved = False
            for i, r in enumerate(lst):
                a = r.addr
                b = a + len(r.data)
                if r.nt or r.stage >= target or b <= la or a >= lb:
                    if out is not None:
                        out.append(r)
                    continue
                moved = True
                if la <= a and b <= lb:
                    r.stage = target
                    if out is not None:
                        out.append(r)
                    continue
                if out is None:
                    out = lst[:i]
                d = r.data
                s, e = max(a, la), min(b, lb)
                if a < s:
                    out.append(_Rec(r.seq, a, d[:s - a], False, r.stage))
                out.append(_Rec(r.seq, s, d[s - a:e - a], False, target))
                if e < b:
                    out.append(_Rec(r.seq, e, d[e - a:], False, r.stage))
            if out is not None:
                pages[pno] = out
            if moved:
                self._file(pno, target)
                if target >= self._cached_at:
                    self._settle(pno)

    def _settle(self, pno: int) -> int:
        """Write page ``pno``'s durable records to the backend and drop them; an earlier
        record on the same line as a durable one is durable too. Returns bytes written."""
        pages = self._pages
        lst = pages[pno]
        ca, na = self._cached_at, self._nt_at
        write = self.backend.write
        if len(lst) == 1:  # the hot path
            r = lst[0]
            if r.stage < (na if r.nt else ca):
                return 0
            write(r.addr, r.data)
            del pages[pno]
            return len(r.data)
        flags = [r.stage >= (na if r.nt else ca) for r in lst]
        if not any(flags):
            return 0
        if all(flags):
            for r in lst:
                write(r.addr, r.data)
            del pages[pno]
            return sum(len(r.data) for r in lst)
        upto: dict[int, int] = {}  # line -> seq of its last durable store
        for r, durable in zip(lst, flags, strict=True):
            if durable:
                for line in range(r.addr >> LINE_SHIFT,
                                  ((r.addr + len(r.data) - 1) >> LINE_SHIFT) + 1):
                    if upto.get(line, -1) < r.seq:
                        upto[line] = r.seq
        keep: list[_Rec] = []
        written = 0
        for r in lst:
            a = r.addr
            b = a + len(r.data)
            first, last = a >> LINE_SHIFT, (b - 1) >> LINE_SHIFT
            start = a
            cur = upto.get(first, -1) >= r.seq
            for line in range(first + 1, last + 2):
                now = line <= last and upto.get(line, -1) >= r.seq
                if line <= last and now == cur:
                    continue
                e = min(b, line << LINE_SHIFT)
                piece = r.data if (start == a and e == b) else r.data[start - a:e - a]
                if cur:
                    write(start, piece)
                    written += len(piece)
                else:
                    keep.append(r if piece is r.data else
                                _Rec(r.seq, start, piece, r.nt, r.stage))
                start, cur = e, now
        if keep:
            pages[pno] = keep
        else:
            del pages[pno]
        return written

    def _pending_lines(self) -> list[PendingLine]:
        by_line: dict[int, list[tuple[int, bytes]]] = {}
        for pno in sorted(self._pages):
            for r in self._pages[pno]:
                a, d = r.addr, r.data
                b = a + len(d)
                line = a & ~(LINE - 1)
                while line < b:
                    s, e = max(a, line), min(b, line + LINE)
                    by_line.setdefault(line, []).append((s, d[s - a:e - a]))
                    line += LINE
        return [PendingLine(addr, segs) for addr, segs in sorted(by_line.items())]

    def _commit(self, patches: list[tuple[int, bytes]], report: CrashReport) -> None:
        for addr, data in patches:
            self.backend.write(addr, data)
        self._pages.clear()
        self._wb_pages.clear()
        self._wpq_pages.clear()
        self._epoch += 1
        tr = self.trace
        if tr is not None and tr.on:
            tr.emit("power.crash", policy=report.policy, kept=report.lines_kept,
                    lost=report.lines_lost, torn=report.lines_torn)
