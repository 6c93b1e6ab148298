"""DAX over a sector (BTT) namespace, per ``btt_remap`` variant, through the filesystem:
a process stores through a mapping of a file while write(2) rewrites the same blocks
(each write(2) is a BTT block write, which moves the block)."""

from __future__ import annotations

import pytest

from fs.extentfs.layout import BLOCK
from nvdimm.errors import NotSupported
from nvdimm.units import MiB
from tests.fs_helpers import fs_machine

N = 8  # file blocks


def _mixed(variant: str) -> tuple[list[bytes], dict[str, int], list[bytes]]:
    """Map the file, store into every block, write(2) over blocks 1 and 5, write another
    file (the lane reuses the blocks the BTT freed), store again into every block of
    the mapping; return what the file and the other file read and the metrics."""
    m, _, _fs = fs_machine(mode="sector", sector_size=4096, dax="always", tracking=False,
                          btt_remap=variant, size=32 * MiB)
    v = m.vfs
    p = m.mm.spawn("app")
    f = v.open("/mnt/f", "w+")
    f.write(b"." * (N * BLOCK))
    f.fsync()
    a = f.mmap(p, N * BLOCK)
    for i in range(N):
        p.store(a + i * BLOCK, b"m1")
    for i in (1, 5):
        f.pwrite(b"W" * BLOCK, i * BLOCK)  # block writes to mapped blocks
    with v.open("/mnt/other", "w+") as g:  # the lane's free blocks get reused
        g.write(b"O" * (4 * BLOCK))
        g.fsync()
        for i in range(N):
            p.store(a + i * BLOCK + 2, b"m2" + bytes([i]))
        other = [g.pread(BLOCK, i * BLOCK) for i in range(4)]
    got = [f.pread(BLOCK, i * BLOCK) for i in range(N)]
    p.munmap(a, N * BLOCK)
    f.close()
    c = {k: v for k, v in m.metrics.c.items() if k.startswith(("btt.remap", "fs.dax"))}
    return got, c, other


def _expected(i: int) -> bytes:
    base = b"W" * BLOCK if i in (1, 5) else b"m1" + b"." * (BLOCK - 2)
    return base[:2] + b"m2" + bytes([i]) + base[5:]


def test_deny_dax_refuses_dax_on_a_sector_namespace() -> None:
    with pytest.raises(NotSupported, match="DAX unsupported"):
        fs_machine(mode="sector", sector_size=4096, dax="always", btt_remap="deny-dax")


def test_unsafe_remap_corrupts_what_the_mapping_and_write_share() -> None:
    got, c, other = _mixed("unsafe")
    lost = [i for i in range(N) if got[i] != _expected(i)]
    damaged = [i for i in range(4) if other[i] != b"O" * BLOCK]
    # the stores after each write went to the freed blocks: lost for the file, and the
    # other file, which the lane wrote into those blocks, holds them
    assert lost == [1, 5] and damaged
    assert c["btt.remap.mapped_remaps"] >= 2


def test_notify_holder_unmaps_before_the_remap_so_nothing_is_lost() -> None:
    got, c, other = _mixed("notify-holder")
    assert got == [_expected(i) for i in range(N)]
    assert other == [b"O" * BLOCK] * 4
    assert c["btt.remap.notifications"] >= 2 and c["fs.dax.remap_unmaps"] >= 2


def test_defer_writes_mapped_blocks_in_place_so_nothing_is_lost() -> None:
    got, c, other = _mixed("defer")
    assert got == [_expected(i) for i in range(N)]
    assert other == [b"O" * BLOCK] * 4
    assert c["btt.remap.deferred_writes"] >= 2
