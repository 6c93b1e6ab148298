"""``ndctl check-namespace [--repair]``: ndctl's offline BTT checker, in its words.

The namespace must be idle (ndctl puts it in raw mode and reads the metadata through
the raw block device). The checks, in ndctl's order:

1. the info block at 4 KiB (BTT 1.1) or else at 0 (BTT 2.0); if neither verifies, try
   to recover it from the end of the first arena or from the ``info2off`` the damaged
   block names (written back only with ``--repair``);
2. per arena: a bad info block is restored from its backup (``--repair``); then
   ``internal_nlba - external_nlba == nfree``, ``internal_lbasize ==
   external_lbasize`` (so ndctl refuses Linux's own 520-byte BTTs, whose internal
   blocks are 576 bytes: a known divergence, kept), and the error flag;
3. the flog's slot layout (``log_set_indices``);
4. per arena: the two sequence numbers of every lane differ and are at most 3; each
   lane's newest entry has ``lba``, ``old_map`` and ``new_map`` in range; every map
   entry is in range; a lane whose flog committed but whose map entry was not written
   is reported (and rolled forward with ``--repair``, as the kernel does at attach);
   the backup info block equals the primary (restored with ``--repair``); map plus
   free blocks reference every internal block exactly once.

:func:`check_namespace` returns a :class:`CheckResult` whose lines render exactly as
ndctl prints them (``namespace0.0: btt_check_arenas: checking arena 0``); ``-v``
shows the ``info`` lines too.
"""

from __future__ import annotations

import errno
import functools
import os
import uuid as uuidlib
from typing import Any, Protocol

import attrs

from drivers.btt.format import (
    ARENA_MAX_SIZE,
    ARENA_MIN_SIZE,
    IB_FLAG_ERROR,
    INFO_SIZE,
    LOG_GRP_SIZE,
    MAP_ENT_NORMAL,
    MAP_ENT_SIZE,
    MAP_LBA_MASK,
    V1_1,
    V2_0,
    ArenaGeometry,
    InfoBlock,
    MapSummary,
    info_is_valid,
    log_indices,
    map_encode,
    map_summary,
    unpack_groups,
    version_of,
)
from nvdimm.errors import Busy, CorruptMetadata

BTT1_START_OFFSET = V1_1.initial_offset
BTT2_START_OFFSET = V2_0.initial_offset

# btt_errcodes
BTT_OK = 0
BTT_LOG_EQL_SEQ = 0x100
BTT_LOG_OOB_SEQ = 0x101
BTT_LOG_OOB_LBA = 0x102
BTT_LOG_OOB_OLD = 0x103
BTT_LOG_OOB_NEW = 0x104
BTT_LOG_MAP_ERR = 0x105
BTT_MAP_OOB = 0x106
BTT_BITMAP_ERROR = 0x107

_STATUS = {
    BTT_LOG_EQL_SEQ: "found a pair of log entries with the same sequence number",
    BTT_LOG_OOB_SEQ: "found a log entry with an out of bounds sequence number",
    BTT_LOG_OOB_LBA: "found a log entry with an out of bounds LBA",
    BTT_LOG_OOB_OLD: "found a log entry with an out of bounds 'old' mapping",
    BTT_LOG_OOB_NEW: "found a log entry with an out of bounds 'new' mapping",
    BTT_LOG_MAP_ERR: "found a log entry that does not match with a map entry",
    BTT_MAP_OOB: "found a map entry that is out of bounds",
    BTT_BITMAP_ERROR: "bitmap error: internal blocks are incorrectly referenced",
}


class RawIO(Protocol):
    """The raw namespace, as ndctl sees it through /dev/pmemN in raw mode."""

    def read(self, off: int, n: int) -> bytes: ...

    def write(self, off: int, data: bytes, what: str = "", atomic: bool = True) -> None: ...


@attrs.frozen(slots=True)
class CheckLine:
    """One line ndctl logs: ``level`` is "err" (always shown) or "info" (``-v``)."""

    level: str
    func: str
    text: str
    dev: str = ""

    def render(self) -> str:
        return f"{self.dev}: {self.func}: {self.text}" if self.func else self.text


@attrs.define(slots=True)
class CheckResult:
    """What one check found: ``ok`` (ndctl returns 0), the lines it logged, and the
    repairs it made (or would make with ``--repair``)."""

    dev: str
    ok: bool
    lines: list[CheckLine] = attrs.field(factory=list)
    repairs: list[str] = attrs.field(factory=list)
    needs_repair: list[str] = attrs.field(factory=list)
    errno: int = 0

    @property
    def errors(self) -> list[str]:
        return [ln.text for ln in self.lines if ln.level == "err"]

    @property
    def clean(self) -> bool:
        """Nothing wrong at all: ok, and no repair needed or made."""
        return self.ok and not self.needs_repair and not self.repairs

    def render(self, verbose: bool = False) -> str:
        return "\n".join(ln.render() for ln in self.lines if verbose or ln.level != "info")


class _Abort(Exception):
    """A check failed: unwind to :func:`check_namespace` with an errno."""

    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.err = err


Newest = tuple[tuple[int, int, int, int], ...]


@functools.lru_cache(maxsize=8)
def _log_groups(raw: bytes) -> tuple[tuple[int, ...], ...]:
    return tuple(unpack_groups(raw))


@functools.lru_cache(maxsize=8)
def _log_index(raw: bytes) -> tuple[int, int]:
    return log_indices(_log_groups(raw))


@functools.lru_cache(maxsize=8)
def _moved(raw: bytes, i0: int, i1: int) -> tuple[int, ...]:
    """Lanes whose newest entry has old != new: only they can disagree with the map."""
    return tuple(lane for lane, (_, old, new, _) in enumerate(_newest(raw, i0, i1))
                 if old != new)


@functools.lru_cache(maxsize=8)
def _newest(raw: bytes, i0: int, i1: int) -> Newest:
    """ndctl's ``btt_log_read`` for every lane: the newer slot by the difference rule
    (without the kernel's sum check, so it never fails)."""
    out = []
    for g in _log_groups(raw):
        s0, s1 = g[i0 * 4 + 3], g[i1 * 4 + 3]
        if s0 == 0:
            old = 0
        elif s0 < s1:
            old = 0 if s1 - s0 == 1 else 1
        else:
            old = 1 if s0 - s1 == 1 else 0
        b = (i0, i1)[1 - old] * 4
        out.append((g[b], g[b + 1], g[b + 2], g[b + 3]))
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _log_status(raw: bytes, i0: int, i1: int, ext: int, inlba: int) -> int:
    """ndctl's ``btt_check_log_entries``: every lane's two sequence numbers differ and
    are at most 3; each newest entry's lba, old and new blocks are in range."""
    for g in _log_groups(raw):
        s0, s1 = g[i0 * 4 + 3], g[i1 * 4 + 3]
        if s0 == s1:
            return BTT_LOG_EQL_SEQ
        if s0 > 3 or s1 > 3:
            return BTT_LOG_OOB_SEQ
    for lba, old, new, _ in _newest(raw, i0, i1):
        if lba >= ext:
            return BTT_LOG_OOB_LBA
        if old >= inlba:
            return BTT_LOG_OOB_OLD
        if new >= inlba:
            return BTT_LOG_OOB_NEW
    return BTT_OK


@attrs.define(slots=True)
class _Arena:
    num: int
    geo: ArenaGeometry
    info_raw: bytes
    flags: int
    log_index: tuple[int, int] = (0, 1)
    lograw: bytes = b""
    groups: tuple[tuple[int, ...], ...] = ()
    map: MapSummary | None = None

    @property
    def newest(self) -> Newest:
        return _newest(self.lograw, *self.log_index)

    @property
    def summary(self) -> MapSummary:
        assert self.map is not None
        return self.map


@attrs.define(slots=True)
class _Checker:
    io: RawIO
    dev: str
    rawsize: int
    parent_uuid: uuidlib.UUID | None
    repair: bool
    strict_lbasize: bool
    result: CheckResult
    start_off: int = 0
    arenas: list[_Arena] = attrs.field(factory=list)

    # -- logging -----------------------------------------------------------------------

    def info(self, func: str, text: str) -> None:
        self.result.lines.append(CheckLine("info", func, text, self.dev))

    def err(self, func: str, text: str) -> None:
        self.result.lines.append(CheckLine("err", func, text, self.dev))

    def repair_msg(self, func: str) -> None:
        self.info(func, "  Run with --repair to make the changes")

    # -- info blocks -----------------------------------------------------------------------

    def read_info(self, off: int) -> bytes:
        if off < 0 or off + INFO_SIZE > self.rawsize:
            self.err("btt_read_info", f"short read of first info block: "
                     f"{max(0, self.rawsize - off)}")
            raise _Abort(errno.ENXIO)
        return self.io.read(off, INFO_SIZE)

    def verify(self, raw: bytes) -> bool:
        return info_is_valid(raw, self.parent_uuid)

    def read_verify(self, off: int) -> bytes | None:
        if off < 0 or off + INFO_SIZE > self.rawsize:
            return None
        raw = self.io.read(off, INFO_SIZE)
        return raw if self.verify(raw) else None

    def write_info(self, raw: bytes, off: int) -> bool:
        if not self.repair:
            self.err("btt_write_info", f"BTT info block at offset {off:#x} needs to be "
                     "restored")
            self.repair_msg("btt_write_info")
            self.result.needs_repair.append(f"info block at {off:#x}")
            return False
        self.info("btt_write_info", f"Restoring BTT info block at offset {off:#x}")
        self.io.write(off, raw, "check.info", atomic=False)
        self.result.repairs.append(f"info block at {off:#x}")
        return True

    def recover_first_sb(self) -> bool:
        for off in (BTT1_START_OFFSET, BTT2_START_OFFSET):
            if self._recover_first_sb(off):
                self.start_off = off
                return True
        return False

    def _recover_first_sb(self, off: int) -> bool:
        func = "__btt_recover_first_sb"
        est = 0
        remaining = self.rawsize - off
        while remaining:
            if remaining < ARENA_MIN_SIZE and est == 0:
                return False
            if remaining > ARENA_MAX_SIZE:
                remaining -= ARENA_MAX_SIZE
                est += 1
                continue
            if remaining >= ARENA_MIN_SIZE:
                remaining = 0
                est += 1
            break
        self.info(func, f"estimated arenas: {est}, remaining bytes: {remaining:#x}")
        first = self.read_info(off)
        if est == 1:
            offset = _rounddown(self.rawsize - remaining, 4096) - INFO_SIZE
        else:
            offset = ARENA_MAX_SIZE - INFO_SIZE + off
        self.info(func, f"Attempting recover info-block from end-of-arena offset {offset:#x}")
        backup = self.read_verify(offset)
        if backup is not None:
            info = InfoBlock.unpack(backup)
            v = version_of(info.version_major, info.version_minor)
            if v is None or v.initial_offset != off:
                return False
            return self.write_info(backup, off)
        if est > 1:
            offset = _rounddown(self.rawsize - remaining, 4096) - INFO_SIZE
            self.info(func, f"Attempting to recover info-block from end offset {offset:#x}")
            last = self.read_verify(offset)
            if last is None:
                return False
            merged = bytearray(last)
            for lo, hi in ((48, 52), (60, 64), (68, 72), (80, 120), (4088, 4096)):
                merged[lo:hi] = first[lo:hi]  # arena 0's own fields, and its checksum
            if self.verify(bytes(merged)):
                return self.write_info(bytes(merged), off)
        info2off = int.from_bytes(first[112:116], "little")
        if info2off > min(self.rawsize - INFO_SIZE, ARENA_MAX_SIZE - INFO_SIZE + off):
            return False
        if info2off:
            self.info(func, f"Attempting to recover info-block from info2 offset "
                      f"{info2off:#x}")
            found = self.read_verify(info2off + off)
            if found is not None:
                return self.write_info(found, off)
        return False

    # -- discovery -----------------------------------------------------------------------

    def discover(self) -> None:
        func = "btt_discover_arenas"
        remaining = self.rawsize
        cur = self.start_off
        lba = 0
        while remaining > 0:
            num = len(self.arenas)
            raw = self.read_info(cur)
            if not self.verify(raw):
                if remaining <= ARENA_MAX_SIZE:
                    offset = _rounddown(self.rawsize, 4096) - INFO_SIZE
                else:
                    offset = cur + ARENA_MAX_SIZE - INFO_SIZE
                self.info(func, f"Arena {num}: Attempting recover info-block using info2")
                if offset < 0 or offset + INFO_SIZE > self.rawsize:
                    self.err(func, f"Unable to read backup info block (offset {offset:#x})")
                    raise _Abort(errno.ENXIO)
                raw = self.io.read(offset, INFO_SIZE)
                if not self.verify(raw):
                    self.err(func, f"Backup info block (offset {offset:#x}) verification "
                             "failed")
                    raise _Abort(errno.ENXIO)
                if not self.write_info(raw, cur):
                    self.err(func, "Restoration of the info block failed: -1")
                    raise _Abort(errno.ENXIO)
            info = InfoBlock.unpack(raw)
            geo = ArenaGeometry.from_info(info, cur, lba)
            if (info.internal_nlba - info.external_nlba != info.nfree
                    or (self.strict_lbasize
                        and info.internal_lbasize != info.external_lbasize)):
                self.err(func, f"Problem parsing arena[{num}] metadata")
                raise _Abort(errno.ENXIO)
            if info.flags & IB_FLAG_ERROR:
                self.err("btt_parse_meta", "Info block error flag is set, aborting")
                self.err(func, f"Problem parsing arena[{num}] metadata")
                raise _Abort(errno.ENXIO)
            if not _fits(geo, self.rawsize):
                self.err(func, f"Problem parsing arena[{num}] metadata")
                raise _Abort(errno.ENXIO)
            self.arenas.append(_Arena(num, geo, raw, info.flags))
            remaining -= geo.size
            cur += geo.size
            lba += geo.external_nlba
            if info.nextoff == 0:
                break
        n = len(self.arenas)
        self.info(func, f"found {n} BTT arena{'s' if n > 1 else ''}")

    def load(self, a: _Arena) -> None:
        g = a.geo
        a.lograw = self.io.read(g.logoff, g.nfree * LOG_GRP_SIZE)
        a.groups = _log_groups(a.lograw)
        self.load_map(a)
        try:
            a.log_index = _log_index(a.lograw)
        except CorruptMetadata as e:
            if "padding scheme" in e.message:
                self.err("log_set_indices", "Found an unknown padding scheme")
            self.err("namespace_check", "Unable to deduce log/padding indices")
            raise _Abort(errno.ENXIO) from None
        self.info("log_set_indices", f"arena[{a.num}]: log_index_0 = {a.log_index[0]}")
        self.info("log_set_indices", f"arena[{a.num}]: log_index_1 = {a.log_index[1]}")

    def load_map(self, a: _Arena) -> None:
        g = a.geo
        a.map = map_summary(self.io.read(g.mapoff, g.external_nlba * MAP_ENT_SIZE))

    # -- the arena checks ------------------------------------------------------------------

    def lookup(self, a: _Arena, lba: int) -> int:
        lookups = a.summary.lookups
        if lba < len(lookups):
            return lookups[lba]
        raw = self._map_beyond(a, lba)
        return raw & MAP_LBA_MASK if raw & MAP_ENT_NORMAL else lba

    def _map_beyond(self, a: _Arena, lba: int) -> int:
        off = a.geo.map_off(lba)
        if off + MAP_ENT_SIZE > self.rawsize:
            return 0
        return int.from_bytes(self.io.read(off, MAP_ENT_SIZE), "little")

    def check_log_entries(self, a: _Arena) -> int:
        return _log_status(a.lograw, *a.log_index, a.geo.external_nlba, a.geo.internal_nlba)

    def check_map_entries(self, a: _Arena) -> int:
        return BTT_MAP_OOB if a.summary.max_block >= a.geo.internal_nlba else BTT_OK

    def check_log_map(self, a: _Arena) -> int:
        """Without ``--repair`` ndctl reports the stale map entry and goes on (so the
        bitmap check that follows fails); with it, it rolls the map forward."""
        newest = a.newest
        for lane in _moved(a.lograw, *a.log_index):  # old == new can never disagree
            lba, old, new, _ = newest[lane]
            mapping = self.lookup(a, lba)
            if new != mapping and old == mapping:
                self.info("btt_check_log_map", f"arena {a.num}: log[{lane}].new_map "
                          f"({_x(new)}) doesn't match map[{_x(lba)}] ({_x(mapping)})")
                self.map_write(a, lba, new)
        return BTT_OK

    def map_write(self, a: _Arena, lba: int, mapping: int) -> bool:
        func = "btt_map_write"
        if not self.repair:
            self.err(func, f"Arena {a.num}: map[{_x(lba)}] needs to be updated to "
                     f"{_x(mapping)}")
            self.repair_msg(func)
            self.result.needs_repair.append(f"arena {a.num}: map[{lba:#x}] -> {mapping:#x}")
            return False
        self.info(func, f"Arena {a.num}: Updating map[{_x(lba)}] to {_x(mapping)}")
        self.io.write(a.geo.map_off(lba), map_encode(mapping), "check.map", atomic=False)
        self.load_map(a)
        self.result.repairs.append(f"arena {a.num}: map[{lba:#x}] -> {mapping:#x}")
        return True

    def check_info2(self, a: _Arena) -> int:
        info2 = self.io.read(a.geo.info2off, INFO_SIZE)
        if info2 == a.info_raw:
            return BTT_OK
        if not self.repair:
            self.err("btt_copy_to_info2", f"Arena {a.num}: BTT info2 needs to be restored")
            self.repair_msg("btt_copy_to_info2")
            self.result.needs_repair.append(f"arena {a.num}: info2")
            return BTT_OK
        self.result.lines.append(CheckLine("out", "", f"Arena {a.num}: Restoring BTT info2"))
        self.io.write(a.geo.info2off, a.info_raw, "check.info2", atomic=False)
        self.result.repairs.append(f"arena {a.num}: info2")
        return BTT_OK

    def check_bitmap(self, a: _Arena) -> int:
        inlba = a.geo.internal_nlba
        summary = a.summary
        free = [old for _, old, _, _ in a.newest]
        free_set = set(free)
        if (summary.injective and len(free_set) == len(free)
                and len(summary.lookups) + len(free) == inlba
                and summary.max_block < inlba and max(free, default=0) < inlba
                and summary.blocks.isdisjoint(free_set)):
            return BTT_OK
        func = "btt_check_bitmap"
        seen = bytearray(inlba)
        for blk in summary.lookups:
            if blk >= inlba:
                return BTT_BITMAP_ERROR
            if seen[blk]:
                self.info(func, f"arena {a.num}: internal block {_x(blk)} is referenced by "
                          "two map entries")
                return BTT_BITMAP_ERROR
            seen[blk] = 1
        for blk in free:
            if blk >= inlba or seen[blk]:
                self.info(func, f"arena {a.num}: internal block {_x(blk)} is referenced by "
                          "two map/log entries")
                return BTT_BITMAP_ERROR
            seen[blk] = 1
        return BTT_BITMAP_ERROR

    def check_arenas(self) -> None:
        rc = BTT_OK
        a = None
        for a in self.arenas:
            self.info("btt_check_arenas", f"checking arena {a.num}")
            for step in (self.check_log_entries, self.check_map_entries, self.check_log_map,
                         self.check_info2, self.check_bitmap):
                rc = step(a)
                if rc:
                    break
            if rc:
                break
        if a is not None and rc != BTT_OK:
            self.err("btt_xlat_status", f"arena {a.num}: "
                     f"{_STATUS.get(rc, f'unknown error: {rc}')}")
            raise _Abort(errno.ENXIO)


def _x(v: int) -> str:
    """printf("%#x"): no 0x prefix for zero."""
    return hex(v) if v else "0"


def _rounddown(v: int, a: int) -> int:
    return v - v % a


def _fits(g: ArenaGeometry, size: int) -> bool:
    return (g.infooff < g.dataoff <= g.mapoff <= g.logoff <= g.info2off
            and g.info2off + INFO_SIZE <= size
            and g.mapoff + g.external_nlba * MAP_ENT_SIZE <= g.logoff
            and g.logoff + g.nfree * LOG_GRP_SIZE <= g.info2off)


def check_btt(io: RawIO, *, dev: str, size: int, parent_uuid: uuidlib.UUID | None,
              repair: bool = False, strict_lbasize: bool = True) -> CheckResult:
    """ndctl's ``namespace_check`` on raw namespace bytes (``io``, ``size`` bytes)."""
    result = CheckResult(dev, ok=False)
    c = _Checker(io, dev, size, parent_uuid, repair, strict_lbasize, result)
    c.info("namespace_check", f"checking {dev}")
    try:
        if c.read_verify(BTT1_START_OFFSET) is not None:
            c.start_off = BTT1_START_OFFSET
        elif c.read_verify(BTT2_START_OFFSET) is not None:
            c.start_off = BTT2_START_OFFSET
        else:
            if not c.recover_first_sb():
                c.err("namespace_check", "Unable to recover any BTT info blocks")
                raise _Abort(errno.ENXIO)
            if c.read_verify(c.start_off) is None:
                raise _Abort(errno.ENXIO)
        c.discover()
        for a in c.arenas:
            c.load(a)
        c.check_arenas()
    except _Abort as e:
        result.errno = e.err
        return result
    result.ok = True
    return result


def check_namespace(ns: Any, *, repair: bool = False,
                    strict_lbasize: bool = True) -> CheckResult:
    """``ndctl check-namespace`` on an idle namespace (``ns`` a
    :class:`~nvdimm.namespace.Namespace`). Raises :class:`~nvdimm.errors.Busy` when it is
    enabled, as ndctl aborts ("check aborted, namespace online")."""
    from drivers.btt.btt import NamespaceIO

    if ns.enabled:
        raise Busy(f"{ns.dev}: check aborted, namespace online")
    return check_btt(NamespaceIO(ns), dev=ns.dev, size=ns.size, parent_uuid=ns.uuid,
                     repair=repair, strict_lbasize=strict_lbasize)


def strerror(err: int) -> str:
    return os.strerror(err) if err else ""

