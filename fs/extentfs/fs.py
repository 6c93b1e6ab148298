"""A mounted extentfs: inodes, directories, the buffered and DAX data paths, commit.

What a crash leaves (the contract tests/test_extentfs_crash.py checks):

* **fsync'd data and metadata survive any crash.** ``fsync(f)`` writes ``f``'s dirty
  pages (buffered) or its mappings' dirty cache lines (DAX), then commits the running
  transaction, which carries *every* metadata change made so far (ext4 does the same);
  ``sync``/``unmount`` commit too.
* **Metadata is atomic per commit.** After a crash the namespace, sizes and extent maps
  are exactly those of the last commit: a create, unlink or rename that was not
  committed is gone whole; a rename is never half done. After an unclean shutdown the
  mount replays the journal and frees orphans (inodes with no name left).
* **Ordered data.** Before a commit, the data of every inode the transaction touches is
  written and flushed, so committed metadata never points at blocks whose data was not
  written: no stale data from another file, ever. Blocks freed by a transaction are not
  reused until it commits.
* **Not fsync'd, not promised.** A write that was not fsync'd may be lost. An overwrite
  of blocks that were already allocated goes to them in place (DAX: at once; buffered:
  at writeback), so after a crash such a range may hold old bytes, new bytes or a mix
  (DAX: any 8-byte word old or new, per the platform's persistence rule).

Commits happen on fsync, fdatasync (when the size or extent map changed), sync,
unmount, when the running transaction nears the journal's capacity, and when an
allocation needs blocks only a commit frees (ENOSPC otherwise). Without them nothing is
committed: the model has no timer (the kernel's jbd2 commits every 5 s).

Limits, where they differ from a kernel filesystem: names of at most 58 bytes; no hard
links or symlinks; a read fault on a DAX hole maps a 4 KiB zero page (there is no huge
zero page), so a hole read before it is written may end up with 4 KiB entries; one
operation that dirties more metadata blocks than one transaction holds (at most 509:
e.g. freeing a file spread over more than 508 bitmap blocks, 63 GiB apart) is committed
in pieces, so a crash can show it half done (fsck repairs the leaked blocks).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import attrs

from block.genhd import Gendisk
from fs.errors import (
    Exists,
    FileTooBig,
    IsADirectory,
    NoEntry,
    NotADirectory,
    NotEmpty,
)
from fs.extentfs import extents as ext
from fs.extentfs import journal as jrnl
from fs.extentfs.bitmap import Allocator
from fs.extentfs.layout import (
    BLOCK,
    DATA_ALIGN_BLOCKS,
    DIRENT_SIZE,
    DIRENTS_PER_BLOCK,
    EXTENTS_PER_BLOCK,
    FT_DIR,
    FT_REG,
    INLINE_EXTENTS,
    INODE_DAX,
    INODE_SIZE,
    INODES_PER_BLOCK,
    S_IFDIR,
    S_IFREG,
    STATE_CLEAN,
    STATE_MOUNTED,
    Dirent,
    Extent,
    Inode,
    Superblock,
    check_name,
    decode_dirents,
    decode_extent_block,
    decode_inode,
    encode_extent_block,
    encode_inode,
    slot_generation,
    slot_in_use,
)
from mm.pagecache import PageCache
from nvdimm.errors import (
    Busy,
    CorruptMetadata,
    InvalidArgument,
    MediaError,
    NoSpace,
    NotSupported,
    NvdimmError,
)
from nvdimm.metrics import Metrics
from nvdimm.trace import Trace

if TYPE_CHECKING:
    from fs.extentfs.mapping import FileMapping
    from mm.page import Page
    from mm.process import MemorySystem

PMD_BLOCKS = DATA_ALIGN_BLOCKS
#: Largest file: the extent's logical block is 32 bits.
MAX_FILE_SIZE = (1 << 32) * BLOCK
DAX_MODES = ("always", "never", "inode")
BUSY_CONTRACTS = ("wait", "fail")


@attrs.define(slots=True, eq=False)
class Leaf:
    """One page-table leaf a fault of this file installed (for unmap and fsync)."""

    mm: Any
    base: int
    size: int
    lblk: int
    hold: Any = None  # the DaxExtent held from the provider, if it tracks lifetimes


@attrs.define(slots=True, eq=False)
class InodeState:
    """The in-memory inode (``struct inode`` plus extentfs's part)."""

    inode: Inode
    chain: list[int] = attrs.field(factory=list)  # overflow extent blocks on media
    dax: bool = False
    cache: PageCache | None = None
    opens: int = 0
    vmas: int = 0  # VMAs mapping the file: they keep it alive
    leaves: dict[tuple[int, int], Leaf] = attrs.field(factory=dict)  # (pid, base)
    # DAX: (pfn, size) of dirty leaves unmapped before an fsync wrote them back
    unsynced: list[tuple[int, int]] = attrs.field(factory=list)
    mapping: FileMapping | None = None
    datasync_dirty: bool = False  # size or extents changed since the last commit
    # DAX: blocks allocated since the last commit, whose mappings' dirty lines the commit
    # writes back first (a buffered inode's ordered data is simply its dirty pages)
    ordered: bool = False

    @property
    def ino(self) -> int:
        return self.inode.ino


@attrs.define(slots=True, eq=False)
class ExtentFs:
    """One mounted extentfs. Build it with :func:`mount`."""

    disk: Gendisk
    sb: Superblock
    mm: MemorySystem
    metrics: Metrics
    trace: Trace
    dax_mode: str = "never"
    provider: Any = None  # a DirectAccess when DAX is possible on this device
    busy_contract: str = "wait"
    name: str = "extentfs"
    journal: jrnl.Journal = attrs.field(init=False)
    alloc: Allocator = attrs.field(init=False)
    inodes: dict[int, InodeState] = attrs.field(init=False, factory=dict)
    meta: dict[int, bytearray] = attrs.field(init=False, factory=dict)
    dirty_meta: set[int] = attrs.field(init=False, factory=set)
    dirty_inodes: set[int] = attrs.field(init=False, factory=set)
    dirs: dict[int, dict[str, tuple[int, int, int]]] = attrs.field(init=False, factory=dict)
    #: What a truncate waiting for pinned pages lets run (another thread finishing its
    #: DMA); None: nothing will, so waiting would never end.
    while_waiting: Callable[[list[Page]], None] | None = None
    mounted: bool = attrs.field(init=False, default=True)
    orphans_freed: int = attrs.field(init=False, default=0)
    replayed: int = attrs.field(init=False, default=0)
    _clock: Iterator[int] = attrs.field(init=False, factory=lambda: itertools.count(1))
    _ino_hint: int = attrs.field(init=False, default=2)
    _base_pfn: int | None = attrs.field(init=False, default=None)
    _committing: bool = attrs.field(init=False, default=False)
    _in_writeback: bool = attrs.field(init=False, default=False)
    #: The DAX provider's pfns have struct pages (they can be pinned for DMA).
    dax_has_pages: bool = attrs.field(init=False, default=False)

    # -- metadata blocks ---------------------------------------------------------------

    def _read_meta(self, block: int) -> bytearray:
        buf = self.meta.get(block)
        if buf is None:
            buf = bytearray(self.disk.read(block * BLOCK, BLOCK))
            self.meta[block] = buf
        return buf

    def _dirty(self, block: int) -> bytearray:
        buf = self._read_meta(block)
        self.dirty_meta.add(block)
        return buf

    def now(self) -> int:
        return next(self._clock)

    def _count(self, key: str, n: int = 1) -> None:
        self.metrics.c[key] += n

    def _event(self, event: str, **fields: Any) -> None:
        if self.trace.on:
            self.trace.emit(event, fs=self.name, **fields)

    # -- inodes ---------------------------------------------------------------------------

    def iget(self, ino: int) -> InodeState:
        st = self.inodes.get(ino)
        if st is not None:
            return st
        block, off = self.sb.inode_location(ino)
        raw = self._read_meta(block)[off:off + INODE_SIZE]
        inode, more = decode_inode(ino, raw)
        if not inode.in_use:
            raise NoEntry(f"inode {ino} is not in use")
        chain: list[int] = []
        nxt = inode.overflow
        while more > 0:
            if not self.sb.data_start <= nxt < self.sb.blocks or nxt in chain:
                raise MediaError(f"inode {ino}: extent chain points at block {nxt}", 0, 0)
            got, after = decode_extent_block(nxt, self._read_meta(nxt))
            chain.append(nxt)
            inode.extents.extend(got)
            more -= len(got)
            nxt = after
        st = InodeState(inode, chain)
        self._setup_data_path(st)
        self.inodes[ino] = st
        return st

    def _setup_data_path(self, st: InodeState) -> None:
        ino = st.inode
        st.dax = ino.is_reg and self.provider is not None and (
            self.dax_mode == "always" or (self.dax_mode == "inode" and bool(ino.flags & INODE_DAX)))
        if ino.is_reg and not st.dax and st.cache is None:
            st.cache = PageCache(self.disk, self.mm.pages, self.metrics, self.trace,
                                 blocks=_InodeBlocks(self, st), size=MAX_FILE_SIZE,
                                 name=f"{self.name}:{ino.ino}")

    def mapping_of(self, ino: int) -> FileMapping:
        """The VmOps a mapping of file ``ino`` carries (one per inode)."""
        st = self.iget(ino)
        if st.mapping is None:
            from fs.extentfs.mapping import FileMapping

            st.mapping = FileMapping(self, st)
        return st.mapping

    def _writeback(self, st: InodeState) -> None:
        """A buffered file's dirty pages to disk; its mapped leaves go, so the next store
        through a mapping faults and dirties the page again (page_mkclean)."""
        cache = st.cache
        assert cache is not None
        if not cache.nr_dirty:
            return
        if self.alloc.pending and not self._committing:
            # Delayed allocation happens inside the writeback, after which the data
            # goes out: if it needs blocks only a commit frees, commit first.
            holes = sum(1 for i in cache.dirty_indices() if self.bmap(st, i)[0] is None)
            if holes > self.alloc.available():
                self._count("fs.enospc_commits")
                self._commit_metadata()
        self._in_writeback = True
        try:
            cache.writeback()
        finally:
            self._in_writeback = False
        if st.leaves:
            self.unmap_range(st, 0, None)

    def _mark(self, st: InodeState, *, datasync: bool = True) -> None:
        self.dirty_inodes.add(st.ino)
        if datasync:
            st.datasync_dirty = True

    def _alloc_ino(self) -> int:
        limit = self.sb.inodes
        for start, stop in ((self._ino_hint, limit), (2, self._ino_hint)):
            ino = start
            while ino < stop:
                if ino in self.inodes:
                    ino += 1
                    continue
                block, _ = self.sb.inode_location(ino)
                buf = self._read_meta(block)
                # scan this table block's slots
                slot_end = min(stop, (ino // INODES_PER_BLOCK + 1) * INODES_PER_BLOCK)
                while ino < slot_end:
                    o = (ino % INODES_PER_BLOCK) * INODE_SIZE
                    if ino not in self.inodes and not slot_in_use(buf[o:o + INODE_SIZE]):
                        self._ino_hint = ino + 1
                        return ino
                    ino += 1
        raise NoSpace(f"{self.name}: no free inode (all {limit - 1} in use)")

    def _new_inode(self, mode: int, *, flags: int = 0) -> InodeState:
        ino = self._alloc_ino()
        t = self.now()
        block, off = self.sb.inode_location(ino)
        gen = slot_generation(self._read_meta(block)[off:off + INODE_SIZE]) + 1
        inode = Inode(ino, mode, flags, 0, 0, t, t, gen & 0xFFFFFFFF)
        st = InodeState(inode)
        self._setup_data_path(st)
        self.inodes[ino] = st
        self._mark(st)
        return st

    def _store_inode(self, st: InodeState) -> None:
        """Encode ``st`` into its inode table block (and its extent chain), as dirty
        metadata of the running transaction."""
        inode = st.inode
        if not inode.in_use:
            # A free slot keeps its generation, so the next user of the inode number
            # gets a new one (NFS file handles tell the two apart).
            block, off = self.sb.inode_location(inode.ino)
            buf = self._dirty(block)
            buf[off:off + INODE_SIZE] = encode_inode(Inode(inode.ino,
                                                           generation=inode.generation))
            for b in st.chain:
                self.alloc.free(b, 1)
            st.chain = []
            return
        over = inode.extents[INLINE_EXTENTS:]
        need = -(-len(over) // EXTENTS_PER_BLOCK)
        while len(st.chain) > need:
            self.alloc.free(st.chain.pop(), 1)
        if len(st.chain) < need:
            goal = inode.extents[0].pblk if inode.extents else None
            for b, n in self.alloc.alloc(need - len(st.chain), goal):
                st.chain.extend(range(b, b + n))
        for i, b in enumerate(st.chain):
            part = over[i * EXTENTS_PER_BLOCK:(i + 1) * EXTENTS_PER_BLOCK]
            nxt = st.chain[i + 1] if i + 1 < len(st.chain) else 0
            self.meta[b] = bytearray(encode_extent_block(part, nxt))
            self.dirty_meta.add(b)
        inode.overflow = st.chain[0] if st.chain else 0
        block, off = self.sb.inode_location(inode.ino)
        buf = self._dirty(block)
        buf[off:off + INODE_SIZE] = encode_inode(inode)

    # -- directories ---------------------------------------------------------------------

    def _dir(self, st: InodeState) -> dict[str, tuple[int, int, int]]:
        """name -> (ino, ftype, slot) of directory ``st`` ('.' and '..' included)."""
        d = self.dirs.get(st.ino)
        if d is not None:
            return d
        if not st.inode.is_dir:
            raise NotADirectory(f"inode {st.ino} is not a directory")
        d = {}
        for i in range(st.inode.size // BLOCK):
            pblk, _ = ext.lookup(st.inode.extents, i)
            if pblk is None:
                raise MediaError(f"directory {st.ino}: block {i} is a hole", 0, 0)
            for j, ent in enumerate(decode_dirents(self._read_meta(pblk))):
                if ent is not None:
                    d[ent.name] = (ent.ino, ent.ftype, i * DIRENTS_PER_BLOCK + j)
        self.dirs[st.ino] = d
        return d

    def _dir_slot_block(self, dir_st: InodeState, slot: int) -> tuple[int, int]:
        lblk, j = divmod(slot, DIRENTS_PER_BLOCK)
        pblk, _ = ext.lookup(dir_st.inode.extents, lblk)
        assert pblk is not None
        return pblk, j * DIRENT_SIZE

    def _dir_add(self, dir_st: InodeState, name: str, ino: int, ftype: int) -> None:
        d = self._dir(dir_st)
        used = {s for _, _, s in d.values()}
        nslots = dir_st.inode.size // BLOCK * DIRENTS_PER_BLOCK
        slot = next((s for s in range(nslots) if s not in used), None)
        if slot is None:  # grow the directory by a block
            lblk = dir_st.inode.size // BLOCK
            goal = dir_st.inode.extents[-1].pend if dir_st.inode.extents else None
            (b, _), = self.alloc.alloc(1, goal)
            self.meta[b] = bytearray(BLOCK)
            self.dirty_meta.add(b)
            ext.insert(dir_st.inode.extents, Extent(lblk, b, 1))
            dir_st.inode.size += BLOCK
            slot = lblk * DIRENTS_PER_BLOCK
        self._dir_write(dir_st, slot, Dirent(ino, name, ftype))
        d[name] = (ino, ftype, slot)
        t = self.now()
        dir_st.inode.mtime = dir_st.inode.ctime = t

    def _dir_write(self, dir_st: InodeState, slot: int, ent: Dirent | None) -> None:
        """Write directory slot ``slot`` (None: free it) as dirty metadata."""
        pblk, off = self._dir_slot_block(dir_st, slot)
        self._dirty(pblk)[off:off + DIRENT_SIZE] = (bytes(DIRENT_SIZE) if ent is None
                                                     else ent.encode())
        self._mark(dir_st)

    def _dir_remove(self, dir_st: InodeState, name: str) -> None:
        _, _, slot = self._dir(dir_st).pop(name)
        self._dir_write(dir_st, slot, None)
        t = self.now()
        dir_st.inode.mtime = dir_st.inode.ctime = t

    def _dir_set(self, dir_st: InodeState, name: str, ino: int, ftype: int) -> None:
        d = self._dir(dir_st)
        _, _, slot = d[name]
        self._dir_write(dir_st, slot, Dirent(ino, name, ftype))
        d[name] = (ino, ftype, slot)

    def lookup(self, dir_ino: int, name: str) -> int:
        d = self._dir(self.iget(dir_ino))
        hit = d.get(name)
        if hit is None:
            raise NoEntry(f"{name!r}: no such file or directory")
        return hit[0]

    def readdir(self, dir_ino: int) -> list[tuple[str, int, int]]:
        """(name, ino, ftype) of each entry, '.' and '..' left out, in slot order."""
        d = self._dir(self.iget(dir_ino))
        return [(n, i, t) for n, (i, t, _) in sorted(d.items(), key=lambda kv: kv[1][2])
                if n not in (".", "..")]

    # -- namespace operations --------------------------------------------------------------

    def _begin(self) -> None:
        """Start a metadata operation: commit first when the running transaction could
        otherwise outgrow the journal."""
        if not self.mounted:
            raise InvalidArgument(f"{self.name} is not mounted")
        if self._tx_estimate() > self.journal.capacity // 2:
            self.commit()

    def _tx_estimate(self) -> int:
        """An estimate of the running transaction's blocks, in O(1): each dirty inode
        counts its table block and one extent block (a longer chain is rare, and an
        oversized commit still works, in pieces)."""
        return len(self.dirty_meta) + len(self.alloc.dirty) + 2 * len(self.dirty_inodes)

    def create(self, dir_ino: int, name: str, mode: int = 0o644, *,
               dax_flag: bool = False) -> int:
        self._begin()
        check_name(name)
        dir_st = self.iget(dir_ino)
        if name in self._dir(dir_st):
            raise Exists(f"{name!r} exists")
        st = self._new_inode(S_IFREG | (mode & 0o7777), flags=INODE_DAX if dax_flag else 0)
        st.inode.nlink = 1
        self._dir_add(dir_st, name, st.ino, FT_REG)
        self._count("fs.creates")
        self._event("fs.create", ino=st.ino, file=name, dax=st.dax)
        return st.ino

    def mkdir(self, dir_ino: int, name: str, mode: int = 0o755) -> int:
        self._begin()
        check_name(name)
        parent = self.iget(dir_ino)
        if name in self._dir(parent):
            raise Exists(f"{name!r} exists")
        st = self._new_inode(S_IFDIR | (mode & 0o7777))
        st.inode.nlink = 2
        self.dirs[st.ino] = {}
        self._dir_add(st, ".", st.ino, FT_DIR)
        self._dir_add(st, "..", parent.ino, FT_DIR)
        self._dir_add(parent, name, st.ino, FT_DIR)
        parent.inode.nlink += 1
        self._count("fs.mkdirs")
        return st.ino

    def unlink(self, dir_ino: int, name: str) -> None:
        self._begin()
        dir_st = self.iget(dir_ino)
        ino = self.lookup(dir_ino, name)
        st = self.iget(ino)
        if st.inode.is_dir:
            raise IsADirectory(f"{name!r} is a directory: use rmdir")
        self._dir_remove(dir_st, name)
        st.inode.nlink -= 1
        st.inode.ctime = self.now()
        self._mark(st)
        self._count("fs.unlinks")
        self._maybe_evict(st)

    def rmdir(self, dir_ino: int, name: str) -> None:
        self._begin()
        parent = self.iget(dir_ino)
        ino = self.lookup(dir_ino, name)
        st = self.iget(ino)
        if not st.inode.is_dir:
            raise NotADirectory(f"{name!r} is not a directory")
        if len(self._dir(st)) > 2:
            raise NotEmpty(f"{name!r} is not empty")
        self._dir_remove(parent, name)
        parent.inode.nlink -= 1
        st.inode.nlink = 0
        self._mark(st)
        self._maybe_evict(st)

    def is_ancestor(self, a: int, b: int) -> bool:
        """Whether directory ``a`` is ``b`` or above it."""
        seen = set()
        while b not in seen:
            if a == b:
                return True
            seen.add(b)
            b = self._dir(self.iget(b))[".."][0]
        return False

    def rename(self, old_dir: int, old_name: str, new_dir: int, new_name: str) -> None:
        """rename(2) within this filesystem: one transaction, so a crash shows the old
        name or the new one, never both or neither."""
        self._begin()
        check_name(new_name)
        src_dir, dst_dir = self.iget(old_dir), self.iget(new_dir)
        ino = self.lookup(old_dir, old_name)
        st = self.iget(ino)
        if old_dir == new_dir and old_name == new_name:
            return
        if st.inode.is_dir and self.is_ancestor(ino, new_dir):
            raise InvalidArgument(f"cannot move directory {old_name!r} inside itself")
        dst = self._dir(dst_dir).get(new_name)
        if dst is not None:
            victim = self.iget(dst[0])
            if victim.ino == ino:
                return  # two links to one file: POSIX says do nothing
            if st.inode.is_dir and not victim.inode.is_dir:
                raise NotADirectory(f"{new_name!r} is not a directory")
            if not st.inode.is_dir and victim.inode.is_dir:
                raise IsADirectory(f"{new_name!r} is a directory")
            if victim.inode.is_dir and len(self._dir(victim)) > 2:
                raise NotEmpty(f"{new_name!r} is not empty")
        ftype = FT_DIR if st.inode.is_dir else FT_REG
        if dst is not None:
            victim = self.iget(dst[0])
            self._dir_set(dst_dir, new_name, ino, ftype)
            if victim.inode.is_dir:
                victim.inode.nlink = 0
                dst_dir.inode.nlink -= 1
            else:
                victim.inode.nlink -= 1
            self._mark(victim)
        else:
            self._dir_add(dst_dir, new_name, ino, ftype)
        self._dir_remove(src_dir, old_name)
        if st.inode.is_dir and old_dir != new_dir:
            self._dir_set(st, "..", new_dir, FT_DIR)
            src_dir.inode.nlink -= 1
            dst_dir.inode.nlink += 1
        st.inode.ctime = self.now()
        self._mark(st)
        self._count("fs.renames")
        if dst is not None:
            self._maybe_evict(self.iget(dst[0]))

    def _maybe_evict(self, st: InodeState) -> None:
        """The last name and the last user are gone: free the blocks and the inode."""
        if st.inode.nlink > 0 or st.opens > 0 or st.vmas > 0 or st.leaves:
            return
        self._truncate_blocks(st, 0)
        if st.cache is not None:
            st.cache.truncate_range(0)
        st.inode.mode = 0
        self._mark(st)
        self.dirs.pop(st.ino, None)
        self._count("fs.inodes_freed")

    def opened(self, ino: int) -> None:
        self.iget(ino).opens += 1

    def released(self, ino: int) -> None:
        st = self.iget(ino)
        st.opens -= 1
        if st.inode.nlink == 0:
            self._begin()
            self._maybe_evict(st)

    def set_dax_flag(self, ino: int, on: bool) -> None:
        """FS_XFLAG_DAX (``chattr +x``): honoured by ``dax=inode`` mounts. Takes effect at
        once on a file nobody has open or mapped (the kernel waits for the inode to be
        evicted): its cached pages are written back and dropped first."""
        st = self.iget(ino)
        if not st.inode.is_reg:
            raise InvalidArgument("the DAX flag is for regular files")
        if st.leaves or st.opens or st.vmas:
            raise Busy(f"inode {ino} is open or mapped: close and unmap it first")
        self._begin()
        if st.cache is not None:
            self._writeback(st)
            self._flush_data()
            st.cache.invalidate()
            st.cache = None
        st.inode.flags = (st.inode.flags | INODE_DAX) if on else (st.inode.flags & ~INODE_DAX)
        self._mark(st)
        self._setup_data_path(st)

    # -- block mapping (iomap) ---------------------------------------------------------

    def bmap(self, st: InodeState, lblk: int) -> tuple[int | None, int]:
        return ext.lookup(st.inode.extents, lblk)

    def _allocate(self, st: InodeState, lblk: int, count: int) -> list[Extent]:
        """Map file blocks ``[lblk, +count)`` (all holes) to newly allocated blocks."""
        if lblk + count > MAX_FILE_SIZE // BLOCK:
            raise FileTooBig(f"{self.name}: file block {lblk + count} is past the largest "
                             f"file ({MAX_FILE_SIZE >> 40} TiB)")
        pblk, _ = ext.lookup(st.inode.extents, lblk - 1) if lblk else (None, 0)
        goal = pblk + 1 if pblk is not None else None
        out = []
        at = lblk
        try:
            runs = self.alloc.alloc(count, goal)
        except NoSpace:
            if not self.alloc.pending or self._committing or self._in_writeback:
                raise
            # Blocks freed by the running transaction become usable once it commits
            # (ext4 commits and retries the same way).
            self._count("fs.enospc_commits")
            self._commit_metadata()
            runs = self.alloc.alloc(count, goal)
        if st.dax and st.leaves:
            self._unmap_zero_leaves(st, lblk, lblk + count)
        for b, n in runs:
            e = Extent(at, b, n)
            ext.insert(st.inode.extents, e)
            out.append(e)
            at += n
        self._mark(st)
        st.ordered = True
        self._count("fs.blocks_allocated", count)
        self._event("fs.alloc", ino=st.ino, lblk=lblk, blocks=count,
                    runs=[(e.pblk, e.length) for e in out])
        return out

    # -- data: read and write -----------------------------------------------------------

    def size(self, ino: int) -> int:
        return self.iget(ino).inode.size

    def read(self, ino: int, offset: int, n: int) -> bytes:
        st = self.iget(ino)
        if st.inode.is_dir:
            raise IsADirectory(f"inode {ino} is a directory")
        if offset < 0 or n < 0:
            raise InvalidArgument(f"read of {n} bytes at {offset}")
        n = max(0, min(n, st.inode.size - offset))
        if n == 0:
            return b""
        self._count("fs.reads")
        self._count("fs.bytes_read", n)
        if st.dax:
            return self._dax_read(st, offset, n)
        assert st.cache is not None
        return st.cache.read(offset, n)

    def write(self, ino: int, offset: int, data: bytes | bytearray | memoryview) -> int:
        st = self.iget(ino)
        if st.inode.is_dir:
            raise IsADirectory(f"inode {ino} is a directory")
        n = len(data)
        if offset < 0:
            raise InvalidArgument(f"write at offset {offset}")
        if offset + n > MAX_FILE_SIZE:
            raise FileTooBig(f"{self.name}: a write to {offset + n} is past the largest file")
        self._begin()
        if n == 0:
            return 0
        self._event("fs.write", ino=ino, offset=offset, len=n, path="dax" if st.dax else "buffered")
        self._zero_gap(st, st.inode.size, offset)
        if st.dax:
            self._dax_write(st, offset, data)
        else:
            assert st.cache is not None
            st.cache.write(offset, data)
        if offset + n > st.inode.size:
            st.inode.size = offset + n
            self._mark(st)
        else:
            self._mark(st, datasync=False)
        st.inode.mtime = st.inode.ctime = self.now()
        self._count("fs.writes")
        self._count("fs.bytes_written", n)
        return n

    def _dax_read(self, st: InodeState, offset: int, n: int) -> bytes:
        out = bytearray()
        end = offset + n
        a = offset
        while a < end:
            lblk, inner = divmod(a, BLOCK)
            pblk, run = self.bmap(st, lblk)
            span = (run or (end - a + inner + BLOCK - 1) // BLOCK) * BLOCK - inner
            take = min(end - a, span)
            if pblk is None:
                out += bytes(take)
            else:
                got = self.provider.read(pblk * BLOCK + inner, take)
                out += got
                self._count("fs.dax.copies_out", len(got))
                if len(got) < take:  # poison: a short read, or EIO if nothing was read
                    if not out:
                        raise MediaError(f"{self.name}: inode {st.ino}: media error at "
                                         f"file byte {a}", pblk * BLOCK + inner, take)
                    return bytes(out)
            a += take
        return bytes(out)

    def _dax_write(self, st: InodeState, offset: int, data: bytes | bytearray | memoryview) -> None:
        mv = memoryview(data)
        n = len(mv)
        end = offset + n
        first, last = offset // BLOCK, (end - 1) // BLOCK
        # allocate the holes first (zeroing the parts of new blocks the data leaves)
        lblk = first
        while lblk <= last:
            pblk, run = self.bmap(st, lblk)
            if run == 0:
                run = last - lblk + 1
            run = min(run, last - lblk + 1)
            if pblk is None:
                for e in self._allocate(st, lblk, run):
                    self._zero_new(e, offset, end)
            lblk += run
        a = offset
        while a < end:
            lblk, inner = divmod(a, BLOCK)
            pblk, run = self.bmap(st, lblk)
            assert pblk is not None
            take = min(end - a, run * BLOCK - inner)
            self.provider.write(pblk * BLOCK + inner, mv[a - offset:a - offset + take])
            self._count("fs.dax.copies_in", take)
            a += take

    def _dax_zero(self, offset: int, n: int) -> None:
        """Zero device bytes: whole pages with the provider's zero helper, the rest by
        writing zeroes (dax_zero_page_range only takes pages)."""
        lo = -(-offset // BLOCK) * BLOCK
        hi = (offset + n) // BLOCK * BLOCK
        if lo >= hi:
            self.provider.write(offset, bytes(n))
            return
        if offset < lo:
            self.provider.write(offset, bytes(lo - offset))
        self.provider.zero(lo, hi - lo)
        if hi < offset + n:
            self.provider.write(hi, bytes(offset + n - hi))

    def _zero_new(self, e: Extent, start: int, end: int) -> None:
        """Zero the parts of a newly allocated extent that ``[start, end)`` leaves, so
        no old bytes of a freed block can show through (IOMAP_F_NEW)."""
        lo, hi = e.lblk * BLOCK, e.lend * BLOCK
        dev = e.pblk * BLOCK - lo
        if start > lo:
            self._dax_zero(lo + dev, min(start, hi) - lo)
        if end < hi:
            z = max(end, lo)
            self._dax_zero(z + dev, hi - z)

    # -- truncate, punch, fallocate ----------------------------------------------------

    def truncate(self, ino: int, size: int) -> None:
        st = self.iget(ino)
        if not st.inode.is_reg:
            raise IsADirectory(f"inode {ino} is not a regular file")
        if size < 0:
            raise InvalidArgument(f"truncate to {size}")
        if size > MAX_FILE_SIZE:
            raise FileTooBig(f"truncate to {size} is past the largest file")
        self._begin()
        old = st.inode.size
        self._zero_gap(st, old, size)
        if size < old:
            keep = -(-size // BLOCK)
            self._break_layouts(st, keep, None)
            self._zero_tail(st, size)
            if st.cache is not None:
                st.cache.truncate_range(size)
            self._truncate_blocks(st, keep)
        st.inode.size = size
        st.inode.mtime = st.inode.ctime = self.now()
        self._mark(st)
        self._count("fs.truncates")

    def _zero_gap(self, st: InodeState, old: int, new: int) -> None:
        """Before the size grows from ``old`` past ``new``: zero what allocated blocks hold
        in ``[old, new)``. Bytes past EOF are not promised to be zero on media (a write
        that extended the file may have landed before a crash took the size back, or
        blocks were preallocated), and growing must show zeroes (xfs_zero_eof)."""
        if new <= old:
            return
        first = old // BLOCK
        for e in ext.mapped_in(st.inode.extents, first, -(-new // BLOCK) - first):
            lo, hi = max(old, e.lblk * BLOCK), min(new, e.lend * BLOCK)
            if lo < hi:
                self._zero_range(st, lo, hi)
                self._count("fs.eof_zeroed_bytes", hi - lo)

    def _zero_tail(self, st: InodeState, size: int) -> None:
        """Zero from ``size`` to the end of its block, so growing the file later shows
        zeroes there (block_truncate_page)."""
        inner = size % BLOCK
        if not inner:
            return
        pblk, _ = self.bmap(st, size // BLOCK)
        if pblk is None:
            return
        if st.dax:
            self._dax_zero(pblk * BLOCK + inner, BLOCK - inner)
        else:
            assert st.cache is not None
            st.cache.get_page(size // BLOCK)  # read in, so truncate_range zeroes the tail

    def _truncate_blocks(self, st: InodeState, keep: int) -> None:
        for b, n in ext.remove(st.inode.extents, keep):
            self.alloc.free(b, n)
            self._count("fs.blocks_freed", n)
        self._mark(st)

    def punch_hole(self, ino: int, offset: int, length: int) -> None:
        """fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): the range reads as
        zeroes; whole blocks inside it are freed, partial ones zeroed."""
        st = self.iget(ino)
        if not st.inode.is_reg:
            raise IsADirectory(f"inode {ino} is not a regular file")
        if offset < 0 or length <= 0:
            raise InvalidArgument(f"punch of {length} bytes at {offset}")
        self._begin()
        end = min(offset + length, st.inode.size)
        if offset >= end:
            return
        first, last = -(-offset // BLOCK), end // BLOCK
        self._break_layouts(st, offset // BLOCK, -(-end // BLOCK))
        for lo, hi in ((offset, min(end, first * BLOCK)), (max(offset, last * BLOCK), end)):
            if lo < hi:
                self._zero_range(st, lo, hi)
        if st.cache is not None:
            st.cache.truncate_range(first * BLOCK, last * BLOCK)
        if last > first:
            for b, n in ext.remove(st.inode.extents, first, last - first):
                self.alloc.free(b, n)
                self._count("fs.blocks_freed", n)
        st.inode.mtime = st.inode.ctime = self.now()
        self._mark(st)
        self._count("fs.punches")

    def _zero_range(self, st: InodeState, lo: int, hi: int) -> None:
        if st.dax:
            a = lo
            while a < hi:
                lblk, inner = divmod(a, BLOCK)
                take = min(hi - a, BLOCK - inner)
                pblk, _ = self.bmap(st, lblk)
                if pblk is not None:
                    self._dax_zero(pblk * BLOCK + inner, take)
                a += take
        else:
            assert st.cache is not None
            a = lo
            while a < hi:
                lblk, inner = divmod(a, BLOCK)
                take = min(hi - a, BLOCK - inner)
                if self.bmap(st, lblk)[0] is not None or st.cache.find_page(lblk):
                    st.cache.write(a, bytes(take))
                a += take

    def fallocate(self, ino: int, offset: int, length: int, *, keep_size: bool = False) -> None:
        """fallocate(mode 0 or FALLOC_FL_KEEP_SIZE): allocate (zeroed) blocks for the
        range's holes; ENOSPC leaves the file as it was."""
        st = self.iget(ino)
        if not st.inode.is_reg:
            raise IsADirectory(f"inode {ino} is not a regular file")
        if offset < 0 or length <= 0:
            raise InvalidArgument(f"fallocate of {length} bytes at {offset}")
        if offset + length > MAX_FILE_SIZE:
            raise FileTooBig("fallocate past the largest file")
        self._begin()
        first, last = offset // BLOCK, -(-(offset + length) // BLOCK)
        holes = []
        lblk = first
        while lblk < last:
            pblk, run = self.bmap(st, lblk)
            run = min(run or last - lblk, last - lblk)
            if pblk is None:
                holes.append((lblk, run))
            lblk += run
        if not keep_size:
            self._zero_gap(st, st.inode.size, offset + length)
        want = sum(n for _, n in holes)
        free = self.alloc.count_free()  # pending frees count: _allocate commits for them
        if want > free:
            raise NoSpace(f"{self.name}: fallocate needs {want} blocks, {free} are free")
        for lb, n in holes:
            self.allocate_zeroed(st, lb, n)
        if not keep_size and offset + length > st.inode.size:
            st.inode.size = offset + length
        st.inode.ctime = self.now()
        self._mark(st)

    def allocate_zeroed(self, st: InodeState, lblk: int, count: int) -> None:
        """Map the holes ``[lblk, +count)`` to new blocks, zeroed on the device."""
        for e in self._allocate(st, lblk, count):
            self._zero_blocks(e)

    def _zero_blocks(self, e: Extent) -> None:
        if self.provider is not None:
            self._dax_zero(e.pblk * BLOCK, e.length * BLOCK)
        else:
            self.disk.write(e.pblk * BLOCK, bytes(e.length * BLOCK))

    # -- DAX mappings: unmap and busy pages (dax_layout_busy_page) ----------------------

    def _unmap_zero_leaves(self, st: InodeState, first: int, last: int) -> None:
        """A hole gets blocks: processes mapping the zero page there must fault again
        to see them (dax_insert_entry unmaps zero-page entries)."""
        zero = self.mm.zero_pfn
        for leaf in list(st.leaves.values()):
            if first <= leaf.lblk < last:
                hit = leaf.mm.pt.lookup(leaf.base)
                if hit is not None and hit[1].pfn == zero:
                    leaf.mm.zap(leaf.base, leaf.base + leaf.size)

    def unmap_range(self, st: InodeState, first: int, last: int | None) -> int:
        """Remove every leaf mapping file blocks ``[first, last)`` from every process
        (``unmap_mapping_range``). Returns leaves removed."""
        n = 0
        for leaf in list(st.leaves.values()):
            lend = leaf.lblk + leaf.size // BLOCK
            if lend > first and (last is None or leaf.lblk < last):
                n += leaf.mm.zap(leaf.base, leaf.base + leaf.size)
        if n:
            self._count("fs.unmapped_leaves", n)
        return n

    def _break_layouts(self, st: InodeState, first: int, last: int | None) -> None:
        """Before blocks of ``[first, last)`` change owner: unmap them, then make sure no
        page of them is still held (a GUP pin for DMA). The contract decides what a held
        page does: ``wait`` lets :attr:`while_waiting` run and looks again, ``fail``
        raises EBUSY; a wait nothing can end raises EBUSY too, naming the holders."""
        self.unmap_range(st, first, last)
        if not st.dax:
            return
        if not self.provider.layout_busy:
            self._count("fs.dax.busy_unchecked")  # the 2016 contract cannot tell
            return
        busy = self._busy_pages(st, first, last)
        if not busy:
            return
        self._count("fs.dax.busy_waits")
        self._event("fs.busy_pages", ino=st.ino, pages=len(busy))
        if self.busy_contract == "wait" and self.while_waiting is not None:
            self.while_waiting(busy)
            busy = self._busy_pages(st, first, last)
            if not busy:
                return
        holders = sorted({f"pid {r.pid} ({r.process})" for p in busy
                          for r in self.mm.pins.lookup(p.pfn)})
        why = ("would wait forever: nothing releases them" if self.busy_contract == "wait"
               else "the busy contract is 'fail'")
        self._count("fs.dax.busy_failures")
        raise Busy(f"{self.name}: inode {st.ino}: {len(busy)} page(s) in the range are "
                   f"pinned{' by ' + ', '.join(holders) if holders else ''}; truncate "
                   f"{why}")

    def pfn_of_block(self, pblk: int) -> int | None:
        """The pfn of device block ``pblk`` for a linear provider (pmem), else None."""
        if self.provider is None or not self.provider.linear:
            return None
        if self._base_pfn is None:
            e = self.provider.map(0, BLOCK, self)
            self.provider.release(e)
            self._base_pfn = e.pfn
        return self._base_pfn + pblk

    def _busy_pages(self, st: InodeState, first: int, last: int | None) -> list[Page]:
        p0 = self.pfn_of_block(0)
        table = self.mm.pagemaps
        pgmap = table.lookup(p0) if p0 is not None and table is not None else None
        if pgmap is None:  # no struct pages (raw, memmap=none, BTT): nothing can be pinned
            return []
        busy = pgmap.busy_pages()
        if not busy:
            return []
        count = (last if last is not None else 1 << 32) - first
        spans = []
        for e in ext.mapped_in(st.inode.extents, first, count):
            p0 = self.pfn_of_block(e.pblk)
            if p0 is not None:
                spans.append((p0, p0 + e.length))
        return [p for p in busy if any(lo <= p.pfn < hi for lo, hi in spans)]

    # -- media failure (the dax-ops era's holder: one per device) ----------------------

    def notify_failure(self, offset: int, length: int, mf_flags: int) -> None:
        """``xfs_dax_notify_failure``: media under device bytes ``[offset, +length)``
        failed. Unmap every leaf of a file over them, so the next access faults and is
        refused (SIGBUS) instead of consuming the poison."""
        told = self.unmap_device_range(offset, length)
        self._count("fs.dax.failure_notices")
        self._event("fs.notify_failure", offset=offset, len=length, unmapped=told)

    def on_error(self, offset: int, length: int) -> None:
        """The widened contract's per-holder failure notice (the fs's own handles)."""
        self.notify_failure(offset, length, 0)

    def on_remap(self, offset: int, length: int) -> None:
        """The provider will change device bytes ``[offset, +length)``: unmap them."""
        self.unmap_device_range(offset, length)

    def unmap_device_range(self, offset: int, length: int,
                           inodes: Iterable[InodeState] | None = None) -> int:
        """Unmap every leaf over device bytes ``[offset, +length)``, of ``inodes`` (default:
        every cached inode). Returns leaves removed."""
        first, last = offset // BLOCK, -(-(offset + length) // BLOCK)
        told = 0
        for st in list(self.inodes.values() if inodes is None else inodes):
            if not st.leaves:
                continue
            for e in st.inode.extents:
                lo, hi = max(e.pblk, first), min(e.pend, last)
                if lo < hi:
                    l0 = e.lblk + (lo - e.pblk)
                    told += self.unmap_range(st, l0, l0 + (hi - lo))
        return told

    # -- durability -----------------------------------------------------------------------

    def fsync(self, ino: int, *, datasync: bool = False) -> None:
        """fsync(2) / fdatasync(2): this file's data, then the metadata (see the module
        docstring for what survives)."""
        st = self.iget(ino)
        if st.dax:
            self._dax_writeback(st)
        elif st.cache is not None:
            self._writeback(st)
        need_commit = (ino in self.dirty_inodes and (not datasync or st.datasync_dirty)) or (
            not datasync and bool(self.dirty_meta or self.alloc.dirty))
        if need_commit:
            self.commit()
        else:
            self._flush_data()
        self._count("fs.fsyncs")

    def _dax_writeback(self, st: InodeState) -> None:
        """dax_writeback_mapping_range: write back the cache lines of every dirty leaf
        of the file (per process), then fence."""
        for leaf in list(st.leaves.values()):
            leaf.mm.dax_writeback(leaf.base, leaf.base + leaf.size)
        if st.unsynced:
            cpu = self.mm.cpu
            for pfn, size in st.unsynced:
                cpu.writeback(pfn << 12, size)
            st.unsynced.clear()
            cpu.fence()

    def _flush_data(self) -> None:
        if self.provider is not None:
            self.provider.flush()
        self.disk.flush()

    def commit(self) -> None:
        """Write the running transaction: ordered data first, then the journal."""
        if not self.mounted:
            raise InvalidArgument(f"{self.name} is not mounted")
        for ino in sorted(self.dirty_inodes):
            st = self.inodes.get(ino)
            if st is None:
                continue
            if st.dax:
                if st.ordered:
                    self._dax_writeback(st)
            elif st.cache is not None and st.cache.nr_dirty:
                # every dirty page of an inode in the transaction: write(2), mmap, and
                # the zeroing a truncate or punch does through the cache
                self._writeback(st)
        self._commit_metadata()

    def _commit_metadata(self) -> None:
        """Journal the running transaction's metadata (its data is already written)."""
        if self._committing:
            raise InvalidArgument(f"{self.name}: commit inside a commit")
        self._committing = True
        try:
            self._journal_dirty()
        finally:
            self._committing = False

    def _journal_dirty(self) -> None:
        self._flush_data()
        for ino in sorted(self.dirty_inodes):
            st = self.inodes.get(ino)
            if st is not None:
                self._store_inode(st)
        images: dict[int, bytes] = {b: bytes(self.meta[b]) for b in self.dirty_meta}
        for idx in self.alloc.dirty:
            images[self.alloc.block_number(idx)] = self.alloc.block_bytes(idx)
        if len(images) > self.journal.capacity:
            # Too big for one transaction: commit in pieces (not atomic; see docs).
            self._count("fs.journal.split_commits")
            keys = sorted(images)
            for i in range(0, len(keys), self.journal.capacity):
                self.journal.commit({k: images[k] for k in keys[i:i + self.journal.capacity]})
        else:
            self.journal.commit(images)
        for ino in self.dirty_inodes:
            st = self.inodes.get(ino)
            if st is not None:
                st.datasync_dirty = False
                st.ordered = False
                if not st.inode.in_use:
                    del self.inodes[ino]
        self.dirty_inodes.clear()
        self.dirty_meta.clear()
        self.alloc.dirty.clear()
        self.alloc.release_pending()

    def sync(self) -> None:
        for st in self.inodes.values():
            if st.cache is not None and st.cache.nr_dirty:
                self._writeback(st)
                self.dirty_inodes.add(st.ino)
            elif st.dax and (st.leaves or st.unsynced):
                self._dax_writeback(st)
        self.commit()

    def unmount(self) -> None:
        """Commit everything, mark the superblock clean. EBUSY while files are open or
        mapped."""
        busy = [st.ino for st in self.inodes.values() if st.opens or st.vmas or st.leaves]
        if busy:
            raise Busy(f"{self.name}: {len(busy)} file(s) still open or mapped "
                       f"(inodes {', '.join(map(str, busy[:5]))})")
        self.sync()
        if self.provider is not None:
            self.provider.put_holder(self)
        self.sb.state = STATE_CLEAN
        self.disk.write(0, self.sb.encode(), fua=True)
        self.disk.flush()
        for st in self.inodes.values():
            if st.cache is not None:
                st.cache.invalidate()
        self.mounted = False
        self._event("fs.unmount")

    def statfs(self) -> dict[str, int]:
        """statfs(2): data blocks and free blocks; inode slots and free ones (the free
        inode count scans the inode table, which is cheap at extentfs's sizes)."""
        used = 0
        for tb in range(self.sb.inode_table_blocks):
            raw = self._read_meta(self.sb.inode_table_start + tb)
            for i in range(INODES_PER_BLOCK):
                ino = tb * INODES_PER_BLOCK + i
                st = self.inodes.get(ino)
                if st is not None:
                    used += st.inode.in_use
                elif 0 < ino < self.sb.inodes and slot_in_use(raw[i * INODE_SIZE:]):
                    used += 1
        return {"bsize": BLOCK, "blocks": self.sb.blocks - self.sb.data_start,
                "bfree": self.alloc.count_free(), "files": self.sb.inodes - 1,
                "ffree": self.sb.inodes - 1 - used}

    # -- orphans -----------------------------------------------------------------------

    def _free_orphans(self) -> int:
        """After an unclean shutdown: free inodes that lost their last name while open
        (their nlink is 0 but their blocks are still allocated)."""
        n = 0
        for tb in range(self.sb.inode_table_blocks):
            block = self.sb.inode_table_start + tb
            raw = self._read_meta(block)
            if not any(raw):
                continue
            for i in range(INODES_PER_BLOCK):
                ino = tb * INODES_PER_BLOCK + i
                if ino == 0 or ino >= self.sb.inodes:
                    continue
                o = i * INODE_SIZE
                try:
                    inode, _ = decode_inode(ino, raw[o:o + INODE_SIZE])
                except CorruptMetadata:
                    # a damaged slot does not stop the mount: it is fsck's to repair
                    self._count("fs.bad_inodes")
                    self._event("fs.bad_inode", ino=ino)
                    continue
                if inode.in_use and inode.nlink == 0:
                    st = self.iget(ino)
                    self._maybe_evict(st)
                    n += 1
        if n:
            self.commit()
        return n


@attrs.define(slots=True, eq=False)
class _InodeBlocks:
    """The page cache's BlockMap for one file: holes read as zeroes; writeback of a page
    in a hole allocates (delayed allocation), a run of dirty pages at once."""

    fs: ExtentFs
    st: InodeState

    def map_read(self, index: int) -> int | None:
        pblk, _ = self.fs.bmap(self.st, index)
        return None if pblk is None else pblk * BLOCK

    def map_write(self, index: int) -> int:
        pblk, run = self.fs.bmap(self.st, index)
        if pblk is not None:
            return pblk * BLOCK
        cache = self.st.cache
        n = 1
        limit = run if run else 1 << 20
        while n < limit and n < 4096 and cache is not None and cache.is_dirty(index + n):
            n += 1
        self.fs._allocate(self.st, index, n)
        pblk, _ = self.fs.bmap(self.st, index)
        assert pblk is not None
        return pblk * BLOCK


def mount(disk: Gendisk, mm: MemorySystem, *, dax: str = "never", provider: Any = None,
          provider_error: NvdimmError | None = None, busy: str = "wait",
          metrics: Metrics | None = None, trace: Trace | None = None,
          name: str = "") -> ExtentFs:
    """Mount the extentfs on ``disk``: replay the journal, free orphans after a crash,
    mark the superblock mounted. ``provider`` is the DAX provider (None: the device has
    none, ``provider_error`` says why); ``dax=always`` needs one."""
    if dax not in DAX_MODES:
        raise InvalidArgument(f"dax={dax!r}: choose one of {', '.join(DAX_MODES)}")
    if busy not in BUSY_CONTRACTS:
        raise InvalidArgument(f"busy={busy!r}: choose one of {', '.join(BUSY_CONTRACTS)}")
    if disk.logical_block_size > BLOCK or BLOCK % disk.logical_block_size:
        raise InvalidArgument(f"{disk.name}: {disk.logical_block_size}-byte sectors do not "
                              f"divide extentfs's {BLOCK}-byte blocks")
    if dax == "always" and provider is None:
        why = provider_error.message if provider_error is not None else "no DAX provider"
        raise NotSupported(f"{disk.name}: DAX unsupported by block device: {why}")
    metrics = metrics or Metrics()
    trace = trace or Trace(on=False)
    sb = Superblock.decode(disk.read(0, BLOCK))
    if sb.blocks * BLOCK > disk.size:
        raise InvalidArgument(f"{disk.name}: the filesystem has {sb.blocks} blocks but the "
                              f"device only {disk.size // BLOCK}")
    clean = sb.state == STATE_CLEAN
    seq, replayed = jrnl.replay(disk, sb)
    fs = ExtentFs(disk, sb, mm, metrics, trace, dax, provider if dax != "never" else None,
                  busy, name or disk.name)
    fs.journal = jrnl.Journal(disk, sb, seq, metrics, trace)
    fs.alloc = Allocator(sb, lambda b: disk.read(b * BLOCK, BLOCK))
    fs.replayed = replayed
    if fs.provider is not None:
        try:
            probe = fs.provider.map(0, BLOCK, fs)
        except NvdimmError:
            fs.dax_has_pages = False  # block 0 cannot be mapped (poison, or a BTT's state)
        else:
            fs.provider.release(probe)
            fs.dax_has_pages = bool(probe.has_page)
            if fs.provider.linear:
                fs._base_pfn = probe.pfn
        # fs_dax_get_by_bdev with holder ops (5.19); if another holder has the device,
        # failures go there.
        with contextlib.suppress(NvdimmError):
            fs.provider.set_holder(fs)
    sb.state = STATE_MOUNTED
    sb.mount_count += 1
    disk.write(0, sb.encode(), fua=True)
    disk.flush()
    if not clean:
        fs.orphans_freed = fs._free_orphans()
    fs.iget(sb.root_ino)
    metrics.c["fs.mounts"] += 1
    if replayed:
        metrics.c["fs.journal.replayed_blocks"] += replayed
    if trace.on:
        trace.emit("fs.mount", fs=fs.name, dax=dax, clean=clean, replayed=replayed,
                   orphans=fs.orphans_freed)
    return fs
