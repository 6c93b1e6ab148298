"""extentfs under crashes: a hypothesis state machine over file operations, crashes and
remounts, against a model of POSIX file contents.

The model keeps what the files hold now and what they held at the last journal commit
(captured from the trace at the moment of the commit, so commits the filesystem makes on
its own are caught too). What is checked:

* at every step, every file reads back what the model says (buffered and DAX alike);
* after a clean unmount and mount, exactly the current contents;
* after a crash (random, keep-nothing or keep-everything), exactly the names and sizes of
  the last commit, and each byte either what the commit had or a byte a later
  operation wrote there (an overwrite in place may land, or not) -- so everything that
  was fsync'd survives, and no byte of another file or of a freed block ever shows up.
"""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fs.errors import NoEntry
from nvdimm.errors import NoSpace
from nvdimm.platform.crash import KeepEverything, KeepNothing, RandomCrash
from nvdimm.units import MiB
from tests.fs_helpers import fs_machine, remount

NAMES = ("a", "b", "c", "d")
MAX = 24 * 1024


@pytest.mark.parametrize("dax", ["always", "never"])
def test_freed_blocks_are_not_reused_before_the_free_commits(dax: str) -> None:
    """Fill the filesystem, unlink a committed file, then write another: its blocks
    are the only free ones, so the allocator commits the unlink before reusing them. A
    crash then shows the unlink done; never the old file holding the new file's data."""
    m, name, fs = fs_machine(dax=dax, size=16 * MiB, mkfs={"size": 2 * MiB + 64 * 4096})
    v = m.vfs
    v.write_file("/mnt/old", b"O" * (8 * 4096), fsync=True)
    with v.open("/mnt/fill", "w") as f:
        f.write(b"F" * (fs.alloc.count_free() * 4096))
        f.fsync()
    v.unlink("/mnt/old")
    with v.open("/mnt/new", "w") as f:
        f.write(b"N" * (8 * 4096))  # DAX: allocates and writes now
        if dax == "never":
            f.fsync()  # the page cache allocates at writeback
    assert m.metrics.c["fs.enospc_commits"] == 1
    m.crash(KeepNothing())
    remount(m, name, dax=dax)
    assert not m.vfs.exists("/mnt/old")
    assert set(m.vfs.read_file("/mnt/fill")) == {ord("F")}


def test_enospc_with_nothing_pending_changes_nothing() -> None:
    m, _, fs = fs_machine(dax="always", size=16 * MiB, mkfs={"size": 2 * MiB + 64 * 4096})
    m.vfs.write_file("/mnt/a", b"a" * 4096, fsync=True)
    m.vfs.write_file("/mnt/b", b"")
    before = fs.statfs()
    with m.vfs.open("/mnt/b", "w") as f, pytest.raises(NoSpace):
        f.write(bytes((fs.alloc.count_free() + 1) * 4096))
    assert m.vfs.read_file("/mnt/a") == b"a" * 4096
    assert m.vfs.stat("/mnt/b").size == 0 and fs.statfs() == before
    assert m.metrics.c["fs.enospc_commits"] == 0


class FsCrashMachine(RuleBasedStateMachine):
    @initialize(dax=st.sampled_from(["always", "never"]))
    def boot(self, dax: str) -> None:
        self.dax = dax
        # A small filesystem, so the allocator wraps and reuses freed blocks soon.
        self.m, self.name, self.fs = fs_machine(dax=dax, size=16 * MiB,
                                                mkfs={"size": 2 * MiB + 160 * 4096})
        self.files: dict[str, bytearray] = {}  # name -> contents now
        self.ids: dict[str, int] = {}  # name -> file identity (an inode, in the model)
        self.next_id = 0
        self.committed: dict[str, tuple[int, bytes]] = {}  # name -> (identity, contents)
        # per identity: (offset, bytes) written since the last commit
        self.since: dict[int, list[tuple[int, bytes]]] = {}
        # per identity: DAX stores through a mapping not yet fsync'd: (offset, old, new);
        # a commit does not make them durable, only an fsync of their file does
        self.loose: dict[int, list[tuple[int, int, int]]] = {}
        self.m.trace.subscribe(self._on_event)

    def _on_event(self, ev) -> None:  # type: ignore[no-untyped-def]
        if ev.name == "fs.journal.commit":
            self._snapshot()

    def _snapshot(self) -> None:
        self.committed = {k: (self.ids[k], bytes(v)) for k, v in self.files.items()}
        self.since = {}

    def _synced(self, name: str) -> None:
        """fsync(name) returned: its data and size are durable, whether or not a commit
        was needed (with no commit the names are as committed)."""
        ident = self.ids[name]
        self.committed[name] = (ident, bytes(self.files[name]))
        self.since.pop(ident, None)
        self.loose.pop(ident, None)

    def _note(self, name: str, offset: int, data: bytes) -> None:
        self.since.setdefault(self.ids[name], []).append((offset, data))

    # -- operations ---------------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES))
    def create(self, name: str) -> None:
        with self.m.vfs.open(f"/mnt/{name}", "a"):
            pass
        if name not in self.files:
            self.files[name] = bytearray()
            self.ids[name] = self.next_id
            self.next_id += 1

    @precondition(lambda self: self.files)
    @rule(data=st.data(), offset=st.integers(0, MAX), size=st.integers(1, 9000),
          byte=st.integers(1, 255))
    def write(self, data: st.DataObject, offset: int, size: int, byte: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.files)))
        payload = bytes([byte]) * size
        with self.m.vfs.open(f"/mnt/{name}", "r+") as f:
            f.pwrite(payload, offset)
        buf = self.files[name]
        if len(buf) < offset:
            buf.extend(bytes(offset - len(buf)))
        buf[offset:offset + size] = payload
        self._note(name, offset, payload)

    @precondition(lambda self: self.files)
    @rule(data=st.data(), size=st.integers(0, MAX))
    def truncate(self, data: st.DataObject, size: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.files)))
        self.m.vfs.truncate(f"/mnt/{name}", size)
        buf = self.files[name]
        old = len(buf)
        if size < old:
            del buf[size:]
            self._note(name, size, bytes(4096 - size % 4096 if size % 4096 else 0))
        else:
            buf.extend(bytes(size - old))

    @precondition(lambda self: self.files)
    @rule(data=st.data(), offset=st.integers(0, MAX), length=st.integers(1, 3 * 4096))
    def punch(self, data: st.DataObject, offset: int, length: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.files)))
        with self.m.vfs.open(f"/mnt/{name}", "r+") as f:
            f.fallocate(offset, length, punch_hole=True)
        buf = self.files[name]
        end = min(offset + length, len(buf))
        if offset < end:
            buf[offset:end] = bytes(end - offset)
            self._note(name, offset, bytes(end - offset))

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def unlink(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.files)))
        self.m.vfs.unlink(f"/mnt/{name}")
        del self.files[name]
        del self.ids[name]

    @precondition(lambda self: self.files)
    @rule(data=st.data(), new=st.sampled_from(NAMES))
    def rename(self, data: st.DataObject, new: str) -> None:
        old = data.draw(st.sampled_from(sorted(self.files)))
        self.m.vfs.rename(f"/mnt/{old}", f"/mnt/{new}")
        if old != new:
            self.files[new] = self.files.pop(old)
            self.ids[new] = self.ids.pop(old)

    @precondition(lambda self: any(self.files.values()))
    @rule(data=st.data(), byte=st.integers(1, 255),
          how=st.sampled_from(["msync", "fsync after munmap", "none"]))
    def mmap_store(self, data: st.DataObject, byte: int, how: str) -> None:
        name = data.draw(st.sampled_from(sorted(k for k, v in self.files.items() if v)))
        buf = self.files[name]
        offset = data.draw(st.integers(0, len(buf) - 1))
        p = self.m.mm.spawn("mapper")
        with self.m.vfs.open(f"/mnt/{name}", "r+") as f:
            a = f.mmap(p, len(buf))
            p.store(a + offset, bytes([byte]))
            if how == "msync":
                p.msync(a, len(buf))  # an fsync of the file: commits
            p.munmap(a, len(buf))
            if how == "fsync after munmap":  # the dirty entry outlives the mapping
                f.fsync()
        p.exit()
        sync = how != "none"
        if self.dax == "always" and not sync:
            self.loose.setdefault(self.ids[name], []).append((offset, buf[offset], byte))
        buf[offset] = byte
        self._note(name, offset, bytes([byte]))
        if sync:
            self._synced(name)

    @precondition(lambda self: self.files)
    @rule(data=st.data(), datasync=st.booleans())
    def fsync(self, data: st.DataObject, datasync: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.files)))
        with self.m.vfs.open(f"/mnt/{name}", "r") as f:
            (f.fdatasync if datasync else f.fsync)()
        self._synced(name)
        if not datasync:
            # fsync commits the running transaction: every name and size is in it
            assert set(self.committed) == set(self.files)

    @rule()
    def remount_clean(self) -> None:
        self.m.vfs.umount("/mnt")
        self.fs = self.m.mount(self.name, "/mnt", dax=self.dax)
        self._check_exact(self.files)

    @rule(policy=st.sampled_from(["random", "nothing", "everything"]), seed=st.integers(0, 99))
    def crash(self, policy: str, seed: int) -> None:
        p = {"random": RandomCrash(seed), "nothing": KeepNothing(),
             "everything": KeepEverything()}[policy]
        self.m.crash(p)
        self.fs = remount(self.m, self.name, dax=self.dax)
        self.m.trace.subscribe(self._on_event)
        names = sorted(self.m.vfs.listdir("/mnt"))
        assert names == sorted(self.committed), (names, sorted(self.committed))
        for name, (ident, snap) in self.committed.items():
            got = self.m.vfs.read_file(f"/mnt/{name}")
            assert len(got) == len(snap), name
            later = self.since.get(ident, [])
            loose = self.loose.get(ident, [])
            for i, (g, s) in enumerate(zip(got, snap, strict=True)):
                if g != s:
                    assert any(off <= i < off + len(w) and w[i - off] == g
                               for off, w in later) or any(
                        off == i and g in (old, new) for off, old, new in loose), \
                        f"{name}: byte {i} is {g}, not {s}"
        self.files = {name: bytearray(self.m.vfs.read_file(f"/mnt/{name}"))
                      for name in self.committed}
        self.ids = {name: ident for name, (ident, _) in self.committed.items()}
        self.loose = {}
        self._snapshot()

    # -- checks -------------------------------------------------------------------------

    def _check_exact(self, expect: dict[str, bytearray]) -> None:
        assert sorted(self.m.vfs.listdir("/mnt")) == sorted(expect)
        for name, buf in expect.items():
            assert self.m.vfs.read_file(f"/mnt/{name}") == bytes(buf), name

    @invariant()
    def files_read_back(self) -> None:
        if hasattr(self, "m"):
            self._check_exact(self.files)
            for name in NAMES:
                if name not in self.files:
                    try:
                        self.m.vfs.stat(f"/mnt/{name}")
                    except NoEntry:
                        continue
                    raise AssertionError(f"{name} exists but the model removed it")


FsCrashMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
test_extentfs_survives_crashes_with_what_was_committed = FsCrashMachine.TestCase


def test_a_punch_through_the_page_cache_is_written_back_by_another_files_fsync() -> None:
    """Found by the state machine: the zeroes a punch writes into a cached page must go
    out with the commit that records the punch, whichever file's fsync triggers it."""
    m, name, _ = fs_machine(dax="never", size=16 * MiB)
    v = m.vfs
    v.write_file("/mnt/c", b"\x01", fsync=True)
    with v.open("/mnt/c", "r+") as f:
        f.fallocate(0, 1, punch_hole=True)
    v.write_file("/mnt/b", b"b", fsync=True)
    m.crash(KeepNothing())
    remount(m, name, dax="never")
    assert m.vfs.read_file("/mnt/c") == b"\x00"
