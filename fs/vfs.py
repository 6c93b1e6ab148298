"""The VFS: mounts, paths, open files, and the system calls a workload makes.

One :class:`Vfs` per running kernel (``machine.vfs``). Paths are absolute and resolved
through the mount table (longest mount point first), then component by component
through the filesystem's directories. What the calls do is POSIX's:

* ``open(path, flags)`` with ``os.O_*`` flags or a ``fopen``-style string (``"r"``,
  ``"r+"``, ``"w"``, ``"w+"``, ``"a"``, ``"a+"``, ``"x"``); ``O_CREAT``/``O_EXCL``/
  ``O_TRUNC``/``O_APPEND``; a file that is unlinked while open lives until closed;
* :class:`File`: ``read``/``write`` at the file position, ``pread``/``pwrite``,
  ``seek``, ``fsync``/``fdatasync``, ``truncate``, ``fallocate`` (with
  ``punch_hole``/``keep_size``), ``stat``, ``mmap`` into a process, ``close``;
* :class:`Vfs`: ``mkdir``, ``rmdir``, ``unlink``, ``rename`` (EXDEV across mounts),
  ``stat``, ``listdir``, ``truncate``, ``sync``, ``mount``/``umount`` (EBUSY while in use).

Errors carry the errno the real call returns (:mod:`fs.errors`, :mod:`nvdimm.errors`).
"""

from __future__ import annotations

import os
import posixpath
from typing import TYPE_CHECKING, Any

import attrs

from fs.errors import (
    AccessDenied,
    BadFile,
    CrossDevice,
    Exists,
    IsADirectory,
    NoEntry,
    NotADirectory,
)
from fs.extentfs.fs import ExtentFs, mount
from fs.extentfs.layout import S_IFDIR, S_IFMT
from mm.vma import PROT_READ, PROT_RW, Prot
from nvdimm.errors import Busy, InvalidArgument
from nvdimm.metrics import Metrics
from nvdimm.trace import Trace

if TYPE_CHECKING:
    from block.genhd import Gendisk
    from mm.process import MemorySystem, Process

_MODES = {
    "r": os.O_RDONLY, "rb": os.O_RDONLY,
    "r+": os.O_RDWR, "rb+": os.O_RDWR, "r+b": os.O_RDWR,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC, "wb+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND, "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL, "x+": os.O_RDWR | os.O_CREAT | os.O_EXCL,
}


def open_flags(flags: int | str) -> int:
    if isinstance(flags, str):
        try:
            return _MODES[flags]
        except KeyError:
            raise InvalidArgument(f"open mode {flags!r}: use one of "
                                  f"{', '.join(sorted(_MODES))} or os.O_* flags") from None
    return flags


@attrs.frozen(slots=True)
class Stat:
    """What stat(2) says (the fields a workload uses)."""

    ino: int
    mode: int
    nlink: int
    size: int
    blocks: int  # 512-byte units, as st_blocks
    mtime: int
    ctime: int
    dax: bool  # STATX_ATTR_DAX

    @property
    def is_dir(self) -> bool:
        return self.mode & S_IFMT == S_IFDIR


@attrs.define(slots=True, eq=False)
class Mount:
    path: str
    fs: ExtentFs


@attrs.define(slots=True, eq=False)
class File:
    """An open file description."""

    vfs: Vfs
    mnt: Mount
    ino: int
    flags: int
    path: str
    pos: int = 0
    closed: bool = False

    @property
    def fs(self) -> ExtentFs:
        return self.mnt.fs

    @property
    def readable(self) -> bool:
        return self.flags & os.O_ACCMODE in (os.O_RDONLY, os.O_RDWR)

    @property
    def writable(self) -> bool:
        return self.flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)

    @property
    def dax(self) -> bool:
        return self.fs.iget(self.ino).dax

    def _live(self) -> None:
        if self.closed:
            raise BadFile(f"{self.path}: the file is closed")

    def _need(self, write: bool) -> None:
        self._live()
        if write and not self.writable:
            raise BadFile(f"{self.path}: not open for writing")
        if not write and not self.readable:
            raise BadFile(f"{self.path}: not open for reading")

    def read(self, n: int = -1) -> bytes:
        self._need(False)
        if n < 0:
            n = max(0, self.fs.size(self.ino) - self.pos)
        data = self.fs.read(self.ino, self.pos, n)
        self.pos += len(data)
        return data

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._need(True)
        if self.flags & os.O_APPEND:
            self.pos = self.fs.size(self.ino)
        n = self.fs.write(self.ino, self.pos, data)
        self.pos += n
        return n

    def pread(self, n: int, offset: int) -> bytes:
        self._need(False)
        return self.fs.read(self.ino, offset, n)

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> int:
        self._need(True)
        return self.fs.write(self.ino, offset, data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._live()
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos,
                os.SEEK_END: self.fs.size(self.ino)}.get(whence)
        if base is None or base + offset < 0:
            raise InvalidArgument(f"seek to {offset} from {whence}")
        self.pos = base + offset
        return self.pos

    def fsync(self) -> None:
        self._live()
        self.fs.fsync(self.ino)

    def fdatasync(self) -> None:
        self._live()
        self.fs.fsync(self.ino, datasync=True)

    def truncate(self, size: int) -> None:
        self._need(True)
        self.fs.truncate(self.ino, size)

    def fallocate(self, offset: int, length: int, *, punch_hole: bool = False,
                  keep_size: bool = False) -> None:
        """fallocate(2); POSIX wants PUNCH_HOLE with KEEP_SIZE, so punch_hole implies it."""
        self._need(True)
        if punch_hole:
            self.fs.punch_hole(self.ino, offset, length)
        else:
            self.fs.fallocate(self.ino, offset, length, keep_size=keep_size)

    def stat(self) -> Stat:
        self._live()
        return self.vfs._stat(self.fs, self.ino)

    def mmap(self, proc: Process, length: int, *, offset: int = 0,
             prot: Prot = PROT_RW, shared: bool = True, addr: int | None = None) -> int:
        """Map ``length`` bytes of the file from ``offset`` into ``proc``; returns the
        address. EACCES for a file not open for reading, or a shared writable mapping
        of one not open for writing, as mmap(2)."""
        self._live()
        if not self.readable:
            raise AccessDenied(f"{self.path}: mmap needs the file open for reading")
        if shared and prot & ~PROT_READ and not self.writable:
            raise AccessDenied(f"{self.path}: a shared writable mapping needs the file "
                               "open for writing")
        return proc.mmap(length, prot, shared=shared, backing=self.fs.mapping_of(self.ino),
                         offset=offset, addr=addr)

    def close(self) -> None:
        if self.closed:
            raise BadFile(f"{self.path}: already closed")
        self.closed = True
        self.vfs._open.discard(self)
        self.fs.released(self.ino)

    def __enter__(self) -> File:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.closed:
            self.close()


@attrs.define(slots=True, eq=False)
class Vfs:
    mm: MemorySystem
    metrics: Metrics = attrs.field(factory=Metrics)
    trace: Trace = attrs.field(factory=lambda: Trace(on=False))
    mounts: dict[str, Mount] = attrs.field(factory=dict)
    _open: set[File] = attrs.field(factory=set)

    # -- mounts -----------------------------------------------------------------------------

    def mount(self, disk: Gendisk, path: str = "/mnt", *, dax: str = "never",
              provider: Any = None, provider_error: Any = None, busy: str = "wait") -> ExtentFs:
        path = _norm(path)
        if path in self.mounts:
            raise Busy(f"{path}: something is already mounted there")
        for m in self.mounts.values():
            if m.fs.disk is disk:
                raise Busy(f"{disk.name} is already mounted on {m.path}")
        fs = mount(disk, self.mm, dax=dax, provider=provider, provider_error=provider_error,
                   busy=busy, metrics=self.metrics, trace=self.trace, name=disk.name)
        self.mounts[path] = Mount(path, fs)
        return fs

    def close_all(self) -> None:
        """Close every open file (shutdown kills the processes that hold them)."""
        for f in list(self._open):
            f.close()

    def umount_all(self) -> None:
        """Unmount everything, innermost mount first."""
        for path in sorted(self.mounts, reverse=True):
            self.umount(path)

    def umount(self, path: str) -> None:
        path = _norm(path)
        m = self.mounts.get(path)
        if m is None:
            raise InvalidArgument(f"{path}: not mounted")
        m.fs.unmount()
        del self.mounts[path]

    def mount_of(self, path: str) -> Mount:
        return self._resolve_mount(_norm(path))[0]

    # -- paths ---------------------------------------------------------------------------

    def _resolve_mount(self, path: str) -> tuple[Mount, list[str]]:
        best = None
        for mp, m in self.mounts.items():
            under = path == mp or path.startswith(mp.rstrip("/") + "/")
            if under and (best is None or len(mp) > len(best.path)):
                best = m
        if best is None:
            where = ", ".join(sorted(self.mounts)) or "nothing is mounted"
            raise NoEntry(f"{path}: not under a mount point ({where})")
        rest = path[len(best.path):].strip("/")
        return best, [p for p in rest.split("/") if p]

    def _walk(self, path: str) -> tuple[Mount, int]:
        mnt, parts = self._resolve_mount(_norm(path))
        fs = mnt.fs
        ino = fs.sb.root_ino
        for i, part in enumerate(parts):
            if not fs.iget(ino).inode.is_dir:
                raise NotADirectory(f"{'/'.join(parts[:i])}: not a directory")
            ino = fs.lookup(ino, part)
        return mnt, ino

    def _parent(self, path: str) -> tuple[Mount, int, str]:
        path = _norm(path)
        parent, name = posixpath.split(path)
        if not name:
            raise InvalidArgument(f"{path}: needs a name")
        mnt, ino = self._walk(parent)
        if not mnt.fs.iget(ino).inode.is_dir:
            raise NotADirectory(f"{parent}: not a directory")
        if mnt.path == path:
            raise Busy(f"{path} is a mount point")
        return mnt, ino, name

    # -- calls --------------------------------------------------------------------------

    def open(self, path: str, flags: int | str = "r", mode: int = 0o644, *,
             dax: bool = False) -> File:
        """open(2). ``dax`` sets FS_XFLAG_DAX on a file this call creates (what
        ``dax=inode`` mounts honour)."""
        fl = open_flags(flags)
        try:
            mnt, ino = self._walk(path)
            if fl & os.O_CREAT and fl & os.O_EXCL:
                raise Exists(f"{path}: exists")
        except NoEntry:
            if not fl & os.O_CREAT:
                raise
            mnt, dino, name = self._parent(path)
            ino = mnt.fs.create(dino, name, mode, dax_flag=dax)
        fs = mnt.fs
        st = fs.iget(ino)
        if st.inode.is_dir and fl & os.O_ACCMODE != os.O_RDONLY:
            raise IsADirectory(f"{path}: is a directory")
        if fl & os.O_TRUNC and fl & os.O_ACCMODE != os.O_RDONLY and st.inode.size:
            fs.truncate(ino, 0)
        f = File(self, mnt, ino, fl, _norm(path))
        fs.opened(ino)
        self._open.add(f)
        self.metrics.c["fs.opens"] += 1
        return f

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        mnt, dino, name = self._parent(path)
        mnt.fs.mkdir(dino, name, mode)

    def rmdir(self, path: str) -> None:
        mnt, dino, name = self._parent(path)
        mnt.fs.rmdir(dino, name)

    def unlink(self, path: str) -> None:
        mnt, dino, name = self._parent(path)
        mnt.fs.unlink(dino, name)

    def rename(self, old: str, new: str) -> None:
        m1, d1, n1 = self._parent(old)
        m2, d2, n2 = self._parent(new)
        if m1 is not m2:
            raise CrossDevice(f"rename {old} -> {new}: different filesystems")
        m1.fs.rename(d1, n1, d2, n2)

    def stat(self, path: str) -> Stat:
        mnt, ino = self._walk(path)
        return self._stat(mnt.fs, ino)

    def _stat(self, fs: ExtentFs, ino: int) -> Stat:
        st = fs.iget(ino)
        i = st.inode
        return Stat(ino, i.mode, i.nlink, i.size, i.blocks * 8, i.mtime, i.ctime, st.dax)

    def exists(self, path: str) -> bool:
        try:
            self._walk(path)
        except (NoEntry, NotADirectory):
            return False
        return True

    def listdir(self, path: str) -> list[str]:
        mnt, ino = self._walk(path)
        if not mnt.fs.iget(ino).inode.is_dir:
            raise NotADirectory(f"{path}: not a directory")
        return [n for n, _, _ in mnt.fs.readdir(ino)]

    def truncate(self, path: str, size: int) -> None:
        mnt, ino = self._walk(path)
        mnt.fs.truncate(ino, size)

    def set_dax(self, path: str, on: bool = True) -> None:
        """``chattr +x`` / ``-x``: the per-file DAX flag, honoured by ``dax=inode``."""
        mnt, ino = self._walk(path)
        mnt.fs.set_dax_flag(ino, on)

    def sync(self) -> None:
        for m in self.mounts.values():
            m.fs.sync()

    def read_file(self, path: str) -> bytes:
        with self.open(path) as f:
            return f.read()

    def write_file(self, path: str, data: bytes, *, fsync: bool = False) -> None:
        with self.open(path, "w") as f:
            f.write(data)
            if fsync:
                f.fsync()


def _norm(path: str) -> str:
    if not path.startswith("/"):
        raise InvalidArgument(f"{path!r}: paths are absolute")
    return posixpath.normpath(path) if path != "/" else "/"


__all__ = ["PROT_READ", "PROT_RW", "File", "Mount", "Stat", "Vfs", "open_flags"]
