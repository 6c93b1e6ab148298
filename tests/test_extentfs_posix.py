"""extentfs through the VFS: what POSIX promises, on the buffered and the DAX path."""

from __future__ import annotations

import errno
import os

import pytest

from fs.errors import (
    BadFile,
    CrossDevice,
    Exists,
    IsADirectory,
    NameTooLong,
    NoEntry,
    NotADirectory,
    NotEmpty,
)
from fs.extentfs.layout import BLOCK, INLINE_EXTENTS
from nvdimm.errors import Busy, CorruptMetadata, InvalidArgument, NoSpace, NotSupported
from nvdimm.platform.crash import KeepNothing
from nvdimm.units import MiB
from tests.fs_helpers import fs_machine, remount

PATHS = ("never", "always")


@pytest.fixture(params=PATHS)
def env(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    m, name, fs = fs_machine(dax=request.param, tracking=False)
    return m, name, fs


def test_write_then_read_returns_the_bytes_on_both_paths(env) -> None:  # type: ignore[no-untyped-def]
    m, _, fs = env
    v = m.vfs
    with v.open("/mnt/f", "w+") as f:
        assert f.write(b"abc" * 3000) == 9000
        assert f.pread(6, 8994) == b"abcabc"
        f.seek(0)
        assert f.read(3) == b"abc"
        assert f.stat().size == 9000
        assert f.dax is (fs.dax_mode == "always")


def test_read_past_eof_is_short_and_a_gap_reads_as_zeroes(env) -> None:  # type: ignore[no-untyped-def]
    m, _, _ = env
    with m.vfs.open("/mnt/f", "w+") as f:
        f.pwrite(b"end", 3 * BLOCK + 10)
        assert f.pread(100, 3 * BLOCK + 10) == b"end"
        assert f.pread(20, 5) == bytes(20)
        assert f.pread(10, 10 ** 9) == b""
        f.fsync()  # the buffered path allocates at writeback (delayed allocation)
        assert f.stat().blocks == 8  # only the last block is allocated (512-byte units)


def test_open_flags_follow_posix(env) -> None:  # type: ignore[no-untyped-def]
    m, _, _ = env
    v = m.vfs
    with pytest.raises(NoEntry) as e:
        v.open("/mnt/missing")
    assert e.value.errno == errno.ENOENT
    v.write_file("/mnt/f", b"hello")
    with pytest.raises(Exists):
        v.open("/mnt/f", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with v.open("/mnt/f", "a") as f:
        f.write(b" world")
    assert v.read_file("/mnt/f") == b"hello world"
    with v.open("/mnt/f", "w") as f:  # O_TRUNC
        assert f.stat().size == 0
        with pytest.raises(BadFile):
            f.read()
    with v.open("/mnt/f") as f, pytest.raises(BadFile):
        f.write(b"x")
    v.mkdir("/mnt/d")
    with pytest.raises(IsADirectory):
        v.open("/mnt/d", "w")
    with pytest.raises(NotADirectory):
        v.open("/mnt/f/x", "w")
    with pytest.raises(NameTooLong):
        v.open("/mnt/" + "n" * 59, "w")
    with pytest.raises(InvalidArgument):
        v.open("relative", "w")


def test_unlinked_open_file_lives_until_closed_then_its_blocks_return(env) -> None:  # type: ignore[no-untyped-def]
    m, _, fs = env
    v = m.vfs
    f = v.open("/mnt/f", "w+")
    f.write(bytes(64 * BLOCK))
    f.fsync()
    free_before = fs.statfs()["bfree"]
    v.unlink("/mnt/f")
    assert not v.exists("/mnt/f")
    assert f.pread(4, 0) == bytes(4)
    f.close()
    fs.commit()
    assert fs.statfs()["bfree"] == free_before + 64


def test_rename_replaces_files_and_refuses_what_posix_refuses(env) -> None:  # type: ignore[no-untyped-def]
    m, _, fs = env
    v = m.vfs
    v.write_file("/mnt/a", b"A")
    v.write_file("/mnt/b", b"B")
    v.rename("/mnt/a", "/mnt/b")
    assert v.read_file("/mnt/b") == b"A" and not v.exists("/mnt/a")
    v.mkdir("/mnt/d1")
    v.mkdir("/mnt/d2")
    v.write_file("/mnt/d2/x", b"x")
    with pytest.raises(NotEmpty):
        v.rename("/mnt/d1", "/mnt/d2")
    with pytest.raises(IsADirectory):
        v.rename("/mnt/b", "/mnt/d1")
    with pytest.raises(NotADirectory):
        v.rename("/mnt/d1", "/mnt/b")
    with pytest.raises(InvalidArgument):
        v.rename("/mnt/d2", "/mnt/d2/inside")
    v.rename("/mnt/d1", "/mnt/d2/sub")
    assert v.listdir("/mnt/d2") == ["x", "sub"]
    assert v.stat("/mnt/d2").nlink == 3 and v.stat("/mnt").nlink == 3
    v.rename("/mnt/d2/sub", "/mnt/sub")  # '..' follows the move
    assert fs.lookup(v.stat("/mnt/sub").ino, "..") == fs.sb.root_ino


def test_rename_across_mounts_is_exdev() -> None:
    m, _, _ = fs_machine(dax="never", tracking=False, size=32 * MiB)
    from nvdimm import ndctl

    other = ndctl.create_namespace(m, mode="fsdax", size=32 * MiB)["blockdev"]
    m.mkfs(other)
    m.mount(other, "/mnt/other")
    m.vfs.write_file("/mnt/a", b"a")
    with pytest.raises(CrossDevice):
        m.vfs.rename("/mnt/a", "/mnt/other/a")
    m.vfs.write_file("/mnt/other/b", b"b")
    assert m.vfs.listdir("/mnt/other") == ["b"]


def test_rmdir_needs_an_empty_directory_and_nlink_counts_subdirectories(env) -> None:  # type: ignore[no-untyped-def]
    m, _, _ = env
    v = m.vfs
    v.mkdir("/mnt/d")
    v.mkdir("/mnt/d/e")
    assert v.stat("/mnt/d").nlink == 3
    with pytest.raises(NotEmpty):
        v.rmdir("/mnt/d")
    with pytest.raises(Exists):
        v.mkdir("/mnt/d")
    with pytest.raises(IsADirectory):
        v.unlink("/mnt/d")
    v.rmdir("/mnt/d/e")
    v.rmdir("/mnt/d")
    assert v.listdir("/mnt") == []


def test_truncate_down_then_up_reads_zeroes_in_the_cut_tail(env) -> None:  # type: ignore[no-untyped-def]
    m, _, _ = env
    with m.vfs.open("/mnt/f", "w+") as f:
        f.write(b"x" * (3 * BLOCK))
        f.fsync()
        f.truncate(BLOCK + 100)
        assert f.stat().size == BLOCK + 100
        f.truncate(3 * BLOCK)
        assert f.pread(3 * BLOCK, 0) == b"x" * (BLOCK + 100) + bytes(2 * BLOCK - 100)


def test_punch_hole_reads_zeroes_frees_whole_blocks_and_keeps_the_size(env) -> None:  # type: ignore[no-untyped-def]
    m, _, _fs = env
    with m.vfs.open("/mnt/f", "w+") as f:
        f.write(b"y" * (8 * BLOCK))
        f.fsync()
        f.fallocate(BLOCK + 10, 4 * BLOCK, punch_hole=True)
        f.fsync()
        assert f.stat().size == 8 * BLOCK
        assert f.stat().blocks == (8 - 3) * 8
        data = f.pread(8 * BLOCK, 0)
        assert data == b"y" * (BLOCK + 10) + bytes(4 * BLOCK) + b"y" * (3 * BLOCK - 10)


def test_fallocate_allocates_zeroes_and_enospc_changes_nothing(env) -> None:  # type: ignore[no-untyped-def]
    m, _, _fs = env
    with m.vfs.open("/mnt/f", "w+") as f:
        f.fallocate(0, 10 * BLOCK)
        assert f.stat().size == 10 * BLOCK and f.stat().blocks == 80
        assert f.pread(BLOCK, 5 * BLOCK) == bytes(BLOCK)
        f.fallocate(0, 20 * BLOCK, keep_size=True)
        assert f.stat().size == 10 * BLOCK
        before = f.stat()
        with pytest.raises(NoSpace) as e:
            f.fallocate(0, 1 << 40)
        assert e.value.errno == errno.ENOSPC
        assert f.stat() == before


def test_write_beyond_free_space_is_enospc_and_leaves_earlier_data(env) -> None:  # type: ignore[no-untyped-def]
    m, name, fs = env
    with m.vfs.open("/mnt/f", "w+") as f:
        f.write(b"keep")
        f.fsync()
        too_much = bytes(fs.statfs()["bfree"] * BLOCK + BLOCK)
        with pytest.raises(NoSpace):  # DAX: at write(2); the page cache: at writeback
            f.pwrite(too_much, BLOCK)
            f.fsync()
        assert f.pread(4, 0) == b"keep"
    m.crash(KeepNothing())
    remount(m, name, dax=fs.dax_mode)
    assert m.vfs.read_file("/mnt/f")[:4] == b"keep"


def test_a_file_with_more_extents_than_fit_inline_survives_remount(env) -> None:  # type: ignore[no-untyped-def]
    m, name, fs = env
    v = m.vfs
    n = INLINE_EXTENTS * 3
    with v.open("/mnt/frag", "w+") as f, v.open("/mnt/gap", "w+") as g:
        for i in range(n):  # interleave allocations so every block is its own extent
            f.pwrite(bytes([i]) * BLOCK, 2 * i * BLOCK)
            g.pwrite(b"g" * BLOCK, i * BLOCK)
            f.fsync()
        assert len(fs.iget(f.ino).inode.extents) >= n
    m.reboot()
    fs2 = m.mount(name, "/mnt", dax=fs.dax_mode)
    with m.vfs.open("/mnt/frag") as f:
        for i in range(n):
            assert f.pread(1, 2 * i * BLOCK) == bytes([i])
        assert len(fs2.iget(f.ino).chain) >= 1


def test_files_and_directories_survive_a_clean_reboot(env) -> None:  # type: ignore[no-untyped-def]
    m, name, fs = env
    v = m.vfs
    v.mkdir("/mnt/a")
    v.mkdir("/mnt/a/b")
    v.write_file("/mnt/a/b/c", b"deep" * 2000)
    m.reboot()
    m.mount(name, "/mnt", dax=fs.dax_mode)
    assert m.vfs.read_file("/mnt/a/b/c") == b"deep" * 2000
    assert m.vfs.listdir("/mnt/a") == ["b"]


def test_umount_refuses_while_a_file_is_open(env) -> None:  # type: ignore[no-untyped-def]
    m, _, _ = env
    f = m.vfs.open("/mnt/f", "w")
    with pytest.raises(Busy):
        m.vfs.umount("/mnt")
    f.close()
    m.vfs.umount("/mnt")
    with pytest.raises(NoEntry):
        m.vfs.open("/mnt/f")


def test_dax_always_on_a_sector_namespace_is_refused_with_the_reason() -> None:
    m, name, _ = fs_machine(mode="sector", dax="never", sector_size=4096, tracking=False)
    m.vfs.umount("/mnt")
    with pytest.raises(NotSupported) as e:
        m.mount(name, "/mnt", dax="always")
    assert "DAX unsupported" in e.value.message and "BTT" in e.value.message
    fs = m.mount(name, "/mnt", dax="inode")  # dax=inode falls back to the page cache
    with m.vfs.open("/mnt/f", "w+", dax=True) as f:
        f.write(b"on btt")
        assert not f.dax
    assert fs.provider is None


def test_mount_of_an_unformatted_device_says_to_run_mkfs() -> None:
    m, name, _ = fs_machine(dax="never", tracking=False)
    m.vfs.umount("/mnt")
    m.block_device(name).write(0, bytes(BLOCK))
    with pytest.raises(CorruptMetadata, match="mkfs"):
        m.mount(name, "/mnt")
    with pytest.raises(InvalidArgument, match="dax="):
        m.mount(name, "/mnt", dax="sometimes")


def test_dax_inode_mode_follows_the_per_file_flag() -> None:
    m, _, _fs = fs_machine(dax="inode", tracking=False)
    v = m.vfs
    with v.open("/mnt/plain", "w+") as f:
        f.write(b"p")
        assert not f.dax
    with v.open("/mnt/direct", "w+", dax=True) as f:
        f.write(b"d")
        assert f.dax
    v.set_dax("/mnt/plain", True)
    assert v.stat("/mnt/plain").dax and v.read_file("/mnt/plain") == b"p"


def test_statfs_counts_free_inodes_and_blocks(env) -> None:  # type: ignore[no-untyped-def]
    m, _, fs = env
    before = fs.statfs()
    m.vfs.write_file("/mnt/a", b"a" * 5000, fsync=True)
    m.vfs.mkdir("/mnt/d")
    after = fs.statfs()
    assert after["ffree"] == before["ffree"] - 2
    assert after["bfree"] == before["bfree"] - 3  # two file blocks, one directory block
    m.vfs.unlink("/mnt/a")
    fs.commit()
    assert fs.statfs()["ffree"] == before["ffree"] - 1


def test_a_reused_inode_number_gets_a_new_generation(env) -> None:  # type: ignore[no-untyped-def]
    m, name, fs = env
    m.vfs.write_file("/mnt/a", b"a", fsync=True)
    ino = m.vfs.stat("/mnt/a").ino
    gen = fs.iget(ino).inode.generation
    m.vfs.unlink("/mnt/a")
    m.vfs.umount("/mnt")
    fs = m.mount(name, "/mnt", dax=fs.dax_mode)  # a fresh mount looks from inode 2 again
    m.vfs.write_file("/mnt/b", b"b", fsync=True)
    assert m.vfs.stat("/mnt/b").ino == ino
    assert fs.iget(ino).inode.generation == gen + 1
