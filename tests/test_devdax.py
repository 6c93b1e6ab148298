"""Device-dax: the char device, its alignment rules, its pagemap, and ndctl's view."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.dax import DaxDevice, Fault
from drivers.pfn_format import PMD_SIZE, PUD_SIZE
from mm.pagemap import MemoryType
from nvdimm import ndctl
from nvdimm.errors import InvalidArgument, NotFound
from nvdimm.units import GiB, KiB, MiB
from tests.conftest import labelled_machine

SIZES = (4 * KiB, PMD_SIZE, PUD_SIZE)


def devdax(align: str = "2M", size: str = "64M", mapping: str | None = None,
           **kw: object) -> DaxDevice:
    m = labelled_machine(**kw)
    ndctl.create_namespace(m, mode="devdax", size=size, align=align, map=mapping)
    dev = m.bus.namespace("dax0.0").device
    assert isinstance(dev, DaxDevice)
    return dev


def test_devdax_is_a_char_device_named_after_the_namespace():
    m = labelled_machine()
    ndctl.create_namespace(m, mode="raw", size="16M")
    ndctl.create_namespace(m, mode="devdax", size="64M")
    ns = m.bus.namespace("dax0.1")
    assert ns.dev == "namespace0.1" and ns.device.name == "dax0.1"
    with pytest.raises(NotFound, match="no active block device"):
        m.block_device("namespace0.1")
    j = ndctl.list_(m, namespace="namespace0.1", verbose=True)[0]
    assert j["daxregion"]["devices"][0]["chardev"] == "dax0.1"
    assert j["daxregion"]["id"] == 0 and "sector_size" not in j and "blockdev" not in j
    # without -v ndctl prints only the char device, where the daxregion would be
    plain = ndctl.list_(m, namespace="namespace0.1")[0]
    assert list(plain) == ["dev", "mode", "map", "size", "uuid", "chardev", "align"]
    assert plain["chardev"] == "dax0.1"


def test_golden_devdax_device():
    from tests.test_fsdax import imported

    dev = imported("devdax").bus.namespace("dax0.0").device
    assert (dev.spa, dev.size, dev.align) == (0x100400000, 247463936, 2 * MiB)
    assert dev.pgmap.type == MemoryType.GENERIC and dev.pgmap.memmap.name == "pmem"
    # compound pages even with the memmap on the device; only the tail sharing needs RAM
    assert dev.pgmap.vmemmap_shift == 9 and dev.pgmap.cost.pmem_bytes == 4 * MiB - 8192
    assert dev.fault(offset=0, size=4096) is Fault.SIGBUS
    assert dev.fault(offset=0, size=PMD_SIZE) is Fault.INSERTED


@pytest.mark.parametrize("align", SIZES)
def test_fault_rules(align):
    if align == PUD_SIZE:
        dev = devdax("1G", size="2G", dimm_size=2 * GiB + 16 * MiB)
    else:
        dev = devdax(align=f"{align >> 10}K", size="64M")
    for size in SIZES:
        expect = (Fault.SIGBUS if size < align else Fault.FALLBACK if size > align
                  else Fault.INSERTED)
        assert dev.fault(offset=0, size=size) is expect, (align, size)
    assert dev.metrics.c[f"dax.fault_{ {4096: 'pte', PMD_SIZE: 'pmd', PUD_SIZE: 'pud'}[align]}"
                         "_inserted"] == 1


@given(st.sampled_from(SIZES), st.sampled_from(SIZES), st.integers(0, 1 << 31))
def test_fault_property(align, size, offset):
    dev = _DEVS[align]
    r = dev.fault(offset=offset, size=size)
    if size < align:
        assert r is Fault.SIGBUS
    elif size > align:
        assert r is Fault.FALLBACK
    else:
        inside = (offset & ~(size - 1)) + size <= dev.size
        assert r is (Fault.INSERTED if inside else Fault.SIGBUS)


_DEVS = {4096: devdax("4K", size="32M"), PMD_SIZE: devdax("2M", size="32M")}
_DEVS[PUD_SIZE] = devdax("1G", size="2G", dimm_size=2 * GiB + 16 * MiB)


def test_a_fault_the_vma_cannot_hold_whole_falls_back():
    dev = devdax()
    assert dev.fault(offset=0, size=PMD_SIZE, vma_start=0x7F0000200000,
                     vma_end=0x7F0000400000, address=0x7F0000201000) is Fault.INSERTED
    assert dev.fault(offset=0, size=PMD_SIZE, vma_start=0x7F0000201000,
                     vma_end=0x7F0000400000, address=0x7F0000201000) is Fault.FALLBACK
    with pytest.raises(InvalidArgument):
        dev.fault(offset=0, size=8192)


def test_mmap_rules():
    dev = devdax()
    dev.check_mmap(offset=0, length=4 * MiB)
    dev.check_mmap(offset=2 * MiB, length=2 * MiB, addr=0x7F0000200000)
    with pytest.raises(InvalidArgument, match="shared"):
        dev.check_mmap(offset=0, length=2 * MiB, shared=False)
    with pytest.raises(InvalidArgument, match="not aligned"):
        dev.check_mmap(offset=0, length=4096)
    with pytest.raises(InvalidArgument, match="not aligned"):
        dev.check_mmap(offset=0, length=2 * MiB, addr=0x7F0000201000)
    with pytest.raises(InvalidArgument, match="offset"):
        dev.check_mmap(offset=4096, length=2 * MiB)


def test_map_mem_devdax_uses_compound_pages_and_shares_tail_memmap():
    dev = devdax(mapping="mem", size="64M")
    pg = dev.pgmap
    assert pg.memmap.name == "compound" and pg.vmemmap_shift == 9
    # 32 compound pages of 2 MiB (the whole namespace), 2 vmemmap pages each
    assert dev.ns.region.bus.platform.dram.used == 32 * 2 * 4096
    assert pg.cost.full_bytes == 64 * 16384
    head = pg.page(pg.first_pfn)
    tail = pg.page(pg.first_pfn + 100)
    assert head.order == 9 and tail.head == head.pfn and tail.is_tail
    tail.get()
    assert head.refcount == 1 and tail.refcount == 0  # references live on the head
    assert pg.home(pg.first_pfn + 100).shared and not pg.home(pg.first_pfn).shared


def test_map_mem_devdax_4k_is_plain_ram_memmap():
    dev = devdax(align="4K", mapping="mem", size="32M")
    assert dev.pgmap.vmemmap_shift == 0
    assert dev.ns.region.bus.platform.dram.used == 64 * (32 * MiB // 4096)


def test_create_output_has_human_sizes_in_the_daxregion_too():
    m = labelled_machine()
    out = ndctl.create_namespace(m, mode="devdax", size="64M")
    assert out["size"] == out["daxregion"]["size"] == "62.00 MiB (65.01 MB)"
    assert out["daxregion"]["devices"][0]["size"] == "62.00 MiB (65.01 MB)"
    listed = ndctl.list_(m, verbose=True)[0]
    assert listed["daxregion"]["size"] == 62 * MiB  # the listing keeps numbers


def test_devdax_refuses_a_private_alignment_and_accepts_a_sector_size():
    m = labelled_machine()
    with pytest.raises(InvalidArgument, match="unsupported align"):
        ndctl.create_namespace(m, mode="devdax", size="64M", align="64K")
    out = ndctl.create_namespace(m, mode="devdax", size="64M", sector_size=4096)
    assert "sector_size" not in out  # as ndctl 76: accepted, not shown
