"""libnvdimm core: regions, namespaces, labels, allocation, the claim rules."""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvdimm.errors import Busy, InvalidArgument, NoSpace, NotAvailableYet, NotSupported
from nvdimm.machine import Machine, MachineConfig
from nvdimm.units import MiB
from tests.conftest import QEMU_CAPACITY, labelled_machine


def lsa_bytes(m: Machine) -> list[bytes]:
    return [bytes(d.media.read(d.capacity, d.label_size)) for d in m.platform.dimms]


def test_region_without_labels_gets_one_io_namespace_spanning_it():
    m = Machine.create(MachineConfig(dimms=1, dimm_size=QEMU_CAPACITY))
    (r,) = m.bus.regions
    (ns,) = r.namespaces
    assert (ns.kind, ns.mode, ns.size, ns.uuid) == ("io", "raw", QEMU_CAPACITY, None)
    assert m.block_device("pmem0").size == QEMU_CAPACITY
    assert not r.labelled and r.available_size == 0


def test_labelled_qemu_dimm_offers_240_mib_like_linux(machine):
    (r,) = machine.bus.regions
    assert r.labelled and r.namespaces == []
    assert r.available_size == r.max_available_extent == 240 * MiB
    assert r.iset_cookie == 0x2468AC00123456


def test_v12_labels_use_the_v12_interleave_cookie():
    m = labelled_machine(label_version="1.2")
    assert m.bus.regions[0].iset_cookie == 0xBA90120012B4DC


def test_created_namespace_survives_reboot_with_its_identity(machine):
    uid = uuid.UUID("11111111-2222-3333-4444-555555555555")
    machine.bus.create_namespace(mode="raw", size=64 * MiB, name="a", uuid=uid)
    machine.bus.create_namespace(mode="raw", size=32 * MiB, name="b")
    machine.reboot()
    got = [(ns.dev, ns.name, ns.size, ns.offset) for ns in machine.bus.namespaces()]
    assert got == [("namespace0.0", "a", 64 * MiB, 0), ("namespace0.1", "b", 32 * MiB, 64 * MiB)]
    assert machine.bus.namespace("namespace0.0").uuid == uid
    assert machine.block_device("pmem0.1").size == 32 * MiB


def test_default_size_takes_the_largest_free_extent(machine):
    ns = machine.bus.create_namespace(mode="raw")
    assert ns.size == 240 * MiB
    with pytest.raises(NoSpace):
        machine.bus.create_namespace(mode="raw", size=16 * MiB)


@pytest.mark.parametrize("kwargs,exc", [
    ({"mode": "raw", "size": 20 * MiB}, InvalidArgument),      # not a multiple of 16 MiB
    ({"mode": "raw", "size": 256 * MiB}, NoSpace),             # larger than the region
    ({"mode": "raw", "size": 16 * MiB, "name": "x" * 64}, InvalidArgument),
    ({"mode": "bogus", "size": 16 * MiB}, InvalidArgument),
    ({"mode": "fsdax", "size": 16 * MiB, "align": 1 << 30}, InvalidArgument),  # size % align
    ({"mode": "raw", "size": 16 * MiB, "sector_size": 520}, InvalidArgument),
    ({"mode": "raw", "size": 16 * MiB, "region": "region9"}, Exception),
])
def test_refused_create_leaves_labels_and_namespaces_untouched(machine, kwargs, exc):
    machine.bus.create_namespace(mode="raw", size=16 * MiB, name="keep")
    before = lsa_bytes(machine)
    with pytest.raises(exc):
        machine.bus.create_namespace(**kwargs)
    assert lsa_bytes(machine) == before
    assert [ns.name for ns in machine.bus.namespaces()] == ["keep"]


def test_modes_without_a_driver_are_refused_as_not_available():
    from drivers.pmem import PmemDriver
    from nvdimm.claim import DriverRegistry

    reg = DriverRegistry()
    reg.register(PmemDriver())
    m = Machine.create(MachineConfig(dimms=1, dimm_size=QEMU_CAPACITY), drivers=reg)
    m.init_labels()
    with pytest.raises(NotAvailableYet, match="devdax mode is not available"):
        m.bus.create_namespace(mode="devdax")


def test_duplicate_uuid_is_refused(machine):
    uid = uuid.uuid4()
    machine.bus.create_namespace(mode="raw", size=16 * MiB, uuid=uid)
    with pytest.raises(Busy):
        machine.bus.create_namespace(mode="raw", size=16 * MiB, uuid=uid)


def test_destroying_an_active_namespace_needs_force(machine):
    machine.bus.create_namespace(mode="raw", size=16 * MiB)
    with pytest.raises(Busy):
        machine.bus.destroy_namespace("namespace0.0")
    machine.bus.destroy_namespace("namespace0.0", force=True)
    assert machine.bus.namespaces() == []
    machine.reboot()
    assert machine.bus.namespaces() == []
    assert machine.bus.regions[0].available_size == 240 * MiB


def test_label_less_namespace_cannot_be_destroyed():
    m = Machine.create(MachineConfig(dimms=1, dimm_size=QEMU_CAPACITY))
    with pytest.raises(NotSupported):
        m.bus.destroy_namespace("namespace0.0", force=True)


def test_init_labels_is_refused_while_the_region_is_enabled(machine):
    machine.bus.create_namespace(mode="raw", size=16 * MiB)
    before = lsa_bytes(machine)
    with pytest.raises(Busy):
        machine.bus.init_labels("nmem0")
    machine.bus.disable_region("region0")
    with pytest.raises(Busy):  # labels exist: needs force
        machine.bus.init_labels("nmem0")
    assert lsa_bytes(machine) == before


def test_disabled_namespace_has_no_block_device_until_enabled(machine):
    machine.bus.create_namespace(mode="raw", size=16 * MiB)
    machine.bus.disable_namespace("namespace0.0")
    with pytest.raises(Exception, match="disabled namespaces have no block device"):
        machine.block_device("pmem0")
    machine.bus.enable_namespace("namespace0.0")
    assert machine.block_device("pmem0").size == 16 * MiB


def test_interleaved_region_stripes_data_and_labels_across_dimms():
    m = Machine.create(MachineConfig(dimms=2, dimm_size=QEMU_CAPACITY, interleave=True))
    for d in m.bus.dimms:
        m.bus.disable_region("region0")
        m.bus.init_labels(d.dev)
    m.bus.enable_region("region0")
    (r,) = m.bus.regions
    # per-DIMM alignment is 16 MiB / 2 ways: 248 MiB of each 255.875 MiB DIMM
    assert r.ways == 2 and r.available_size == 496 * MiB
    m.bus.create_namespace(mode="raw", size=64 * MiB, name="striped")
    disk = m.block_device("pmem0")
    disk.write(0, b"a" * 4096 + b"b" * 4096, fua=True)
    # 4 KiB interleave: the first stripe on nmem0, the second on nmem1, both at DPA 0.
    assert m.platform.dimms[0].media.read(0, 4) == b"aaaa"
    assert m.platform.dimms[1].media.read(0, 4) == b"bbbb"
    m.reboot()
    (ns,) = m.bus.namespaces()
    assert (ns.name, ns.size) == ("striped", 64 * MiB)
    assert m.block_device("pmem0").read(4096, 4096) == b"b" * 4096


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 6), st.integers(0, 20)),
                min_size=1, max_size=15))
def test_namespace_allocation_never_overlaps_and_accounts_every_byte(ops):
    m = labelled_machine()
    bus = m.bus
    (r,) = bus.regions
    for create, units, pick in ops:
        live = bus.namespaces()
        if create or not live:
            try:
                bus.create_namespace(mode="raw", size=units * 16 * MiB)
            except NoSpace:
                assert r.max_available_extent < units * 16 * MiB
        else:
            bus.destroy_namespace(live[pick % len(live)].dev, force=True)
        spans = sorted((ns.offset, ns.offset + ns.size) for ns in bus.namespaces())
        for (_, e1), (s2, _) in itertools.pairwise(spans):
            assert e1 <= s2
        assert r.available_size + sum(e - s for s, e in spans) == 240 * MiB
    names = sorted((str(ns.uuid), ns.offset, ns.size) for ns in bus.namespaces())
    m.reboot()
    assert sorted((str(ns.uuid), ns.offset, ns.size) for ns in m.bus.namespaces()) == names


def test_new_namespaces_take_the_lowest_free_id_after_the_seed(machine):
    bus = machine.bus
    for name in "abc":
        bus.create_namespace(mode="raw", size=16 * MiB, name=name)
    bus.destroy_namespace("namespace0.1", force=True)
    # The seed (namespace0.3) is taken first; the next seed reuses the freed id 1.
    assert bus.create_namespace(mode="raw", size=16 * MiB).dev == "namespace0.3"
    assert bus.create_namespace(mode="raw", size=16 * MiB).dev == "namespace0.1"


def test_destroy_zeroes_the_info_block_area_even_in_raw_mode(machine):
    ns = machine.bus.create_namespace(mode="raw", size=16 * MiB)
    disk = machine.block_device("pmem0")
    disk.write(0, b"z" * 16384, fua=True)
    spa = ns.spa
    machine.bus.destroy_namespace("namespace0.0", force=True)
    assert machine.platform.memctrl.read(spa, 16384) == bytes(8192) + b"z" * 8192


def _corrupt(m: Machine, off: int) -> None:
    d = m.platform.dimms[0]
    b = d.media.read(d.capacity + off, 1)
    d.media.write(d.capacity + off, bytes([b[0] ^ 0xFF]))


def test_one_corrupt_index_block_falls_back_to_the_other(machine):
    machine.bus.create_namespace(mode="raw", size=16 * MiB, name="kept")
    area_cur = machine.bus.dimms[0].label_storage()
    from nvdimm.label import LabelArea

    cur = LabelArea.load(area_cur).current
    _corrupt(machine, 0x100 * (cur or 0) + 30)  # inside the current index block
    machine.reboot()
    assert [ns.name for ns in machine.bus.namespaces()] == ["kept"]


def test_corrupt_labels_leave_the_region_label_less_and_the_media_untouched(machine):
    machine.bus.create_namespace(mode="raw", size=16 * MiB, name="gone")
    machine.block_device("pmem0").write(0, b"data" * 1024, fua=True)
    _corrupt(machine, 30)
    _corrupt(machine, 0x100 + 30)  # both index blocks fail their checksums
    before = lsa_bytes(machine)
    machine.reboot()
    (ns,) = machine.bus.namespaces()
    assert ns.kind == "io"  # Linux treats a DIMM without a valid index as label-less
    assert lsa_bytes(machine) == before  # probing never writes
    assert machine.block_device("pmem0").read(0, 512)[:4] == b"data"


def test_corrupt_machine_json_is_reported_not_traced_back(tmp_path):
    from nvdimm.errors import InvalidArgument

    m = Machine.create(MachineConfig(dimms=1, dimm_size=64 * MiB))
    m.save(tmp_path)
    (tmp_path / "machine.json").write_text("{ not json")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        Machine.load(tmp_path)
