"""fsck.extentfs: clean filesystems check clean; every corruption kind is found by the
pass that owns it, repaired, and a second fsck is clean; the repaired filesystem mounts
and its surviving files read back."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from fs.extentfs import journal as jrnl
from fs.extentfs.fsck import EXIT_CORRECTED, EXIT_OK, EXIT_UNCORRECTED, FsckReport, fsck
from fs.extentfs.layout import (
    BITS_PER_BLOCK,
    BLOCK,
    DIRENT_SIZE,
    FT_REG,
    INODE_SIZE,
    Dirent,
    Extent,
    Inode,
    Superblock,
    crc,
    decode_dirents,
    decode_inode,
    encode_commit,
    encode_descriptor,
    encode_inode,
)
from nvdimm import ndctl
from nvdimm.errors import Busy, CorruptMetadata, NvdimmError
from nvdimm.machine import Machine
from nvdimm.platform.crash import KeepNothing, RandomCrash
from tests.fs_helpers import fs_machine

MNT = "/mnt"
FILES = {"/d/a": bytes(range(256)) * 80, "/b": b"b" * 5000, "/c": b"see" * 3000,
         "/d/e/f": b"deep" * 1500}


def machine(tracking: bool = False) -> tuple[Machine, str]:
    """A formatted, unmounted 64 MiB fsdax extentfs."""
    m, name, _ = fs_machine(tracking=tracking, mount=False)
    return m, name


def populate(m: Machine, name: str, dax: str = "never") -> dict[str, int]:
    """FILES under /mnt, fsync'd, cleanly unmounted; returns path -> inode."""
    m.mount(name, MNT, dax=dax)
    m.vfs.mkdir(f"{MNT}/d")
    m.vfs.mkdir(f"{MNT}/d/e")
    inos = {}
    for path, data in FILES.items():
        with m.vfs.open(MNT + path, "w+") as f:
            f.write(data)
            f.fsync()
        inos[path] = m.vfs.stat(MNT + path).ino
    for d in ("/d", "/d/e"):
        inos[d] = m.vfs.stat(MNT + d).ino
    m.vfs.umount(MNT)
    return inos


def read_back(m: Machine, name: str, paths: dict[str, bytes]) -> None:
    m.mount(name, MNT)
    try:
        for path, data in paths.items():
            assert m.vfs.read_file(MNT + path) == data, path
    finally:
        m.vfs.umount(MNT)


def repair_and_verify(m: Machine, name: str, survivors: dict[str, bytes]) -> FsckReport:
    """Repair; the repair fixed everything; a second fsck is clean; the fs mounts and
    the survivors read back; after that unmount fsck is still clean."""
    disk = m.block_device(name)
    fixed = fsck(disk, repair=True)
    assert fixed.exit_code == EXIT_CORRECTED, fixed.render()
    again = fsck(disk)
    assert again.clean and again.exit_code == EXIT_OK, again.render()
    read_back(m, name, survivors)
    assert fsck(disk).clean
    return fixed


# -- helpers that damage the image directly ----------------------------------------------


def sb_of(m: Machine, name: str) -> Superblock:
    return Superblock.decode(m.block_device(name).read(0, BLOCK))


def get_inode(m: Machine, name: str, ino: int) -> Inode:
    disk, sb = m.block_device(name), sb_of(m, name)
    tb, off = sb.inode_location(ino)
    inode, more = decode_inode(ino, disk.read(tb * BLOCK, BLOCK)[off:off + INODE_SIZE])
    assert more == 0
    return inode


def put_inode_raw(m: Machine, name: str, ino: int, raw: bytes) -> None:
    disk, sb = m.block_device(name), sb_of(m, name)
    tb, off = sb.inode_location(ino)
    buf = bytearray(disk.read(tb * BLOCK, BLOCK))
    buf[off:off + INODE_SIZE] = raw
    disk.write(tb * BLOCK, bytes(buf))
    disk.flush()


def put_inode(m: Machine, name: str, inode: Inode) -> None:
    put_inode_raw(m, name, inode.ino, encode_inode(inode))


def set_bit(m: Machine, name: str, block: int, on: bool) -> None:
    disk, sb = m.block_device(name), sb_of(m, name)
    bb = sb.bitmap_start + block // BITS_PER_BLOCK
    bits = int.from_bytes(disk.read(bb * BLOCK, BLOCK), "little")
    mask = 1 << (block % BITS_PER_BLOCK)
    bits = bits | mask if on else bits & ~mask
    disk.write(bb * BLOCK, bits.to_bytes(BLOCK, "little"))
    disk.flush()


def is_set(m: Machine, name: str, block: int) -> bool:
    disk, sb = m.block_device(name), sb_of(m, name)
    bb = sb.bitmap_start + block // BITS_PER_BLOCK
    return bool(int.from_bytes(disk.read(bb * BLOCK, BLOCK), "little")
                >> (block % BITS_PER_BLOCK) & 1)


def dirent_slot(m: Machine, name: str, dir_ino: int, entry: str) -> tuple[int, int]:
    """(device block, slot in it) of ``entry`` in a one-block directory."""
    pblk = get_inode(m, name, dir_ino).extents[0].pblk
    slots = decode_dirents(m.block_device(name).read(pblk * BLOCK, BLOCK))
    return pblk, next(i for i, d in enumerate(slots) if d is not None and d.name == entry)


def put_dirent_raw(m: Machine, name: str, pblk: int, slot: int, raw: bytes) -> None:
    disk = m.block_device(name)
    buf = bytearray(disk.read(pblk * BLOCK, BLOCK))
    buf[slot * DIRENT_SIZE:(slot + 1) * DIRENT_SIZE] = raw.ljust(DIRENT_SIZE, b"\0")
    disk.write(pblk * BLOCK, bytes(buf))
    disk.flush()


def free_data_block(m: Machine, name: str) -> int:
    sb = sb_of(m, name)
    return next(b for b in range(sb.data_start + 64, sb.blocks) if not is_set(m, name, b))


# -- clean filesystems -----------------------------------------------------------------------


def test_a_fresh_mkfs_is_clean():
    m, name = machine()
    r = fsck(m.block_device(name))
    assert r.clean and r.exit_code == EXIT_OK and r.problems == []
    sb = sb_of(m, name)
    assert (r.files, r.total_files) == (1, sb.inodes - 1)
    assert (r.blocks, r.total_blocks) == (sb.data_start + 1, sb.blocks)
    text = r.render()
    for title in ("Pass 1: Checking inodes, blocks, and sizes",
                  "Pass 2: Checking directory structure",
                  "Pass 3: Checking directory connectivity",
                  "Pass 4: Checking reference counts", "Pass 5: Checking block bitmap"):
        assert title in text
    assert text.endswith(f"{name}: 1/{sb.inodes - 1} files, {sb.data_start + 1}/{sb.blocks} "
                         "blocks")
    assert r.to_json()["clean"] is True


@pytest.mark.parametrize("dax", ["never", "always"])
def test_a_workload_then_a_clean_unmount_is_clean(dax):
    m, name = machine()
    populate(m, name, dax)
    r = fsck(m.block_device(name))
    assert r.clean, r.render()
    assert r.files == 1 + len(FILES) + 2


def test_big_fragmented_files_with_overflow_chains_are_clean():
    m, name = machine()
    m.mount(name, MNT)
    # interleaved single-block appends fragment two files into > 12 extents each
    with m.vfs.open(f"{MNT}/x", "w") as fx, m.vfs.open(f"{MNT}/y", "w") as fy:
        for i in range(40):
            fx.write(bytes([i]) * BLOCK)
            fx.fsync()
            fy.write(bytes([i + 1]) * BLOCK)
            fy.fsync()
    m.vfs.umount(MNT)
    ino = m.mount(name, MNT).lookup(1, "x")
    st = m.vfs.mount_of(MNT).fs.iget(ino)
    assert len(st.inode.extents) > 12 and st.chain
    m.vfs.umount(MNT)
    assert fsck(m.block_device(name)).clean


def test_fsck_refuses_a_mounted_filesystem_unless_forced_read_only():
    m, name = machine()
    m.mount(name, MNT)
    disk = m.block_device(name)
    with pytest.raises(Busy, match="mounted on /mnt"):
        fsck(disk, vfs=m.vfs)
    with pytest.raises(Busy, match="cannot repair"):
        fsck(disk, vfs=m.vfs, force=True, repair=True)
    r = fsck(disk, vfs=m.vfs, force=True)
    assert r.in_pass(0) == [f"{name} was not cleanly unmounted (mounted, or it crashed)"]


def test_an_unformatted_device_has_nothing_to_check():
    m, name, _ = fs_machine(tracking=False, formatted=False)
    with pytest.raises(CorruptMetadata, match="no extentfs superblock: run mkfs first"):
        fsck(m.block_device(name))


# -- crashes --------------------------------------------------------------------------------


def crash_workload(m: Machine, name: str, dax: str) -> None:
    m.mount(name, MNT, dax=dax)
    m.vfs.mkdir(f"{MNT}/d")
    m.vfs.write_file(f"{MNT}/d/kept", b"k" * 9000, fsync=True)
    m.vfs.write_file(f"{MNT}/gone", b"g" * 7000)  # never fsync'd
    with m.vfs.open(f"{MNT}/d/kept", "r+") as f:
        f.pwrite(b"K" * 100, 10)  # overwrite in place, not fsync'd
    m.vfs.rename(f"{MNT}/gone", f"{MNT}/d/moved")


@pytest.mark.parametrize("policy", [KeepNothing(), RandomCrash(1), RandomCrash(7)],
                         ids=lambda p: p.name)
@pytest.mark.parametrize("dax", ["never", "always"])
def test_after_a_crash_only_recovery_is_needed(policy, dax):
    m, name = machine(tracking=True)
    crash_workload(m, name, dax)
    m.crash(policy)
    m.boot()
    disk = m.block_device(name)
    looked = fsck(disk)
    assert looked.problems == [(0, f"{name} was not cleanly unmounted (mounted, or it crashed)")]
    assert looked.exit_code == EXIT_UNCORRECTED
    fixed = fsck(disk, repair=True)
    assert fixed.problems == looked.problems and fixed.exit_code == EXIT_CORRECTED
    assert fsck(disk).clean
    m.mount(name, MNT)
    assert m.vfs.read_file(f"{MNT}/d/kept")[1000:] == b"k" * 8000
    m.vfs.umount(MNT)


class PowerCut(Exception):
    pass


def test_a_committed_transaction_not_yet_checkpointed_is_replayed(monkeypatch):
    m, name = machine(tracking=True)
    m.mount(name, MNT)
    m.vfs.write_file(f"{MNT}/before", b"1" * 5000, fsync=True)

    def cut(disk, images):
        raise PowerCut

    monkeypatch.setattr(jrnl, "checkpoint", cut)
    with pytest.raises(PowerCut):
        m.vfs.write_file(f"{MNT}/after", b"2" * 5000, fsync=True)
    monkeypatch.undo()
    m.crash(KeepNothing())
    m.boot()
    disk = m.block_device(name)
    looked = fsck(disk)
    # checked as the replay would leave it: only the recovery itself is reported
    assert [p for p, _ in looked.problems] == [0, 0]
    assert "not yet written home" in looked.problems[1][1]
    fixed = fsck(disk, repair=True)
    assert fixed.replayed > 0 and fixed.exit_code == EXIT_CORRECTED
    assert "Replay? yes" in fixed.render()
    assert fsck(disk).clean
    read_back(m, name, {"/before": b"1" * 5000, "/after": b"2" * 5000})


def test_an_orphan_left_by_a_crash_is_freed_quietly():
    m, name = machine(tracking=True)
    m.mount(name, MNT)
    f = m.vfs.open(f"{MNT}/tmp", "w+")
    f.write(b"t" * 20000)
    f.fsync()
    ino = f.stat().ino
    blocks = get_inode(m, name, ino).extents
    m.vfs.unlink(f"{MNT}/tmp")
    m.vfs.sync()  # nlink 0 committed while the file is still open
    m.crash(KeepNothing())
    m.boot()
    assert get_inode(m, name, ino).nlink == 0
    r = fsck(m.block_device(name), repair=True)
    assert r.in_pass(4) == [f"Inode {ino} has no name and a link count of 0 (an orphan)"]
    assert r.in_pass(5) == []  # freeing the orphan's blocks is part of freeing it
    assert not any(is_set(m, name, e.pblk) for e in blocks)
    assert fsck(m.block_device(name)).clean


# -- one test per corruption kind ----------------------------------------------------------


def test_pass5_a_cleared_bitmap_bit():
    m, name = machine()
    inos = populate(m, name)
    pblk = get_inode(m, name, inos["/b"]).extents[0].pblk
    set_bit(m, name, pblk, False)
    r = fsck(m.block_device(name))
    assert r.problems == [(5, "Block bitmap differences: 1 block(s) in use but not marked: "
                              f"+{pblk}")]
    assert r.exit_code == EXIT_UNCORRECTED and "Fix? no" in r.render()
    repair_and_verify(m, name, FILES)
    assert is_set(m, name, pblk)


def test_pass5_a_stray_bit_is_a_leak():
    m, name = machine()
    populate(m, name)
    b = free_data_block(m, name)
    set_bit(m, name, b, True)
    set_bit(m, name, b + 1, True)
    r = fsck(m.block_device(name))
    assert r.problems == [(5, "Block bitmap differences: 2 block(s) marked in use but used "
                              f"by nothing (leaked): -({b}--{b + 1})")]
    repair_and_verify(m, name, FILES)
    assert not is_set(m, name, b)


def test_pass1_an_extent_duplicated_into_another_inode_is_cloned():
    m, name = machine()
    inos = populate(m, name)
    a, c = get_inode(m, name, inos["/d/a"]), get_inode(m, name, inos["/c"])
    assert inos["/d/a"] < inos["/c"]
    shared = a.extents[0]
    nblocks = -(-c.size // BLOCK)
    c.extents.append(Extent(nblocks, shared.pblk, shared.length))
    c.size = nblocks * BLOCK + shared.length * BLOCK
    put_inode(m, name, c)
    r = fsck(m.block_device(name))
    dup = [msg for p, msg in r.problems if p == 1]
    assert len(dup) == 1 and "multiply-claimed" in dup[0] and f"Inode {inos['/c']}" in dup[0]
    assert r.found[0].action == "Clone multiply-claimed blocks"
    grown_c = FILES["/c"] + bytes(nblocks * BLOCK - len(FILES["/c"]))
    grown_c += FILES["/d/a"][:shared.length * BLOCK].ljust(shared.length * BLOCK, b"\0")
    repair_and_verify(m, name, {**FILES, "/c": grown_c})
    after = get_inode(m, name, inos["/c"])
    assert all(not (e.pblk < shared.pend and shared.pblk < e.pend) for e in after.extents)
    assert get_inode(m, name, inos["/d/a"]).extents[0] == shared


def test_pass1_an_extent_pointing_at_metadata_is_removed():
    m, name = machine()
    inos = populate(m, name)
    b = get_inode(m, name, inos["/b"])
    b.extents.append(Extent(100, 5, 3))  # inode table blocks
    put_inode(m, name, b)
    r = fsck(m.block_device(name))
    assert r.problems == [(1, f"Inode {inos['/b']} has an extent (file block 100, 3 blocks "
                              "at 5) pointing at metadata")]
    repair_and_verify(m, name, FILES)


def test_pass1_torn_inode_checksum_only_is_recomputed():
    m, name = machine()
    inos = populate(m, name)
    raw = bytearray(encode_inode(get_inode(m, name, inos["/c"])))
    raw[-4:] = bytes(4)
    put_inode_raw(m, name, inos["/c"], bytes(raw))
    r = fsck(m.block_device(name))
    assert r.problems == [(1, f"Inode {inos['/c']} passes checks, but checksum does not "
                              "match inode")]
    repair_and_verify(m, name, FILES)


def test_pass1_a_torn_inode_that_fails_checks_is_cleared_and_its_name_and_blocks_go():
    m, name = machine()
    inos = populate(m, name)
    ino = inos["/c"]
    inode = get_inode(m, name, ino)
    good = encode_inode(inode)
    torn = encode_inode(Inode(ino, 0o170777, 0, 9, 1 << 60, 0, 0, 0,
                              [Extent(0, 1 << 40, 7)]))
    raw = good[:2] + torn[2:128] + good[128:]  # half new, half old: the CRC fails
    assert crc(raw[:252]) != int.from_bytes(raw[252:], "little")
    put_inode_raw(m, name, ino, raw)
    r = fsck(m.block_device(name), repair=True)
    assert [p for p, _ in r.problems] == [1, 2, 5], r.render()
    assert r.problems[0][1].startswith(f"Inode {ino} has a bad checksum and ")
    assert f"has deleted/unused inode {ino}" in r.problems[1][1]
    assert "leaked" in r.problems[2][1]
    survivors = {p: d for p, d in FILES.items() if p != "/c"}
    assert fsck(m.block_device(name)).clean
    read_back(m, name, survivors)
    m.mount(name, MNT)
    assert not m.vfs.exists(f"{MNT}/c")
    m.vfs.umount(MNT)


def test_pass1_a_broken_overflow_chain_is_truncated():
    m, name = machine()
    m.mount(name, MNT)
    with m.vfs.open(f"{MNT}/x", "w") as fx, m.vfs.open(f"{MNT}/y", "w") as fy:
        for i in range(20):
            fx.write(bytes([i]) * BLOCK)
            fx.fsync()
            fy.write(b"y" * BLOCK)
            fy.fsync()
    fs = m.vfs.mount_of(MNT).fs
    ino = fs.lookup(1, "x")
    chain = fs.iget(ino).chain
    m.vfs.umount(MNT)
    disk = m.block_device(name)
    disk.write(chain[0] * BLOCK, b"\xff" * BLOCK)
    disk.flush()
    r = fsck(disk)
    assert r.in_pass(1) == [f"Inode {ino} has a damaged overflow extent block: block "
                            f"{chain[0]} is not an extent block (8 extents lost)"]
    assert "leaked" in r.in_pass(5)[0]
    keep = b"".join(bytes([i]) * BLOCK for i in range(12)) + bytes(8 * BLOCK)
    repair_and_verify(m, name, {"/x": keep, "/y": b"y" * 20 * BLOCK})


@pytest.mark.parametrize("kind", ["bad-length", "free-inode", "bad-inode", "filetype",
                                  "duplicate", "bad-name", "dot-elsewhere"])
def test_pass2_a_damaged_directory_entry(kind):
    m, name = machine()
    inos = populate(m, name)
    # the damaged entry is /b's, except for "duplicate": /c's entry renamed "b" (the
    # later of two names is the one cleared)
    victim = "/c" if kind == "duplicate" else "/b"
    pblk, slot = dirent_slot(m, name, 1, victim[1:])
    free = next(i for i in range(2, 60) if i not in inos.values())
    b_ino = inos[victim]
    raw, want, survivors = {
        "bad-length": (Dirent(b_ino, "b", FT_REG).encode()[:4] + b"\x00\x01", "is damaged",
                       {p: d for p, d in FILES.items() if p != "/b"}),
        "free-inode": (Dirent(free, "b", FT_REG).encode(), f"has deleted/unused inode {free}",
                       {p: d for p, d in FILES.items() if p != "/b"}),
        "bad-inode": (Dirent(1 << 30, "b", FT_REG).encode(), f"has bad inode #{1 << 30}",
                      {p: d for p, d in FILES.items() if p != "/b"}),
        "filetype": (Dirent(b_ino, "b", 2).encode(), "incorrect filetype (was 2, should be 1)",
                     FILES),
        "duplicate": (Dirent(b_ino, "b", FT_REG).encode(), "is a duplicate entry",
                      {p: d for p, d in FILES.items() if p != "/c"}),
        "bad-name": (Dirent(b_ino, "x/y", FT_REG).encode(), "has an invalid name",
                     {p: d for p, d in FILES.items() if p != "/b"}),
        "dot-elsewhere": (Dirent(b_ino, "..", 2).encode(), "'..' entry out of place",
                          {p: d for p, d in FILES.items() if p != "/b"}),
    }[kind]
    put_dirent_raw(m, name, pblk, slot, raw)
    r = fsck(m.block_device(name))
    assert any(p == 2 and want in msg for p, msg in r.problems), r.render()
    fixed = repair_and_verify(m, name, survivors)
    if kind in ("bad-length", "duplicate", "bad-name", "dot-elsewhere"):
        # the file lost its only name: pass 4 gives it one in /lost+found
        assert f"Unattached inode {b_ino}" in fixed.in_pass(4)
        read_back(m, name, {f"/lost+found/#{b_ino}": FILES[victim]})


def test_pass2_missing_dot_entries_are_rewritten():
    m, name = machine()
    inos = populate(m, name)
    pblk = get_inode(m, name, inos["/d"]).extents[0].pblk
    put_dirent_raw(m, name, pblk, 0, b"")
    put_dirent_raw(m, name, pblk, 1, b"")
    r = fsck(m.block_device(name))
    assert r.problems == [(2, f"Missing '.' in directory inode {inos['/d']}"),
                          (2, f"Missing '..' in directory inode {inos['/d']}")]
    repair_and_verify(m, name, FILES)


def test_pass3_an_unreachable_directory_goes_to_lost_and_found():
    m, name = machine()
    inos = populate(m, name)
    pblk, slot = dirent_slot(m, name, 1, "d")
    put_dirent_raw(m, name, pblk, slot, b"")  # /d loses its name (root's nlink not fixed)
    r = fsck(m.block_device(name))
    d = inos["/d"]
    assert r.in_pass(3) == [f"Unconnected directory inode {d}", "/lost+found not found"]
    assert r.in_pass(4) == ["Inode 1 ref count is 4, should be 3"]
    moved = {f"/lost+found/#{d}" + p[2:] if p.startswith("/d/") else p: data
             for p, data in FILES.items()}
    repair_and_verify(m, name, moved)
    m.mount(name, MNT)
    assert m.vfs.stat(f"{MNT}/lost+found").is_dir
    assert m.vfs.listdir(f"{MNT}/lost+found") == [f"#{d}"]
    m.vfs.mkdir(f"{MNT}/lost+found/#{d}/new")  # the reconnected tree works
    m.vfs.rename(f"{MNT}/lost+found/#{d}", f"{MNT}/d")
    m.vfs.umount(MNT)
    assert fsck(m.block_device(name)).clean


def test_pass3_a_wrong_dotdot_is_fixed():
    m, name = machine()
    inos = populate(m, name)
    pblk = get_inode(m, name, inos["/d/e"]).extents[0].pblk
    put_dirent_raw(m, name, pblk, 1, Dirent(1, "..", 2).encode())
    r = fsck(m.block_device(name))
    assert r.problems == [(3, f"'..' in directory inode {inos['/d/e']} is 1, should be "
                              f"{inos['/d']}")]
    repair_and_verify(m, name, FILES)


@pytest.mark.parametrize("path,nlink,want", [("/b", 5, 1), ("/c", 0, 1), ("/d", 7, 3)])
def test_pass4_a_wrong_link_count(path, nlink, want):
    m, name = machine()
    inos = populate(m, name)
    inode = get_inode(m, name, inos[path])
    inode.nlink = nlink
    put_inode(m, name, inode)
    r = fsck(m.block_device(name))
    assert r.problems == [(4, f"Inode {inos[path]} ref count is {nlink}, should be {want}")]
    repair_and_verify(m, name, FILES)
    assert get_inode(m, name, inos[path]).nlink == want


def test_pass4_an_orphan_made_by_hand_is_freed():
    m, name = machine()
    inos = populate(m, name)
    pblk, slot = dirent_slot(m, name, 1, "b")
    put_dirent_raw(m, name, pblk, slot, b"")
    inode = get_inode(m, name, inos["/b"])
    inode.nlink = 0
    put_inode(m, name, inode)
    r = fsck(m.block_device(name))
    assert r.problems == [(4, f"Inode {inos['/b']} has no name and a link count of 0 (an "
                              "orphan)")]
    repair_and_verify(m, name, {p: d for p, d in FILES.items() if p != "/b"})
    assert not is_set(m, name, inode.extents[0].pblk)


def test_pass4_an_unattached_file_goes_to_lost_and_found():
    m, name = machine()
    inos = populate(m, name)
    pblk, slot = dirent_slot(m, name, inos["/d"], "a")
    put_dirent_raw(m, name, pblk, slot, b"")
    r = fsck(m.block_device(name))
    a = inos["/d/a"]
    assert r.in_pass(4) == [f"Unattached inode {a}", "/lost+found not found"]
    files = {p: d for p, d in FILES.items() if p != "/d/a"}
    repair_and_verify(m, name, {**files, f"/lost+found/#{a}": FILES["/d/a"]})


def test_phase0_a_superblock_checksum_mismatch_is_rewritten():
    m, name = machine()
    populate(m, name)
    disk = m.block_device(name)
    raw = bytearray(disk.read(0, BLOCK))
    raw[121] ^= 0xFF
    disk.write(0, bytes(raw))
    disk.flush()
    r = fsck(disk)
    assert r.problems == [(0, "Superblock checksum does not match (its fields are "
                              "consistent)")]
    repair_and_verify(m, name, FILES)


def test_phase0_a_damaged_journal_superblock_is_recreated():
    m, name = machine()
    populate(m, name)
    disk, sb = m.block_device(name), sb_of(m, name)
    disk.write(sb.journal_start * BLOCK, bytes(BLOCK))
    disk.flush()
    r = fsck(disk)
    assert len(r.problems) == 1 and "journal superblock is damaged" in r.problems[0][1]
    repair_and_verify(m, name, FILES)


def test_a_hand_made_transaction_is_checked_as_replayed_without_repair():
    """A committed transaction that frees /b's bitmap bit: without repair fsck checks the
    replayed view (so pass 5 reports the bit), and writes nothing."""
    m, name = machine()
    inos = populate(m, name)
    disk, sb = m.block_device(name), sb_of(m, name)
    pblk = get_inode(m, name, inos["/b"]).extents[0].pblk
    bb = sb.bitmap_start + pblk // BITS_PER_BLOCK
    img = (int.from_bytes(disk.read(bb * BLOCK, BLOCK), "little")
           & ~(1 << pblk % BITS_PER_BLOCK)).to_bytes(BLOCK, "little")
    seq = int.from_bytes(disk.read(sb.journal_start * BLOCK, BLOCK)[8:16], "little")
    desc = encode_descriptor(seq, [bb])
    j = sb.journal_start
    disk.write((j + 1) * BLOCK, desc + img + encode_commit(seq, crc(desc + img)))
    disk.flush()
    before = disk.read(0, 64 * BLOCK)
    r = fsck(disk)
    assert [p for p, _ in r.problems] == [0, 5]
    assert disk.read(0, 64 * BLOCK) == before
    fixed = fsck(disk, repair=True)
    assert fixed.replayed == 1 and fixed.exit_code == EXIT_CORRECTED
    assert fsck(disk).clean
    read_back(m, name, FILES)


def test_pass1_an_unreadable_inode_table_block_is_rewritten_and_its_inodes_lost():
    m, name, _ = fs_machine(mode="raw", tracking=False, mount=False)  # no info block
    m.mount(name, MNT)
    files = {f"/f{i}": bytes([i]) * (i * 100 + 1) for i in range(2, 24)}
    for path, data in files.items():
        m.vfs.write_file(MNT + path, data, fsync=True)
    inos = {p: m.vfs.stat(MNT + p).ino for p in files}
    m.vfs.umount(MNT)
    sb = sb_of(m, name)
    bad = sb.inode_table_start + 1  # inodes 16..31
    ndctl.inject_error(m, "namespace0.0", block=bad * BLOCK // 512, count=BLOCK // 512)
    disk = m.block_device(name)
    r = fsck(disk)
    assert r.found[0].phase == 1 and r.found[0].message == (
        f"inode table block (block {bad}) cannot be read: media error")
    assert r.found[0].action == "Rewrite as zeroes"
    lost = {p for p, i in inos.items() if 16 <= i < 32}
    assert lost and len(r.in_pass(2)) == len(lost)  # their names point at free inodes
    repair_and_verify(m, name, {p: d for p, d in files.items() if p not in lost})


def test_report_json_and_text_agree():
    m, name = machine()
    inos = populate(m, name)
    inode = get_inode(m, name, inos["/b"])
    inode.nlink = 3
    put_inode(m, name, inode)
    r = fsck(m.block_device(name), repair=True)
    j = r.to_json()
    assert j["exit_code"] == 1 and j["fixed"] == 1 and not j["clean"]
    assert j["problems"] == [{"pass": 4, "message": f"Inode {inos['/b']} ref count is 3, "
                              "should be 1", "action": "Fix", "fixed": True}]
    text = r.render()
    assert f"Inode {inos['/b']} ref count is 3, should be 1.  Fix? yes" in text
    assert f"{name}: ***** FILE SYSTEM WAS MODIFIED *****" in text
    lines = text.splitlines()
    assert lines.index("Pass 4: Checking reference counts") < lines.index(
        f"Inode {inos['/b']} ref count is 3, should be 1.  Fix? yes") < lines.index(
        "Pass 5: Checking block bitmap")


# -- random workloads ------------------------------------------------------------------------

NAMES = ["a", "b", "c"]
DIRS = ["/p", "/p/q", "/r", "/p/s"]
path_st = st.tuples(st.sampled_from(["", "/p", "/p/q", "/r"]), st.sampled_from(NAMES)).map(
    lambda t: f"{t[0]}/{t[1]}")
any_path_st = st.one_of(path_st, st.sampled_from(DIRS))


@functools.cache
def _shared(tracking: bool) -> tuple[Machine, str]:
    return machine(tracking=tracking)


class Workload(RuleBasedStateMachine):
    """Random namespace and data operations on a mounted extentfs, mirrored in a model
    (an operation that fails must change nothing). ``remount`` unmounts cleanly, runs
    fsck (it must be clean) and compares every file and directory with the model;
    ``sync_then_crash`` cuts the power after sync(2): fsck must find only that."""

    def __init__(self) -> None:
        super().__init__()
        self.m, self.name = _shared(True)
        self.m.mkfs(self.name)
        self.files: dict[str, bytearray] = {}
        self.dirs: set[str] = set()
        self.stamp = 0
        self.dax = "never"

    @initialize(dax=st.sampled_from(["never", "always"]))
    def mount(self, dax: str) -> None:
        self.dax = dax
        self.m.mount(self.name, MNT, dax=dax)
        for d in ("/p", "/p/q"):
            self.m.vfs.mkdir(MNT + d)
            self.dirs.add(d)

    def _try(self, fn: Callable[[], object]) -> bool:
        try:
            fn()
        except NvdimmError:
            return False
        return True

    @rule(path=path_st, off=st.integers(0, 40000), n=st.integers(1, 20000), sync=st.booleans())
    def write(self, path: str, off: int, n: int, sync: bool) -> None:
        self.stamp += 1
        data = bytes([self.stamp % 251 + 1]) * n

        def op() -> None:
            with self.m.vfs.open(MNT + path, "a+") as f:
                f.pwrite(data, off)
                if sync:
                    f.fsync()

        if self._try(op):
            buf = self.files.setdefault(path, bytearray())
            buf.extend(bytes(max(0, off - len(buf))))
            buf[off:off + n] = data

    @rule(path=path_st)
    def unlink(self, path: str) -> None:
        if self._try(lambda: self.m.vfs.unlink(MNT + path)):
            del self.files[path]

    @rule(src=any_path_st, dst=any_path_st)
    def rename(self, src: str, dst: str) -> None:
        if not self._try(lambda: self.m.vfs.rename(MNT + src, MNT + dst)) or src == dst:
            return
        if src in self.files:
            self.files[dst] = self.files.pop(src)
            return
        self.dirs.discard(dst)
        for d in sorted(self.dirs):
            if d == src or d.startswith(src + "/"):
                self.dirs.remove(d)
                self.dirs.add(dst + d[len(src):])
        for f in sorted(self.files):
            if f.startswith(src + "/"):
                self.files[dst + f[len(src):]] = self.files.pop(f)

    @rule(path=st.sampled_from(DIRS))
    def mkdir(self, path: str) -> None:
        if self._try(lambda: self.m.vfs.mkdir(MNT + path)):
            self.dirs.add(path)

    @rule(path=st.sampled_from(DIRS))
    def rmdir(self, path: str) -> None:
        if self._try(lambda: self.m.vfs.rmdir(MNT + path)):
            self.dirs.remove(path)

    @rule(path=path_st, size=st.integers(0, 50000), sync=st.booleans())
    def truncate(self, path: str, size: int, sync: bool) -> None:
        def op() -> None:
            with self.m.vfs.open(MNT + path, "r+") as f:
                f.truncate(size)
                if sync:
                    f.fsync()

        if self._try(op):
            buf = self.files[path]
            del buf[size:]
            buf.extend(bytes(size - len(buf)))

    @rule(path=path_st, off=st.integers(0, 30000), n=st.integers(1, 30000),
          how=st.sampled_from(["keep_size", "grow", "punch"]))
    def fallocate(self, path: str, off: int, n: int, how: str) -> None:
        def op() -> None:
            with self.m.vfs.open(MNT + path, "r+") as f:
                f.fallocate(off, n, punch_hole=how == "punch", keep_size=how == "keep_size")

        if self._try(op):
            buf = self.files[path]
            if how == "grow":
                buf.extend(bytes(max(0, off + n - len(buf))))
            elif how == "punch":
                end = min(off + n, len(buf))
                buf[off:end] = bytes(max(0, end - off))

    @rule()
    def remount(self) -> None:
        self.m.vfs.umount(MNT)
        r = fsck(self.m.block_device(self.name))
        assert r.clean, r.render()
        self.m.mount(self.name, MNT, dax=self.dax)
        self.compare()

    @rule(seed=st.integers(0, 1 << 16))
    def sync_then_crash(self, seed: int) -> None:
        """After sync(2) everything survives any crash; recovery is all fsck finds."""
        self.m.vfs.sync()
        self.m.crash(RandomCrash(seed))
        self.m.boot()
        r = fsck(self.m.block_device(self.name), repair=True)
        assert r.problems == [(0, f"{self.name} was not cleanly unmounted (mounted, or it "
                                  "crashed)")], r.render()
        self.m.mount(self.name, MNT, dax=self.dax)
        self.compare()

    def compare(self) -> None:
        v = self.m.vfs
        seen_files: dict[str, bytes] = {}
        seen_dirs: set[str] = set()

        def walk(d: str) -> None:
            for e in v.listdir(MNT + d):
                p = f"{d}/{e}"
                if v.stat(MNT + p).is_dir:
                    seen_dirs.add(p)
                    walk(p)
                else:
                    seen_files[p] = v.read_file(MNT + p)

        walk("")
        assert seen_dirs == self.dirs
        assert seen_files == {p: bytes(b) for p, b in self.files.items()}

    def teardown(self) -> None:
        if MNT in self.m.vfs.mounts:
            self.remount()
            self.m.vfs.umount(MNT)


Workload.TestCase.settings = settings(max_examples=60, stateful_step_count=40,
                                      deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])
test_random_workloads_then_a_clean_unmount_are_clean = Workload.TestCase


op_st = st.one_of(
    st.tuples(st.just("write"), path_st, st.integers(0, 40000), st.integers(1, 20000),
              st.booleans()),
    st.tuples(st.just("write"), path_st, st.integers(0, 40000), st.integers(1, 20000),
              st.booleans()),
    st.tuples(st.just("unlink"), path_st),
    st.tuples(st.just("rename"), any_path_st, any_path_st),
    st.tuples(st.just("mkdir"), st.sampled_from(DIRS)),
    st.tuples(st.just("rmdir"), st.sampled_from(DIRS)),
    st.tuples(st.just("truncate"), path_st, st.integers(0, 50000)),
    st.tuples(st.just("punch"), path_st, st.integers(0, 30000), st.integers(1, 30000)),
    st.tuples(st.just("open-unlink"), path_st),
)


def run_ops(m: Machine, ops: list[tuple[Any, ...]]) -> None:
    """Apply ``ops`` (failures ignored); "open-unlink" leaves an open, unlinked file."""
    v = m.vfs
    for op in [("mkdir", "/p"), ("mkdir", "/p/q"), *ops]:
        kind, path = op[0], MNT + op[1]
        try:
            if kind == "write":
                with v.open(path, "a+") as f:
                    f.pwrite(bytes([op[2] % 251]) * op[3], op[2])
                    if op[4]:
                        f.fsync()
            elif kind == "unlink":
                v.unlink(path)
            elif kind == "rename":
                v.rename(path, MNT + op[2])
            elif kind == "mkdir":
                v.mkdir(path)
            elif kind == "rmdir":
                v.rmdir(path)
            elif kind == "truncate":
                v.truncate(path, op[2])
            elif kind == "punch":
                with v.open(path, "r+") as f:
                    f.fallocate(op[2], op[3], punch_hole=True)
            elif kind == "open-unlink":
                v.open(path, "r")
                v.unlink(path)
                v.sync()
        except NvdimmError:
            pass


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=st.lists(op_st, min_size=3, max_size=25), dax=st.sampled_from(["never", "always"]),
       seed=st.integers(0, 1000))
def test_random_workloads_then_a_crash_need_only_recovery(ops, dax, seed):
    m, name = _shared(True)
    m.mkfs(name)
    m.mount(name, MNT, dax=dax)
    run_ops(m, ops)
    m.crash(RandomCrash(seed))
    m.boot()
    disk = m.block_device(name)
    r = fsck(disk, repair=True)
    assert all(p == 0 or "orphan" in msg for p, msg in r.problems), r.render()
    assert fsck(disk).clean
    m.mount(name, MNT)  # and the kernel's own recovery agrees
    m.vfs.umount(MNT)
    assert fsck(disk).clean


# -- random damage ---------------------------------------------------------------------------


@functools.cache
def _damaged_base() -> tuple[Machine, str, list[int], bytes]:
    """A populated filesystem (with an overflow chain) and the metadata blocks worth
    damaging; returns the machine, the device, those blocks and the image to restore."""
    m, name = machine()
    populate(m, name)
    m.mount(name, MNT)
    with m.vfs.open(f"{MNT}/x", "w") as fx, m.vfs.open(f"{MNT}/d/y", "w") as fy:
        for i in range(16):
            fx.write(bytes([i]) * BLOCK)
            fx.fsync()
            fy.write(b"y" * BLOCK)
            fy.fsync()
    fs = m.vfs.mount_of(MNT).fs
    x = fs.iget(fs.lookup(1, "x"))
    dirs = [fs.iget(i).inode.extents[0].pblk for i in (1, fs.lookup(1, "d"))]
    m.vfs.umount(MNT)
    sb = sb_of(m, name)
    targets = [sb.bitmap_start, sb.inode_table_start, *dirs, *x.chain]
    keep = sb.data_start + 256
    return m, name, targets, m.block_device(name).read(0, keep * BLOCK)


damage_st = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, BLOCK - 1),
              st.sampled_from(["byte", "zero64", "ones8", "copy64", "copy256"]),
              st.integers(0, 255)),
    min_size=1, max_size=6)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(damage=damage_st)
def test_random_metadata_damage_is_repaired_in_one_run(damage):
    m, name, targets, image = _damaged_base()
    disk = m.block_device(name)
    disk.write(0, image)
    disk.flush()
    for which, off, how, value in damage:
        b = targets[which % len(targets)]
        buf = bytearray(disk.read(b * BLOCK, BLOCK))
        if how == "byte":
            buf[off] = value
        elif how == "zero64":
            o = off // 64 * 64
            buf[o:o + 64] = bytes(64)
        elif how.startswith("copy"):  # one entry (inode) slot over another
            n = int(how[4:])
            o, src = off // n * n, value % (BLOCK // n) * n
            buf[o:o + n] = buf[src:src + n]
        else:
            o = off // 8 * 8
            buf[o:o + 8] = b"\xff" * 8
        disk.write(b * BLOCK, bytes(buf))
    disk.flush()
    image = disk.read(0, disk.size)
    looked = fsck(disk)  # writes nothing, and lists what the repair will do
    assert disk.read(0, disk.size) == image
    first = fsck(disk, repair=True)
    assert first.exit_code in (EXIT_OK, EXIT_CORRECTED), first.render()
    assert looked.problems == first.problems
    second = fsck(disk)
    assert second.clean, first.render() + "\n----\n" + second.render()
    m.mount(name, MNT)
    v = m.vfs

    def walk(d: str) -> None:
        for e in v.listdir(d):
            p = f"{d}/{e}"
            if v.stat(p).is_dir:
                walk(p)
            else:
                v.read_file(p)

    walk(MNT)
    m.vfs.umount(MNT)
    assert fsck(disk).clean
