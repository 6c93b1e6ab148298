"""Crash exploration for the BTT: a power failure at every durable step of a write,
and inside each step at every per-line prefix x86 allows; recovery; the invariants.

Linux's BTT writes each piece of a sector write (data, the two flog halves, the map
entry) with a flushcache copy followed by ``nvdimm_flush``, so when a piece is being
written everything before it is durable and only that piece is in flight. The
:class:`CrashExplorer` hooks :class:`~drivers.btt.btt.NamespaceIO` between the copy
and the flush of every piece and, there, asks what a power failure could leave:

* each cache line the piece touches keeps a prefix of its 8-byte units (lines are
  independent; see :mod:`nvdimm.platform.crash`); when the product of the per-line
  outcomes is small (a flog half, a map entry: one line) every combination is taken,
  exactly the persistence domain's own enumeration;
* for a data block (64 lines for 4 KiB) the product is astronomically large, so the
  explorer takes every *program-order* crash (lines before the crash point whole, the
  line at the crash point at each of its prefixes, later lines lost) plus each line
  torn or kept alone: every per-line prefix appears, in and out of order.

Each crash image (the durable media with the image's patches over it) is then
recovered the way attach does it (:func:`~drivers.btt.btt.discover_arenas` on an
:class:`OverlayIO`, so nothing real is touched) and checked: the sector being written
reads its complete old or its complete new contents; every other sector still maps to
the block it mapped to before (and no surviving store touched such a block); map and
free list are a permutation of the internal blocks; ndctl's check-namespace finds
nothing to report.

A shortcut keeps this fast without changing what is checked: when an image differs
from the piece's base state (the media with nothing of the piece kept, itself checked
in full) only inside data blocks, recovery reads exactly what it read on the base state
(it never reads data blocks), so its outcome is the base's; the image is then checked by
showing that none of its patches touches a block a sector maps to. ``fast=False``
recovers every image in full (the tests compare both).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from drivers.btt.btt import BttDevice, discover_arenas, permutation_ok, permutation_problem
from drivers.btt.check import check_btt
from drivers.btt.format import INFO_SIZE, MAP_ENT_SIZE, MapSummary
from nvdimm.errors import InvalidArgument, MediaError, NvdimmError
from nvdimm.platform.crash import PendingLine

Patch = tuple[int, bytes]
Combo = tuple[int, ...]
LINE = 64


@attrs.define(slots=True, eq=False)
class OverlayIO:
    """Namespace bytes as a crash image leaves them: ``base_read`` (the durable media)
    under ``patches``. Writes (recovery's roll-forward, repairs) land in the overlay."""

    base_read: Callable[[int, int], bytes]
    size: int
    patches: list[Patch] = attrs.field(factory=list)

    def read(self, off: int, n: int) -> bytes:
        end = off + n
        hits = [(a, d) for a, d in self.patches if a < end and a + len(d) > off]
        data = self.base_read(off, n)
        if not hits:
            return data
        buf = bytearray(data)
        for a, d in hits:
            s, e = max(a, off), min(a + len(d), end)
            buf[s - off:e - off] = d[s - a:e - a]
        return bytes(buf)

    def write(self, off: int, data: Any, what: str = "", atomic: bool = True) -> None:
        if off < 0 or off + len(data) > self.size:
            raise InvalidArgument(f"overlay write [{off:#x}, +{len(data):#x}) outside "
                                  f"{self.size:#x}")
        self.patches.append((off, bytes(data)))

    def is_bad(self, off: int, n: int) -> bool:
        return False

    def direct(self) -> None:
        return None


# -- what a crash can leave ------------------------------------------------------------


def pending_lines(cpu: Any) -> list[PendingLine]:
    """The persistence domain's pending stores as cache lines (each store's bytes are
    what it wrote: stores still pending must not overlap, which holds for the BTT's
    one-piece-at-a-time writes and for a single raw write)."""
    stores = cpu.pending()
    spans = sorted((s.addr, s.addr + s.length) for s in stores)
    for (_, e1), (s2, _) in itertools.pairwise(spans):
        if s2 < e1:
            raise InvalidArgument("pending stores overlap: cannot tell each one's bytes")
    by_line: dict[int, list[Patch]] = {}
    for s in stores:
        data = cpu.load(s.addr, s.length)
        a, end = s.addr, s.addr + s.length
        line = a & ~(LINE - 1)
        while line < end:
            lo, hi = max(a, line), min(end, line + LINE)
            by_line.setdefault(line, []).append((lo, data[lo - a:hi - a]))
            line += LINE
    return [PendingLine(addr, segs) for addr, segs in sorted(by_line.items())]


def line_options(lines: Sequence[PendingLine], base_read: Callable[[int, int], bytes]
                 ) -> list[tuple[int, ...]]:
    """Per line, the shortest prefix giving each distinct outcome."""
    out = []
    for line in lines:
        try:
            base: bytes | None = base_read(line.lo, line.hi - line.lo)
        except MediaError:
            base = None
        out.append(line.distinct_prefixes(base))
    return out


def crash_combos(lines: Sequence[PendingLine], options: Sequence[tuple[int, ...]],
                 full_limit: int = 4096) -> Iterator[Combo]:
    """Kept-unit counts per line, one tuple per crash image to check; the first keeps
    nothing. Every combination when there are at most ``full_limit``; otherwise every
    program-order crash point at every per-line prefix, plus each line torn or kept
    alone and each line torn with all others kept."""
    if math.prod(len(o) for o in options) <= full_limit:
        yield from itertools.product(*options)
        return
    n = len(lines)
    none: Combo = (0,) * n
    full: Combo = tuple(line.units for line in lines)
    seen = {none}
    yield none
    for i, opts in enumerate(options):
        for k in sorted({*opts, full[i]}):
            for combo in ((*full[:i], k, *none[i + 1:]),  # crash in program order
                          (*none[:i], k, *none[i + 1:]),  # only this line evicted
                          (*full[:i], k, *full[i + 1:])):  # only this line held back
                if combo not in seen:
                    seen.add(combo)
                    yield combo


def combo_patches(lines: Sequence[PendingLine], combo: Combo) -> list[Patch]:
    out: list[Patch] = []
    for line, k in zip(lines, combo, strict=True):
        if k:
            out.extend(line.prefix_patches(k))
    return out


# -- the explorer -------------------------------------------------------------------------


def _same_but(a: bytes, b: bytes, entries: list[int]) -> bool:
    """Two maps (raw bytes) are equal except, perhaps, at the ``entries`` (sorted)."""
    if len(a) != len(b):
        return False
    pos = 0
    for e in entries:
        off = e * MAP_ENT_SIZE
        if a[pos:off] != b[pos:off]:
            return False
        pos = off + MAP_ENT_SIZE
    return a[pos:] == b[pos:]


@attrs.define(slots=True)
class ExploreStats:
    """What an exploration covered."""

    writes: int = 0
    points: int = 0  # pieces a crash was explored in
    images: int = 0  # crash states checked
    full: int = 0  # of which recovered in full
    failures: list[str] = attrs.field(factory=list)


@attrs.define(slots=True)
class _Analysis:
    ok: bool
    mapped: list[frozenset[int]]  # per arena, the blocks sectors map to after recovery


@attrs.define(slots=True, eq=False)
class CrashExplorer:
    """Write blocks through a BTT device, checking every crash state of every piece.

    ``device`` must sit on a machine with crash tracking on and nothing pending.
    ``check_ns`` runs ndctl's check-namespace on every fully recovered state.
    """

    device: BttDevice
    full_limit: int = 4096
    fast: bool = True
    check_ns: bool = True
    stop_at_first: bool = False
    stats: ExploreStats = attrs.field(factory=ExploreStats)
    _cpu: Any = attrs.field(init=False, repr=False)
    _spa: int = attrs.field(init=False, repr=False)
    _meta: list[tuple[int, int]] = attrs.field(init=False, repr=False)
    _targets: dict[int, tuple[bytes, bytes]] = attrs.field(init=False, factory=dict,
                                                           repr=False)
    _premap: list[MapSummary] = attrs.field(init=False, factory=list, repr=False)
    _label: str = attrs.field(init=False, default="", repr=False)

    def __attrs_post_init__(self) -> None:
        ns = self.device.ns
        self._cpu = ns.region.bus.platform.cpu
        if not self._cpu.tracking:
            raise InvalidArgument("crash exploration needs crash tracking on")
        self._spa = ns.spa
        meta = []
        for a in self.device.arenas:
            g = a.geo
            meta += [(g.infooff, g.infooff + INFO_SIZE), (g.mapoff, g.info2off + INFO_SIZE)]
        self._meta = meta

    def _base_read(self, off: int, n: int) -> bytes:
        data: bytes = self._cpu.backend.read(self._spa + off, n)
        return data

    # -- driving ---------------------------------------------------------------------------

    def write(self, lba: int, data: bytes, *, cpu: int | None = None) -> None:
        """Write one block at ``lba`` (on simulated CPU ``cpu``), exploring every crash
        state of every piece of it."""
        dev = self.device
        lbs = dev.lbasize
        if len(data) != lbs:
            raise InvalidArgument(f"write one {lbs}-byte block, not {len(data)} bytes")
        if self._cpu.pending():
            raise InvalidArgument("stores are pending: flush before exploring")
        old = dev.disk.read(lba * lbs, lbs)
        self._targets = {lba: (old, bytes(data))}
        self._premap = [a.map_summary() for a in dev.arenas]
        self._label = f"write lba={lba}"
        if cpu is not None:
            dev.cpu = cpu
        dev.io.on_piece = self._on_piece
        try:
            dev.disk.write(lba * lbs, data)
        finally:
            dev.io.on_piece = None
        self.stats.writes += 1

    def _on_piece(self, off: int, data: bytes, what: str) -> None:
        st = self.stats
        if self.stop_at_first and st.failures:
            return
        st.points += 1
        where = f"{self._label} piece {what}@{off:#x}"
        base = self._analyse([], where + " (nothing kept)")
        lines = pending_lines(self._cpu)
        options = line_options(lines, self._cpu.backend.read)
        spa = self._spa
        touches_meta = any(s < off + len(data) and off < e for s, e in self._meta)
        shortcut = self.fast and base.ok and not touches_meta
        patches: list[dict[int, list[Patch]]] = [{} for _ in lines]
        hits: list[dict[int, str]] = [{} for _ in lines]
        for combo in crash_combos(lines, options, self.full_limit):
            if not any(combo):
                st.images += 1  # the base state, checked above
                continue
            st.images += 1
            if shortcut:
                # Only data blocks differ from the base: recovery reads what it read there.
                for i, k in enumerate(combo):
                    if not k:
                        continue
                    problem = hits[i].get(k)
                    if problem is None:
                        problem = hits[i][k] = self._hits_mapped(
                            base, [(a - spa, d) for a, d in lines[i].prefix_patches(k)])
                    if problem:
                        self._fail(f"{where} kept {combo}: {problem}")
                        break
            else:
                image: list[Patch] = []
                for i, k in enumerate(combo):
                    if k:
                        got = patches[i].get(k)
                        if got is None:
                            got = patches[i][k] = [(a - spa, d)
                                                   for a, d in lines[i].prefix_patches(k)]
                        image += got
                self._analyse(image, f"{where} kept {combo}")
            if self.stop_at_first and st.failures:
                return

    # -- checking ----------------------------------------------------------------------------

    def _fail(self, text: str) -> None:
        self.stats.failures.append(text)

    def _hits_mapped(self, base: _Analysis, patches: list[Patch]) -> str:
        """Why these stores would damage a sector (they land in a block a sector maps
        to), or "" when they only touch free blocks or unused space."""
        for off, d in patches:
            for a, mapped in zip(self.device.arenas, base.mapped, strict=True):
                g = a.geo
                lo, hi = max(off, g.dataoff), min(off + len(d), g.mapoff)
                if lo >= hi:
                    continue
                first = (lo - g.dataoff) // g.internal_lbasize
                last = (hi - 1 - g.dataoff) // g.internal_lbasize
                for b in range(first, last + 1):
                    if b in mapped:
                        return f"a surviving store lands in block {b:#x}, which a sector maps to"
        return ""

    def _analyse(self, patches: list[Patch], where: str) -> _Analysis:
        """Recover the image in full, as attach would, and check every invariant."""
        self.stats.full += 1
        dev = self.device
        ns = dev.ns
        io = OverlayIO(self._base_read, ns.size, list(patches))
        bad = _Analysis(False, [])
        try:
            arenas = discover_arenas(io, ns_size=ns.size, version=dev.version,
                                     parent_uuid=ns.uuid)
        except NvdimmError as e:
            self._fail(f"{where}: recovery failed: {e.message}")
            return bad
        if not arenas:
            self._fail(f"{where}: no BTT found after the crash")
            return bad
        ok = True
        mapped_sets: list[frozenset[int]] = []
        start = 0
        for n, (a, pre) in enumerate(zip(arenas, self._premap, strict=True)):
            summary = a.map_summary()
            table = summary.lookups
            free = a.free_blocks()
            if not permutation_ok(summary, free, a.geo.internal_nlba):
                problem = permutation_problem(list(table), free, a.geo.internal_nlba)
                self._fail(f"{where}: arena {n}: {problem}")
                ok = False
            mine = sorted(t - start for t in self._targets if start <= t < start + len(table))
            if not _same_but(summary.data, pre.data, mine):
                moved = next(i for i, (x, y) in enumerate(zip(table, pre.lookups, strict=True))
                             if x != y and i not in mine)
                self._fail(f"{where}: sector {start + moved} moved from block "
                           f"{pre.lookups[moved]:#x} to {table[moved]:#x} though nothing "
                           "wrote it")
                ok = False
            for p in mine:
                old, new = self._targets[start + p]
                try:
                    got = a.read_block(0, p)
                except NvdimmError as e:
                    self._fail(f"{where}: sector {start + p} unreadable: {e.message}")
                    ok = False
                    continue
                if got != old and got != new:
                    self._fail(f"{where}: sector {start + p} is torn (neither old nor new)")
                    ok = False
            mapped_sets.append(summary.blocks)
            start += a.geo.external_nlba
        if self.check_ns:
            res = check_btt(io, dev=ns.dev, size=ns.size, parent_uuid=ns.uuid)
            if not res.clean:
                self._fail(f"{where}: check-namespace: "
                           f"{'; '.join(res.errors) or 'needs repair'}")
                ok = False
        return _Analysis(ok, mapped_sets)
