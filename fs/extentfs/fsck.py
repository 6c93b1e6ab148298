"""fsck.extentfs: check an unmounted extentfs offline and, with ``repair``, fix it.

The phases are e2fsck's, and so is the report (``FsckReport.render``)::

    pmem0 was not cleanly unmounted (mounted, or it crashed).  Recover? yes
    pmem0: journal holds committed transaction 7 (5 blocks), not yet written home.  Replay? yes
    Pass 1: Checking inodes, blocks, and sizes
    Inode 12 passes checks, but checksum does not match inode.  Fix? yes
    Pass 2: Checking directory structure
    Entry 'a' in directory inode 1 (slot 3) has deleted/unused inode 40.  Clear? yes
    Pass 3: Checking directory connectivity
    Pass 4: Checking reference counts
    Pass 5: Checking block bitmap
    Block bitmap differences: 4 block(s) in use but not marked: +(2000--2003).  Fix? yes

    pmem0: ***** FILE SYSTEM WAS MODIFIED *****
    pmem0: 12/3999 files, 1600/64000 blocks

What each phase looks at (a problem is reported under the phase that found it; 0 is the
superblock and the journal, before pass 1):

0. the superblock: magic (none: :class:`CorruptMetadata`, "run mkfs first"), version,
   CRC (a CRC mismatch over fields that are otherwise consistent is rewritten), the
   geometry (:meth:`Superblock.geometry_problem`) and the device size; the clean flag;
   the journal: a committed transaction waiting is replayed (:func:`journal.replay`);
1. every inode: CRC, mode, flags, the extents (non-empty, inside the data area, sorted
   and non-overlapping, below the largest file), the overflow chain (in range, no
   loops, valid blocks, as many extents as the inode says), the size; then blocks
   claimed twice (by two inodes, or twice by one, or by data and an extent block);
2. every directory: its blocks, "." and "..", each entry's inode (in range, in use, not
   the root), its file type, its name (valid, not a duplicate); a directory named by
   two entries keeps one name;
3. the root directory exists; every directory is reachable from it; ".." names the
   parent; unconnected directories go to ``/lost+found`` (created when needed) as
   ``#<ino>``;
4. link counts: a file's is its number of names, a directory's 2 + its subdirectories;
   an inode with no name and a link count of 0 is an orphan (freed, its bitmap bits
   with it, as the kernel's orphan cleanup does); one with no name and links left is
   unattached (to ``/lost+found``);
5. the block bitmap against what pass 1-4 found in use: blocks in use but not marked,
   blocks marked but used by nothing (leaked), and the padding bits past the last block.

Decisions, where e2fsck's answer needed translating:

* **Mounted or crashed.** The superblock's state is 0 from mount until a clean unmount,
  so the media cannot tell a mounted filesystem from a crashed one. Like the kernel's
  mount (:func:`fs.extentfs.fs.mount`), fsck takes it for a crash: it reports "not
  cleanly unmounted" and checks everything, recovery included (journal replay, orphans
  freed); a repair that leaves nothing unfixed marks the superblock clean. Whether the
  filesystem *is* mounted is the mount table's to say: pass ``vfs`` and a mounted
  device is refused (:class:`Busy`), as e2fsck refuses what /proc/mounts lists;
  ``force`` checks it anyway, read-only (what it sees may be stale: the mounted
  filesystem's running transaction is in memory).
* **Blocks past end of file** are allowed for regular files: extentfs keeps them only
  after ``fallocate(KEEP_SIZE)``, which is legitimate. A directory's size is always its
  blocks (holes in a directory's map are closed by renumbering, since entries do not
  record their position).
* **Checksums.** An inode whose checksum fails but whose fields pass every check gets a
  new checksum (e2fsck's "passes checks, but checksum does not match"); one that also
  fails a check is cleared (its names go in pass 2, its blocks in pass 5).
* **Multiply-claimed blocks** are cloned, as e2fsck's pass 1D does: one claimant keeps
  the blocks (an extent block first, then a directory, then a file, then the lower
  inode), every other one gets a copy in newly allocated blocks; with no room for a
  copy, the claim is removed instead.
* **Unattached files are pass 4's**, unconnected directories pass 3's (e2fsck's split).
* **Without repair,** the fixes are still made, in memory only, so the report lists
  exactly what ``repair`` would do and later passes do not repeat the consequences of
  an earlier problem; nothing is written.
* **How repairs are written.** There is no journal to lean on, so each pass writes its
  changes at its end: data-area blocks (directories, extent blocks, cloned data) first,
  a flush, then inode table and bitmap blocks, a flush; the clean flag goes last (FUA).
  Blocks for the repairs' own use (clones, ``lost+found``, directory growth) are ones
  free in the on-disk bitmap *and* claimed by nothing fsck saw, so a crash during a
  repair leaves a filesystem the next fsck finishes (only when there are none, say
  under a bitmap of ones or a wild extent, do they come from blocks no kept inode
  claims).
* **Unreadable metadata** (a media error) is reported where it is met, taken as
  zeroes, and rewritten as zeroes by the repair (which clears the poison); what it
  held is lost, and the passes after it deal with the consequences.

The exit code is e2fsck's: 0 clean, 1 errors corrected, 4 errors left uncorrected (8,
an operational error such as no superblock, is the caller's: :func:`fsck` raises).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs

from block.genhd import Gendisk
from fs.extentfs import extents as ext
from fs.extentfs import journal as jrnl
from fs.extentfs.layout import _SB as SUPERBLOCK_STRUCT
from fs.extentfs.layout import (
    BITS_PER_BLOCK,
    BLOCK,
    DIRENT_SIZE,
    DIRENTS_PER_BLOCK,
    EXTENTS_PER_BLOCK,
    FT_DIR,
    FT_REG,
    INLINE_EXTENTS,
    INODE_DAX,
    INODE_SIZE,
    MAGIC,
    NAME_MAX,
    S_IFDIR,
    S_IFMT,
    S_IFREG,
    STATE_CLEAN,
    Dirent,
    Extent,
    Inode,
    Superblock,
    check_name,
    crc,
    decode_dirents,
    decode_extent_block,
    decode_inode,
    encode_dirents,
    encode_extent_block,
    encode_inode,
    encode_journal_super,
    slot_in_use,
)
from nvdimm.errors import Busy, CorruptMetadata, MediaError, NvdimmError

if TYPE_CHECKING:
    from fs.vfs import Vfs

EXIT_OK = 0
EXIT_CORRECTED = 1
EXIT_UNCORRECTED = 4
EXIT_ERROR = 8

PASS_TITLES = {
    1: "Pass 1: Checking inodes, blocks, and sizes",
    2: "Pass 2: Checking directory structure",
    3: "Pass 3: Checking directory connectivity",
    4: "Pass 4: Checking reference counts",
    5: "Pass 5: Checking block bitmap",
}

#: An inode's last word is its CRC (of everything before it).
_INODE_CRC = INODE_SIZE - 4
#: The superblock's CRC follows its fields.
_SB_CRC = SUPERBLOCK_STRUCT.size
_DIRENT_HEAD = DIRENT_SIZE - NAME_MAX
_MAX_LBLK = 1 << 32  # an extent's logical block is 32 bits
_RUNS_LISTED = 8
_TO_BITS = bytes.maketrans(b"01", b"\x00\x01")
_EMPTY_DIR_TAIL: list[Dirent | None] = [None] * (DIRENTS_PER_BLOCK - 2)


@attrs.define(slots=True)
class Problem:
    """One thing fsck found: in which pass, what is wrong, what the repair does, and
    whether it was done."""

    phase: int
    message: str
    action: str
    fixed: bool = False

    def render(self) -> str:
        return f"{self.message}.  {self.action}? {'yes' if self.fixed else 'no'}"

    def to_json(self) -> dict[str, Any]:
        return {"pass": self.phase, "message": self.message, "action": self.action,
                "fixed": self.fixed}


@attrs.define(slots=True)
class FsckReport:
    """What one fsck run found and did."""

    device: str
    repair: bool
    found: list[Problem] = attrs.field(factory=list)
    replayed: int = 0  # journal blocks replayed
    files: int = 0  # inodes in use
    total_files: int = 0
    blocks: int = 0  # blocks in use (metadata included)
    total_blocks: int = 0

    @property
    def problems(self) -> list[tuple[int, str]]:
        """(pass, message) of every problem, in the order found (pass 0: superblock
        and journal)."""
        return [(p.phase, p.message) for p in self.found]

    @property
    def fixed(self) -> int:
        return sum(p.fixed for p in self.found)

    @property
    def clean(self) -> bool:
        return not self.found

    @property
    def exit_code(self) -> int:
        """e2fsck's: 0 clean, 1 every error corrected, 4 errors left."""
        if not self.found:
            return EXIT_OK
        return EXIT_CORRECTED if self.fixed == len(self.found) else EXIT_UNCORRECTED

    def in_pass(self, phase: int) -> list[str]:
        return [p.message for p in self.found if p.phase == phase]

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "repair": self.repair, "clean": self.clean,
                "exit_code": self.exit_code, "fixed": self.fixed,
                "replayed_blocks": self.replayed,
                "problems": [p.to_json() for p in self.found],
                "files": {"used": self.files, "total": self.total_files},
                "blocks": {"used": self.blocks, "total": self.total_blocks}}

    def render(self) -> str:
        lines = [p.render() for p in self.found if p.phase == 0]
        for phase, title in PASS_TITLES.items():
            lines.append(title)
            lines += [p.render() for p in self.found if p.phase == phase]
        lines.append("")
        if self.fixed:
            lines.append(f"{self.device}: ***** FILE SYSTEM WAS MODIFIED *****")
        if self.fixed < len(self.found):
            lines.append(f"{self.device}: ********** WARNING: Filesystem still has errors "
                         "**********")
        lines.append(f"{self.device}: {self.files}/{self.total_files} files, "
                     f"{self.blocks}/{self.total_blocks} blocks")
        return "\n".join(lines)


def fsck(disk: Gendisk, *, repair: bool = False, force: bool = False,
         vfs: Vfs | None = None, name: str = "") -> FsckReport:
    """Check the extentfs on ``disk`` (fix it with ``repair``). ``vfs``, the running
    kernel's mount table, lets fsck refuse a mounted device (``force``: check it
    anyway, read-only). Raises :class:`CorruptMetadata` when there is no usable
    superblock (nothing to check: e2fsck's exit code 8)."""
    name = name or disk.name
    if vfs is not None:
        for m in vfs.mounts.values():
            if m.fs.disk is disk:
                if not force:
                    raise Busy(f"{name} is mounted on {m.path}: unmount it first (fsck "
                               "checks unmounted filesystems; force checks it read-only)")
                if repair:
                    raise Busy(f"{name} is mounted on {m.path}: cannot repair a mounted "
                               "filesystem")
    checker = _Fsck(disk, repair, FsckReport(name, repair))
    checker.run()
    return checker.report


# -- the checker's model ---------------------------------------------------------------------


@attrs.define(slots=True, eq=False)
class _Ino:
    """An inode in use, as fsck has it (fixed as it goes)."""

    inode: Inode
    chain: list[int] = attrs.field(factory=list)  # overflow extent blocks, in order


@attrs.define(slots=True, eq=False)
class _Dir:
    """A directory's slots (index = slot number across its blocks)."""

    ino: int
    slots: list[Dirent | None]
    parent: int | None = None  # the directory whose entry names this one (pass 2)
    parent_slot: int = -1
    dotdot_pending: bool = False  # '..' was missing (reported in pass 2, set in pass 3)

    @property
    def dotdot(self) -> int | None:
        e = self.slots[1]
        return e.ino if e is not None and e.name == ".." else None

    def entries(self) -> Iterator[tuple[int, Dirent]]:
        """(slot, entry) of every entry but '.' and '..'."""
        for s in range(2, len(self.slots)):
            e = self.slots[s]
            if e is not None:
                yield s, e

    def is_empty(self) -> bool:
        return next(self.entries(), None) is None


@attrs.frozen(slots=True)
class _Claim:
    """Blocks an inode claims: an extent of data (``lblk``) or its chain block ``idx``."""

    pblk: int
    length: int
    rank: int  # who keeps a multiply-claimed block: lowest rank first
    ino: int
    chain_idx: int = -1  # >= 0: the inode's chain block of this index
    lblk: int = 0

    @property
    def pend(self) -> int:
        return self.pblk + self.length

    def what(self) -> str:
        if self.chain_idx >= 0:
            return f"extent block {self.pblk}"
        return f"blocks {_span(self.pblk, self.length)} (file block {self.lblk})"


@attrs.define(slots=True, eq=False)
class _Space:
    """Blocks the repairs may take: free in the on-disk bitmap and claimed by nothing
    fsck saw (one byte per block)."""

    taken: bytearray
    start: int

    def alloc(self, want: int, goal: int | None = None) -> list[tuple[int, int]] | None:
        """``want`` blocks as runs (pblk, length), first fit from ``goal``; None (and
        nothing taken) when there are not that many."""
        end = len(self.taken)
        if want <= 0 or self.taken.count(0, self.start, end) < want:
            return None
        runs: list[tuple[int, int]] = []
        pos = goal if goal is not None and self.start <= goal < end else self.start
        while want:
            b = self.taken.find(0, pos)
            if b < 0:
                pos = self.start
                continue
            e = self.taken.find(1, b)
            k = min((end if e < 0 else e) - b, want)
            self.taken[b:b + k] = b"\x01" * k
            runs.append((b, k))
            want -= k
            pos = b + k
        return runs


def _span(b: int, n: int) -> str:
    return str(b) if n == 1 else f"{b}--{b + n - 1}"


def _bit_runs(v: int) -> list[tuple[int, int]]:
    """(first, length) of each run of set bits of ``v``."""
    out = []
    pos = 0
    while v:
        low = (v & -v).bit_length() - 1
        v >>= low
        pos += low
        ones = (v ^ (v + 1)).bit_length() - 1
        out.append((pos, ones))
        v >>= ones
        pos += ones
    return out


def _runs_text(sign: str, runs: list[tuple[int, int]]) -> str:
    shown = [f"{sign}({_span(b, n)})" if n > 1 else f"{sign}{b}" for b, n in
             runs[:_RUNS_LISTED]]
    if len(runs) > _RUNS_LISTED:
        shown.append(f"... ({len(runs) - _RUNS_LISTED} more runs)")
    return " ".join(shown)


# -- the checker -----------------------------------------------------------------------------


@attrs.define(slots=True, eq=False)
class _Fsck:
    disk: Gendisk
    repair: bool
    report: FsckReport
    sb: Superblock = attrs.field(init=False)
    phase: int = 0
    cache: dict[int, bytearray] = attrs.field(factory=dict)
    dirty: set[int] = attrs.field(factory=set)
    inodes: dict[int, _Ino] = attrs.field(factory=dict)
    dirty_inodes: set[int] = attrs.field(factory=set)
    dirs: dict[int, _Dir] = attrs.field(factory=dict)
    bitmap: list[int] = attrs.field(factory=list)  # the on-disk bitmap, per block
    space: _Space = attrs.field(init=False)
    lost_found: int | None = None
    refs: Counter[int] = attrs.field(factory=Counter)  # names per inode (pass 4)
    subdirs: Counter[int] = attrs.field(factory=Counter)  # subdirectories per dir (pass 4)
    #: Blocks of freed orphans: their bits are cleared as part of freeing them (pass 5
    #: does not report them as leaked; e2fsck's orphan release does the same).
    released: list[tuple[int, int]] = attrs.field(factory=list)

    @property
    def name(self) -> str:
        return self.report.device

    def problem(self, message: str, action: str) -> Problem:
        p = Problem(self.phase, message, action, fixed=self.repair)
        self.report.found.append(p)
        return p

    # -- blocks: read through a cache; changes stay there until the pass commits --------

    def block(self, b: int, what: str) -> bytearray:
        buf = self.cache.get(b)
        if buf is None:
            try:
                buf = bytearray(self.disk.read(b * BLOCK, BLOCK))
            except MediaError:
                self.problem(f"{what} (block {b}) cannot be read: media error",
                             "Rewrite as zeroes")
                buf = bytearray(BLOCK)
                self.dirty.add(b)
            self.cache[b] = buf
        return buf

    def put(self, b: int, data: bytes | bytearray) -> None:
        self.cache[b] = bytearray(data)
        self.dirty.add(b)

    def prefetch(self, start: int, count: int, what: str) -> None:
        step = 256
        for s in range(start, start + count, step):
            n = min(step, start + count - s)
            try:
                raw = self.disk.read(s * BLOCK, n * BLOCK)
            except MediaError:
                for b in range(s, s + n):
                    self.block(b, what)
                continue
            for i in range(n):
                self.cache.setdefault(s + i, bytearray(raw[i * BLOCK:(i + 1) * BLOCK]))

    def commit(self) -> None:
        """The end of a pass: store the changed inodes; with ``repair``, write every
        changed block (data area first, flush, then the metadata area, flush)."""
        for ino in sorted(self.dirty_inodes):
            node = self.inodes.get(ino)
            if node is not None:
                self._store(node)
        self.dirty_inodes.clear()
        if self.repair:
            start = self.sb.data_start
            for group in (sorted(b for b in self.dirty if b >= start),
                          sorted(b for b in self.dirty if b < start)):
                i = 0
                while i < len(group):
                    j = i
                    while j + 1 < len(group) and group[j + 1] == group[j] + 1:
                        j += 1
                    self.disk.write(group[i] * BLOCK,
                                    b"".join(self.cache[b] for b in group[i:j + 1]))
                    i = j + 1
                if group:
                    self.disk.flush()
        self.dirty.clear()

    def _alloc(self, want: int, goal: int | None = None) -> list[tuple[int, int]] | None:
        """Blocks for a repair: from those nothing fsck saw may need; when they run
        out (a bitmap of ones, a wild extent), from those no inode fsck kept claims."""
        runs = self.space.alloc(want, goal)
        if runs is not None:
            return runs
        sb = self.sb
        kept = bytearray(sb.blocks)
        kept[:sb.data_start] = b"\x01" * sb.data_start
        for node in self.inodes.values():
            for b in node.chain:
                kept[b] = 1
            for e in node.inode.extents:
                kept[e.pblk:e.pend] = b"\x01" * e.length
        runs = _Space(kept, sb.data_start).alloc(want, goal)
        for b, n in runs or ():
            self.space.taken[b:b + n] = b"\x01" * n
        return runs

    # -- inodes ---------------------------------------------------------------------------

    def _store(self, node: _Ino) -> None:
        """Encode ``node`` into its inode table slot, with its extent chain."""
        inode = node.inode
        over = inode.extents[INLINE_EXTENTS:]
        need = -(-len(over) // EXTENTS_PER_BLOCK)
        del node.chain[need:]  # blocks dropped from the chain are freed by pass 5
        if len(node.chain) < need:
            runs = self._alloc(need - len(node.chain), inode.extents[0].pblk)
            if runs is None:
                self.problem(f"Inode {inode.ino}: no free block for its extent chain; "
                             f"{len(over)} extents past the first {INLINE_EXTENTS} dropped",
                             "Truncate")
                del inode.extents[INLINE_EXTENTS:]
                over, need = [], 0
                node.chain.clear()
            else:
                for b, n in runs:
                    node.chain.extend(range(b, b + n))
        for i, b in enumerate(node.chain):
            part = over[i * EXTENTS_PER_BLOCK:(i + 1) * EXTENTS_PER_BLOCK]
            nxt = node.chain[i + 1] if i + 1 < len(node.chain) else 0
            self.put(b, encode_extent_block(part, nxt))
        inode.overflow = node.chain[0] if node.chain else 0
        self._write_slot(inode.ino, encode_inode(inode))

    def _write_slot(self, ino: int, raw: bytes) -> None:
        tb, off = self.sb.inode_location(ino) if ino else (self.sb.inode_table_start, 0)
        buf = bytearray(self.block(tb, "inode table block"))
        buf[off:off + INODE_SIZE] = raw
        self.put(tb, buf)

    def _slot(self, ino: int) -> bytes:
        tb, off = self.sb.inode_location(ino) if ino else (self.sb.inode_table_start, 0)
        return bytes(self.block(tb, "inode table block")[off:off + INODE_SIZE])

    def _clear(self, ino: int) -> None:
        """Free inode ``ino``: its slot zeroed; its blocks go back in pass 5."""
        self.inodes.pop(ino, None)
        self.dirs.pop(ino, None)
        self.dirty_inodes.discard(ino)
        self._write_slot(ino, bytes(INODE_SIZE))

    def _free_ino(self) -> int | None:
        for ino in range(2, self.sb.inodes):
            if ino not in self.inodes and not slot_in_use(self._slot(ino)):
                return ino
        return None

    # -- directories ----------------------------------------------------------------------

    def _set_slot(self, d: _Dir, slot: int, ent: Dirent | None) -> None:
        old = d.slots[slot]
        if old is not None and slot >= 2:
            self.refs[old.ino] -= 1
            if old.ftype == FT_DIR:
                self.subdirs[d.ino] -= 1
        if ent is not None and slot >= 2:
            self.refs[ent.ino] += 1
            if ent.ftype == FT_DIR:
                self.subdirs[d.ino] += 1
        d.slots[slot] = ent
        lblk = slot // DIRENTS_PER_BLOCK
        pblk, _ = ext.lookup(self.inodes[d.ino].inode.extents, lblk)
        assert pblk is not None
        first = lblk * DIRENTS_PER_BLOCK
        self.put(pblk, encode_dirents(d.slots[first:first + DIRENTS_PER_BLOCK]))

    def _add_entry(self, d: _Dir, name: str, ino: int, ftype: int) -> int | None:
        """Add an entry in a free slot (growing the directory by a block if needed);
        returns the slot, or None when there is no room."""
        slot = next((s for s in range(2, len(d.slots)) if d.slots[s] is None), None)
        if slot is None:
            node = self.inodes[d.ino]
            runs = self._alloc(1, node.inode.extents[-1].pend)
            if runs is None:
                return None
            b = runs[0][0]
            lblk = len(d.slots) // DIRENTS_PER_BLOCK
            ext.insert(node.inode.extents, Extent(lblk, b, 1))
            node.inode.size = (lblk + 1) * BLOCK
            self.dirty_inodes.add(d.ino)
            d.slots.extend([None] * DIRENTS_PER_BLOCK)
            slot = lblk * DIRENTS_PER_BLOCK
        self._set_slot(d, slot, Dirent(ino, name, ftype))
        return slot

    def _new_dir(self, ino: int, parent: int, mode: int) -> _Dir | None:
        runs = self._alloc(1)
        if runs is None:
            return None
        b = runs[0][0]
        inode = Inode(ino, S_IFDIR | mode, 0, 2, BLOCK, 0, 0, 1, [Extent(0, b, 1)])
        self.inodes[ino] = _Ino(inode)
        self.dirty_inodes.add(ino)
        d = _Dir(ino, [Dirent(ino, ".", FT_DIR), Dirent(parent, "..", FT_DIR),
                       *_EMPTY_DIR_TAIL], parent=parent)
        self.dirs[ino] = d
        self.put(b, encode_dirents(d.slots))
        return d

    def _lost_found(self) -> int | None:
        """/lost+found's inode, created when missing (None: no room for it)."""
        if self.lost_found is not None:
            return self.lost_found
        root = self.dirs.get(self.sb.root_ino)
        if root is None:
            return None
        for s, e in root.entries():
            if e.name == "lost+found":
                if e.ino in self.dirs:
                    self.lost_found = e.ino
                    return e.ino
                self.problem(f"/lost+found is not a directory (ino={e.ino})", "Unlink")
                self._set_slot(root, s, None)
                break
        p = self.problem("/lost+found not found", "Create")
        ino = self._free_ino()
        d = None if ino is None else self._new_dir(ino, root.ino, 0o700)
        if ino is None or d is None:
            p.fixed = False
            return None
        slot = self._add_entry(root, "lost+found", ino, FT_DIR)
        if slot is None:
            self._clear(ino)
            p.fixed = False
            return None
        d.parent, d.parent_slot = root.ino, slot
        self.inodes[root.ino].inode.nlink += 1
        self.dirty_inodes.add(root.ino)
        self.lost_found = ino
        return ino

    def _reconnect(self, ino: int, ftype: int, p: Problem) -> bool:
        """Give ``ino`` a name in /lost+found (``#<ino>``)."""
        lf = self._lost_found()
        if lf is None:
            p.fixed = False
            return False
        d = self.dirs[lf]
        names = {e.name for _, e in d.entries()}
        name = f"#{ino}"
        k = 1
        while name in names:
            name, k = f"#{ino}.{k}", k + 1
        slot = self._add_entry(d, name, ino, ftype)
        if slot is None:
            p.fixed = False
            return False
        if ftype == FT_DIR:
            self.inodes[lf].inode.nlink += 1
            self.dirty_inodes.add(lf)
            sub = self.dirs[ino]
            sub.parent, sub.parent_slot = lf, slot
            self._set_slot(sub, 1, Dirent(lf, "..", FT_DIR))
            sub.dotdot_pending = False
        return True

    # -- the run ------------------------------------------------------------------------

    def run(self) -> None:
        unclean = self.check_super()
        self.pass1()
        self.pass2()
        self.pass3()
        self.pass4()
        self.pass5()
        if unclean is not None:
            done = self.repair and all(p.fixed for p in self.report.found if p is not unclean)
            unclean.fixed = done
            if done:
                self.sb.state = STATE_CLEAN
                self.disk.write(0, self.sb.encode(), fua=True)
                self.disk.flush()

    # -- phase 0: superblock and journal ----------------------------------------------------

    def check_super(self) -> Problem | None:
        """The superblock and the journal; returns the "not cleanly unmounted" problem."""
        try:
            raw = bytes(self.disk.read(0, BLOCK))
        except MediaError as e:
            raise CorruptMetadata(f"{self.name}: the superblock cannot be read "
                                  f"({e.message})") from None
        if raw[:len(MAGIC)] != MAGIC:
            raise CorruptMetadata(f"{self.name}: no extentfs superblock: run mkfs first")
        bad_crc = crc(raw[:_SB_CRC]) != int.from_bytes(raw[_SB_CRC:_SB_CRC + 4], "little")
        patched = raw[:_SB_CRC] + crc(raw[:_SB_CRC]).to_bytes(4, "little") + raw[_SB_CRC + 4:]
        try:
            sb = Superblock.decode(patched)
        except CorruptMetadata as e:
            raise CorruptMetadata(f"{self.name}: {e.message}: cannot check") from None
        if sb.blocks * BLOCK > self.disk.size:
            raise CorruptMetadata(f"{self.name}: the filesystem has {sb.blocks} blocks but "
                                  f"the device only {self.disk.size // BLOCK}: cannot check")
        self.sb = sb
        self.report.total_files = sb.inodes - 1
        self.report.total_blocks = sb.blocks
        if bad_crc:
            self.problem("Superblock checksum does not match (its fields are consistent)",
                         "Fix")
            if self.repair:
                self.disk.write(0, sb.encode(), fua=True)
                self.disk.flush()
        unclean = None
        if sb.state != STATE_CLEAN:
            unclean = self.problem(f"{self.name} was not cleanly unmounted (mounted, or it "
                                   "crashed)", "Recover")
        self._check_journal()
        return unclean

    def _check_journal(self) -> None:
        sb = self.sb
        try:
            seq, images = jrnl.pending(self.disk, sb)
        except (CorruptMetadata, MediaError) as e:
            self.problem(f"{self.name}: the journal superblock is damaged ({e.message}); a "
                         "transaction in it, if any, is lost", "Recreate the journal")
            if self.repair:
                self.disk.write(sb.journal_start * BLOCK, encode_journal_super(1))
                self.disk.write((sb.journal_start + 1) * BLOCK, bytes(BLOCK))
                self.disk.flush()
            return
        if images is None:
            return
        self.problem(f"{self.name}: journal holds committed transaction {seq} "
                     f"({len(images)} blocks), not yet written home", "Replay")
        if self.repair:
            _, self.report.replayed = jrnl.replay(self.disk, sb)
        else:  # check the filesystem as the replay would leave it
            for b, img in images.items():
                self.cache[b] = bytearray(img)

    # -- pass 1: inodes, blocks, sizes -------------------------------------------------------

    def pass1(self) -> None:
        self.phase = 1
        sb = self.sb
        self.prefetch(sb.inode_table_start, sb.inode_table_blocks, "inode table block")
        self.bitmap = [int.from_bytes(self.block(sb.bitmap_start + i, "bitmap block"),
                                      "little") for i in range(sb.bitmap_blocks)]
        taken = bytearray(sb.blocks)
        for i, bits in enumerate(self.bitmap):
            lo = i * BITS_PER_BLOCK
            n = min(BITS_PER_BLOCK, sb.blocks - lo)
            if n > 0:
                text = format(bits & ((1 << n) - 1), f"0{n}b")[::-1]
                taken[lo:lo + n] = text.encode().translate(_TO_BITS)
        taken[:sb.data_start] = b"\x01" * sb.data_start
        if any(self._slot(0)):
            self.problem("Inode 0's slot is not empty", "Clear")
            self._write_slot(0, bytes(INODE_SIZE))
        for ino in range(1, sb.inodes):
            raw = self._slot(ino)
            if any(raw):
                node = self._check_inode(ino, raw, taken)
                if node is not None:
                    self.inodes[ino] = node
        self.space = _Space(taken, sb.data_start)
        self._multiply_claimed()
        self.commit()

    def _check_inode(self, ino: int, raw: bytes, taken: bytearray) -> _Ino | None:
        crc_ok = crc(raw[:_INODE_CRC]) == int.from_bytes(raw[_INODE_CRC:], "little")
        fixed_crc = raw[:_INODE_CRC] + crc(raw[:_INODE_CRC]).to_bytes(4, "little")
        try:
            inode, more = decode_inode(ino, fixed_crc)
        except CorruptMetadata as e:
            self.problem(f"Inode {ino}: {e.message.removeprefix(f'inode {ino}: ')}"
                         f"{'' if crc_ok else ' (and a bad checksum)'}", "Clear")
            self._clear(ino)
            return None
        if not inode.in_use:
            if not crc_ok:  # mount's orphan scan decodes every slot: it must check
                self.problem(f"Inode {ino} (free) has a bad checksum", "Clear")
                self._clear(ino)
            return None
        fatal, issues, chain = self._validate(inode, more, taken)
        if fatal or (issues and not crc_ok):
            why = fatal or issues[0][0]
            bad = "" if crc_ok else "has a bad checksum and "
            self.problem(f"Inode {ino} {bad}{why}", "Clear")
            self._clear(ino)
            return None
        node = _Ino(inode, chain)
        if not crc_ok:
            self.problem(f"Inode {ino} passes checks, but checksum does not match inode",
                         "Fix")
            self.dirty_inodes.add(ino)
        for message, action in issues:
            self.problem(f"Inode {ino} {message}", action)
            self.dirty_inodes.add(ino)
        return node

    def _validate(self, inode: Inode, more: int, taken: bytearray
                  ) -> tuple[str, list[tuple[str, str]], list[int]]:
        """(why the inode must be cleared or "", the problems fixed in ``inode``, its
        extent chain). Marks every in-range block it claims in ``taken``."""
        sb = self.sb
        fmt = inode.mode & S_IFMT
        if fmt not in (S_IFREG, S_IFDIR):
            return f"has an invalid mode {inode.mode:#o}", [], []
        if inode.ino == sb.root_ino and fmt != S_IFDIR:
            return "is the root inode but not a directory", [], []
        issues: list[tuple[str, str]] = []
        if inode.flags & ~INODE_DAX:
            issues.append((f"has unknown flags {inode.flags & ~INODE_DAX:#x}", "Clear them"))
            inode.flags &= INODE_DAX
        # the overflow chain
        chain: list[int] = []
        inline = len(inode.extents)
        nxt, left = inode.overflow, more
        while left > 0:
            if not sb.data_start <= nxt < sb.blocks or nxt in chain:
                why = "loops back to" if nxt in chain else "points outside the data area at"
                issues.append((f"has an overflow extent chain that {why} block {nxt} "
                               f"({left} extents lost)", "Truncate the extent list"))
                break
            taken[nxt] = 1
            try:
                got, after = decode_extent_block(nxt, self.block(nxt, "extent block"))
            except CorruptMetadata as exc:
                issues.append((f"has a damaged overflow extent block: {exc.message} "
                               f"({left} extents lost)", "Truncate the extent list"))
                break
            chain.append(nxt)
            inode.extents.extend(got)
            left -= len(got)
            nxt = after
        else:
            if more == 0 and inode.overflow:
                issues.append((f"has an overflow block {inode.overflow} but all its extents "
                               "are inline", "Clear the pointer"))
            elif more and nxt:
                issues.append((f"has an overflow extent chain longer than its extents "
                               f"(block {nxt} and on)", "Truncate the chain"))
            elif left < 0:
                issues.append((f"has an extent count of {inline + more} but holds "
                               f"{len(inode.extents)} extents", "Fix"))
        # the extents
        good: list[Extent] = []
        prev_end = 0
        for e in inode.extents:
            where = f"extent (file block {e.lblk}, {e.length} blocks at {e.pblk})"
            if e.length <= 0:
                issues.append((f"has an empty {where}", "Remove it"))
                continue
            if e.pblk < sb.data_start or e.pend > sb.blocks:
                into = "at metadata" if e.pblk < sb.data_start else "past the last block"
                issues.append((f"has an {where} pointing {into}", "Remove it"))
                continue
            taken[e.pblk:e.pend] = b"\x01" * e.length
            if e.lend > _MAX_LBLK:
                issues.append((f"has an {where} past the largest file", "Remove it"))
                continue
            if e.lblk < prev_end:
                issues.append((f"has an {where} out of order or overlapping another",
                               "Remove it"))
                continue
            good.append(e)
            prev_end = e.lend
        inode.extents[:] = good
        # the size
        if fmt == S_IFDIR:
            at = 0
            for i, e in enumerate(inode.extents):
                if e.lblk != at:
                    issues.append((f"is a directory with a hole at block #{at}",
                                   "Close it"))
                    inode.extents[i] = Extent(at, e.pblk, e.length)
                at += e.length
            want = max(at, 1) * BLOCK
            if inode.size != want:
                issues.append((f"is a directory whose i_size is {inode.size}, should be "
                               f"{want}", "Fix"))
                inode.size = want
        elif inode.size > _MAX_LBLK * BLOCK:
            want = inode.extents[-1].lend * BLOCK if inode.extents else 0
            issues.append((f"has i_size {inode.size}, past the largest file; should be "
                           f"{want}", "Fix"))
            inode.size = want
        return "", issues, chain

    def _multiply_claimed(self) -> None:
        """Blocks claimed twice: all claimants but one get a copy (e2fsck's pass 1D)."""
        claims: list[_Claim] = []
        for ino, node in self.inodes.items():
            rank = 1 if node.inode.is_dir else 2
            claims += [_Claim(b, 1, 0, ino, i) for i, b in enumerate(node.chain)]
            claims += [_Claim(e.pblk, e.length, rank, ino, lblk=e.lblk)
                       for e in node.inode.extents]
        claims.sort(key=lambda c: c.pblk)
        dups: list[tuple[_Claim, _Claim]] = []
        group: list[_Claim] = []
        end = -1
        for c in [*claims, None]:
            if c is not None and c.pblk < end:
                group.append(c)
                end = max(end, c.pend)
                continue
            if len(group) > 1:
                kept: list[_Claim] = []
                for g in sorted(group, key=lambda g: (g.rank, g.ino, g.chain_idx, g.lblk)):
                    other = next((k for k in kept if k.pblk < g.pend and g.pblk < k.pend),
                                 None)
                    if other is None:
                        kept.append(g)
                    else:
                        dups.append((g, other))
            if c is not None:
                group, end = [c], c.pend
        for c, other in sorted(dups, key=lambda d: (d[0].ino, d[0].chain_idx, d[0].lblk)):
            self._clone(c, other)

    def _clone(self, c: _Claim, other: _Claim) -> None:
        node = self.inodes[c.ino]
        goal = node.inode.extents[0].pblk if node.inode.extents else None
        runs = self._alloc(c.length, goal)
        message = (f"Inode {c.ino}: {c.what()} multiply-claimed (also inode {other.ino}'s "
                   f"{'extent block' if other.chain_idx >= 0 else 'data'})")
        self.dirty_inodes.add(c.ino)
        if c.chain_idx >= 0:
            if runs is None:
                self.problem(message + "; no room for a copy", "Drop the chain block")
                del node.chain[c.chain_idx:]
                del node.inode.extents[INLINE_EXTENTS + c.chain_idx * EXTENTS_PER_BLOCK:]
                return
            self.problem(message, "Clone multiply-claimed blocks")
            node.chain[c.chain_idx] = runs[0][0]  # _store writes the chain anew
            return
        exts = node.inode.extents
        ext.remove(exts, c.lblk, c.length)
        if runs is None:
            self.problem(message + "; no room for a copy", "Remove the extent")
            return
        self.problem(message, "Clone multiply-claimed blocks")
        at, src = c.lblk, c.pblk
        for b, n in runs:
            self._copy(src, b, n, node.inode.is_dir)
            ext.insert(exts, Extent(at, b, n))
            at, src = at + n, src + n

    def _copy(self, src: int, dst: int, n: int, through_cache: bool) -> None:
        """Copy ``n`` blocks: a directory's through the cache (pass 2 reads them);
        file data straight to the device, and only when repairing (fsck never reads it)."""
        if through_cache:
            for i in range(n):
                self.put(dst + i, bytes(self.block(src + i, "directory block")))
            return
        if not self.repair:
            return
        step = 256
        for i in range(0, n, step):
            k = min(step, n - i)
            try:
                data = self.disk.read((src + i) * BLOCK, k * BLOCK)
            except MediaError:
                data = bytes(k * BLOCK)
            self.disk.write((dst + i) * BLOCK, data)

    # -- pass 2: directory structure ---------------------------------------------------------

    def pass2(self) -> None:
        self.phase = 2
        for ino in sorted(i for i, n in self.inodes.items() if n.inode.is_dir):
            d = self._load_dir(ino)
            if d is not None:
                self.dirs[ino] = d
        refs: dict[int, list[tuple[int, int]]] = {}
        for ino in sorted(self.dirs):
            self._check_entries(self.dirs[ino], refs)
        for target in sorted(refs):
            named = refs[target]
            dd = self.dirs[target].dotdot
            keep = next(((p, s) for p, s in named if p == dd), named[0])
            for p, s in named:
                if (p, s) != keep:
                    e = self.dirs[p].slots[s]
                    assert e is not None
                    self.problem(f"Entry '{e.name}' in directory inode {p} (slot {s}) is a "
                                 f"second link to directory inode {target}", "Clear")
                    self._set_slot(self.dirs[p], s, None)
            self.dirs[target].parent, self.dirs[target].parent_slot = keep
        self.commit()

    def _load_dir(self, ino: int) -> _Dir | None:
        node = self.inodes[ino]
        inode = node.inode
        if not inode.extents:
            runs = self._alloc(1)
            if runs is None:
                self.problem(f"Directory inode {ino} has no blocks, and there is no free "
                             "block for one", "Clear")
                self._clear(ino)
                return None
            self.problem(f"Directory inode {ino} has no blocks", "Allocate one")
            inode.extents.append(Extent(0, runs[0][0], 1))
            inode.size = BLOCK
            self.dirty_inodes.add(ino)
            self.put(runs[0][0], bytes(BLOCK))
        d = _Dir(ino, [])
        damaged = []
        for e in inode.extents:
            for k in range(e.length):
                lblk = e.lblk + k
                raw = self.block(e.pblk + k, "directory block")
                slots, bad = self._decode_block(ino, lblk, raw)
                d.slots += slots
                if bad:
                    damaged.append(lblk)
        for lblk in damaged:
            self._set_slot(d, lblk * DIRENTS_PER_BLOCK, d.slots[lblk * DIRENTS_PER_BLOCK])
        return d

    def _decode_block(self, ino: int, lblk: int, raw: bytearray
                      ) -> tuple[list[Dirent | None], bool]:
        """The slots of one directory block, damaged entries cleared (and reported)."""
        try:
            whole: list[Dirent | None] | None = decode_dirents(raw)
        except CorruptMetadata:
            whole = None
        out: list[Dirent | None] = []
        bad = False
        pad = bytes(BLOCK - DIRENT_SIZE)
        for i in range(DIRENTS_PER_BLOCK):
            one = bytes(raw[i * DIRENT_SIZE:(i + 1) * DIRENT_SIZE])
            where = f"directory inode {ino}, block #{lblk}, entry {i}"
            if whole is not None:
                e = whole[i]
            else:
                try:
                    e = decode_dirents(one + pad)[0]
                except CorruptMetadata as exc:
                    self.problem(f"Entry in {where} is damaged ({exc.message})", "Clear")
                    out.append(None)
                    bad = True
                    continue
            if e is not None:
                n = _DIRENT_HEAD + len(e.name.encode())
                if e.encode()[:n] != one[:n]:
                    self.problem(f"Entry in {where} has a name that is not valid UTF-8",
                                 "Clear")
                    e, bad = None, True
            out.append(e)
        return out, bad

    def _entry_problem(self, d: _Dir, e: Dirent, names: set[str]) -> str:
        if e.name in (".", ".."):
            return f"is a '{e.name}' entry out of place"
        try:
            check_name(e.name)
        except NvdimmError:
            return "has an invalid name"
        if not 1 <= e.ino < self.sb.inodes:
            return f"has bad inode #{e.ino}"
        if e.ino not in self.inodes:
            return f"has deleted/unused inode {e.ino}"
        if e.ino == self.sb.root_ino:
            return "is a link to the root directory"
        if e.ino == d.ino:
            return "is a link to its own directory"
        if e.name in names:
            return "is a duplicate entry"
        return ""

    def _check_entries(self, d: _Dir, refs: dict[int, list[tuple[int, int]]]) -> None:
        ino = d.ino
        displaced: list[Dirent] = []
        e0 = d.slots[0]
        if e0 is None or e0.name != ".":
            if e0 is not None:
                displaced.append(e0)
            self.problem(f"Missing '.' in directory inode {ino}", "Fix")
            self._set_slot(d, 0, Dirent(ino, ".", FT_DIR))
        elif e0.ino != ino or e0.ftype != FT_DIR:
            self.problem(f"'.' in directory inode {ino} names inode {e0.ino}", "Fix")
            self._set_slot(d, 0, Dirent(ino, ".", FT_DIR))
        e1 = d.slots[1]
        if e1 is None or e1.name != "..":
            if e1 is not None:
                displaced.append(e1)
            self.problem(f"Missing '..' in directory inode {ino}", "Fix")
            d.dotdot_pending = True
            self._set_slot(d, 1, Dirent(ino, "..", FT_DIR))  # the parent, in pass 3
        names: set[str] = set()
        todo: list[tuple[int | None, Dirent]] = [*d.entries(), *((None, e) for e in displaced)]
        for s, e in todo:
            at = f"slot {s}" if s is not None else "displaced from slot 0 or 1"
            why = self._entry_problem(d, e, names)
            if why:
                self.problem(f"Entry '{e.name}' in directory inode {ino} ({at}) {why}",
                             "Clear")
                if s is not None:
                    self._set_slot(d, s, None)
                continue
            target = self.inodes[e.ino].inode
            want = FT_DIR if target.is_dir else FT_REG
            if e.ftype != want:
                self.problem(f"Entry '{e.name}' in directory inode {ino} ({at}) has an "
                             f"incorrect filetype (was {e.ftype}, should be {want})", "Fix")
                e = Dirent(e.ino, e.name, want)
                if s is not None:
                    self._set_slot(d, s, e)
            if s is None:
                s = self._add_entry(d, e.name, e.ino, e.ftype)
                if s is None:
                    self.problem(f"Entry '{e.name}' in directory inode {ino} has no free "
                                 "slot to move to", "Drop it")
                    continue
            names.add(e.name)
            if target.is_dir:
                refs.setdefault(e.ino, []).append((ino, s))

    # -- pass 3: connectivity ---------------------------------------------------------------

    def pass3(self) -> None:
        self.phase = 3
        root = self.sb.root_ino
        if root not in self.dirs:
            p = self.problem("Root inode not allocated", "Reallocate")
            self._clear(root)
            if self._new_dir(root, root, 0o755) is None:
                p.fixed = False
                self.commit()
                return
        rd = self.dirs[root]
        rd.parent = root
        done = {root}
        for ino in sorted(self.dirs):
            path: list[int] = []
            cur = ino
            while cur not in done:
                d = self.dirs[cur]
                if cur in path or d.parent is None:
                    if d.parent is None and self._orphan_dir(cur):
                        break  # pass 4 frees it
                    self._connect(cur)
                    path.append(cur)
                    break
                path.append(cur)
                cur = d.parent
            done.update(path)
        for ino in sorted(self.dirs):
            d = self.dirs[ino]
            if d.parent is None or d.dotdot == d.parent:
                continue
            if not d.dotdot_pending:
                self.problem(f"'..' in directory inode {ino} is {d.dotdot}, should be "
                             f"{d.parent}", "Fix")
            self._set_slot(d, 1, Dirent(d.parent, "..", FT_DIR))
            d.dotdot_pending = False
        self.commit()

    def _orphan_dir(self, ino: int) -> bool:
        return self.inodes[ino].inode.nlink == 0 and self.dirs[ino].is_empty()

    def _connect(self, ino: int) -> None:
        d = self.dirs[ino]
        was = "" if d.parent is None else f" (was in directory inode {d.parent})"
        p = self.problem(f"Unconnected directory inode {ino}{was}", "Connect to /lost+found")
        if d.parent is not None:  # a loop: take it out of the directory that names it
            old = self.dirs[d.parent]
            self._set_slot(old, d.parent_slot, None)
            self.inodes[old.ino].inode.nlink -= 1
            self.dirty_inodes.add(old.ino)
            d.parent = None
        self._reconnect(ino, FT_DIR, p)

    # -- pass 4: reference counts -------------------------------------------------------------

    def pass4(self) -> None:
        self.phase = 4
        self.refs.clear()
        self.subdirs.clear()
        for d in self.dirs.values():
            for _, e in d.entries():
                self.refs[e.ino] += 1
                if e.ftype == FT_DIR:
                    self.subdirs[d.ino] += 1
        root = self.sb.root_ino
        for ino in sorted(self.inodes):
            node = self.inodes.get(ino)
            if node is None:
                continue
            inode = node.inode
            if ino != root and self.refs[ino] == 0:
                if inode.nlink == 0:
                    self.problem(f"Inode {ino} has no name and a link count of 0 (an "
                                 "orphan)", "Free it")
                    self.released += [(b, 1) for b in node.chain]
                    self.released += [(e.pblk, e.length) for e in inode.extents]
                    self._clear(ino)
                    continue
                if inode.is_dir:
                    continue  # pass 3 could not connect it: reported there
                p = self.problem(f"Unattached inode {ino}", "Connect to /lost+found")
                if not self._reconnect(ino, FT_REG, p):
                    continue
            want = 2 + self.subdirs[ino] if inode.is_dir else self.refs[ino]
            if inode.nlink != want:
                self.problem(f"Inode {ino} ref count is {inode.nlink}, should be {want}",
                             "Fix")
                inode.nlink = want
                self.dirty_inodes.add(ino)
        self.commit()

    # -- pass 5: the block bitmap ---------------------------------------------------------------

    def pass5(self) -> None:
        self.phase = 5
        sb = self.sb
        want = [0] * sb.bitmap_blocks
        gone = [0] * sb.bitmap_blocks

        def mark(bits: list[int], b: int, n: int) -> None:
            while n > 0:
                idx, bit = divmod(b, BITS_PER_BLOCK)
                k = min(n, BITS_PER_BLOCK - bit)
                bits[idx] |= ((1 << k) - 1) << bit
                b, n = b + k, n - k

        mark(want, 0, sb.data_start)
        for node in self.inodes.values():
            for b in node.chain:
                mark(want, b, 1)
            for e in node.inode.extents:
                mark(want, e.pblk, e.length)
        for b, n in self.released:
            mark(gone, b, n)
        missing: list[tuple[int, int]] = []
        leaked: list[tuple[int, int]] = []
        pad_bad = False
        used = 0
        for idx in range(sb.bitmap_blocks):
            lo = idx * BITS_PER_BLOCK
            lim = max(0, min(BITS_PER_BLOCK, sb.blocks - lo))
            mask = (1 << lim) - 1
            have = self.bitmap[idx] & ~(gone[idx] & ~want[idx])
            pad = ((1 << BITS_PER_BLOCK) - 1) ^ mask
            used += (want[idx] & mask).bit_count()
            missing += [(lo + b, n) for b, n in _bit_runs(want[idx] & ~have & mask)]
            leaked += [(lo + b, n) for b, n in _bit_runs(have & ~want[idx] & mask)]
            pad_bad |= have & pad != pad
            if self.bitmap[idx] != want[idx] | pad:
                self.put(sb.bitmap_start + idx, (want[idx] | pad).to_bytes(BLOCK, "little"))
        if missing:
            n = sum(k for _, k in missing)
            self.problem(f"Block bitmap differences: {n} block(s) in use but not marked: "
                         f"{_runs_text('+', missing)}", "Fix")
        if leaked:
            n = sum(k for _, k in leaked)
            self.problem(f"Block bitmap differences: {n} block(s) marked in use but used by "
                         f"nothing (leaked): {_runs_text('-', leaked)}", "Fix")
        if pad_bad:
            self.problem("Padding at the end of the block bitmap is not set", "Fix")
        self.commit()
        self.report.files = len(self.inodes)
        self.report.blocks = used


__all__ = ["EXIT_CORRECTED", "EXIT_ERROR", "EXIT_OK", "EXIT_UNCORRECTED", "FsckReport",
           "Problem", "fsck"]
