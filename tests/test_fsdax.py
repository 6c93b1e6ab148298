"""The fsdax personality: golden images, the model's own namespaces, the claim lifecycle."""

from __future__ import annotations

import functools
import json
import uuid

import attrs
import pytest

from drivers.pfn import FsdaxDevice, PfnDriver
from drivers.pfn_format import INFO_OFFSET, PfnInfo, UnsupportedInfoBlock
from nvdimm import ndctl
from nvdimm.errors import InvalidArgument, NoSpace, NotFound
from nvdimm.machine import Machine, MachineConfig
from nvdimm.platform.crash import policy_from_name
from nvdimm.units import KiB, MiB
from tests.conformance import golden
from tests.conftest import QEMU_CAPACITY, labelled_machine

pytestmark = pytest.mark.golden

UID = "11111111-2222-3333-4444-555555555555"
#: case -> (namespace, dataoff Linux reported, map)
GOLDEN = {
    "fsdax-dev": ("namespace0.0", 0x400000, "dev"),
    "fsdax-mem": ("namespace0.0", 0x200000, "mem"),
    "v12-fsdax": ("namespace0.0", 0x400000, "dev"),
    "labelless-fsdax": ("namespace0.0", 0x600000, "dev"),
    "devdax": ("namespace0.0", 0x400000, "dev"),
    "multi": ("namespace0.1", 0x200000, "dev"),
}


@functools.cache
def imported(case: str) -> Machine:
    c = golden.load_case(case)
    return Machine.import_image(golden.image(c), label_size=c.label_size_bytes)


def golden_bytes(case: str, off: int, n: int) -> bytes:
    with open(golden.image(golden.load_case(case)), "rb") as f:
        f.seek(off)
        return f.read(n)


def without_uuid_and_checksum(block8k: bytes) -> bytes:
    """The first 8 KiB of a namespace minus what differs from run to run."""
    return block8k[:INFO_OFFSET + 16] + block8k[INFO_OFFSET + 32:8192 - 8]


# -- golden images: what the model reads ---------------------------------------------------


@pytest.mark.parametrize("case", list(GOLDEN))
def test_golden_image_probes_to_what_linux_reported(case):
    dev, dataoff, mapping = GOLDEN[case]
    m = imported(case)
    report = golden.linux_report(golden.load_case(case))
    (linux,) = [ns for ns in report.namespaces if ns["dev"] == dev]
    ns = m.bus.namespace(dev)
    assert ns.enabled and ns.mode == linux["mode"]
    j = ndctl.namespace_json(ns, verbose=True)
    for key in ("mode", "map", "size", "align", "uuid"):
        assert j[key] == linux[key], key
    assert ns.device.layout.dataoff == dataoff and ns.device.layout.mode.map == mapping
    for path, value in report.sysfs.items():  # pfn0.0/... or dax0.0/...
        if "/namespace" not in path:
            assert ns.device.sysfs()[path.rsplit("/", 1)[1]] == value, path
    for ib in report.infoblocks:  # ndctl read-infoblock on the disabled namespace
        assert ns.device.info.to_json(dev) == ib


@pytest.mark.parametrize("case", [c for c in GOLDEN if c != "devdax"])
def test_golden_fsdax_disk_reads_back_the_pattern(case):
    dev, dataoff, _ = GOLDEN[case]
    m = imported(case)
    disk = m.block_device(dev)
    assert disk.read(0, 1 << 20) == golden.pattern_bytes()
    assert m.bus.namespace(dev).read_bytes(dataoff, 512) == golden.pattern_bytes()[:512]


# -- the model's own namespaces: what Linux would have written --------------------------------


@pytest.mark.parametrize(("case", "mode", "mapping", "labels"), [
    ("fsdax-dev", "fsdax", "dev", "1.1"),
    ("fsdax-mem", "fsdax", "mem", "1.1"),
    ("v12-fsdax", "fsdax", None, "1.2"),
    ("devdax", "devdax", None, "1.1"),
])
def test_model_namespace_of_the_same_size_is_written_as_linux_wrote_it(case, mode, mapping,
                                                                       labels):
    m = labelled_machine(label_version=labels)
    out = ndctl.create_namespace(m, region="region0", mode=mode, map=mapping, uuid=UID,
                                 name=f"golden-{case}")
    (linux,) = golden.linux_report(golden.load_case(case)).created
    assert list(out) == list(linux)  # ndctl's keys, in ndctl's order
    assert {**out, "uuid": None} == {**linux, "uuid": None}
    media = m.platform.dimms[0].media
    assert without_uuid_and_checksum(media.read(0, 8192)) == without_uuid_and_checksum(
        golden_bytes(case, 0, 8192))
    # labels too, byte for byte (v1.2: the pfn abstraction GUID)
    assert media.read(QEMU_CAPACITY, 128 * KiB) == golden_bytes(case, QEMU_CAPACITY, 128 * KiB)
    # and the info block says what it says in Linux's, field by field
    ib = PfnInfo.unpack(media.read(INFO_OFFSET, 4096))
    theirs = PfnInfo.unpack(golden_bytes(case, INFO_OFFSET, 4096))
    assert ib.to_json("x") | {"uuid": ""} == theirs.to_json("x") | {"uuid": ""}


def test_label_less_namespace_reconfigured_to_fsdax_as_linux_did():
    """``create-namespace -f -e namespace0.0 -m fsdax`` on a label-less DIMM: a null
    parent uuid and the whole 256 MiB region."""
    m = Machine.create(MachineConfig(dimms=1, dimm_size=256 * MiB, label_size=0))
    ns = m.bus.namespace("namespace0.0")
    m.bus.disable_namespace(ns.dev)
    drv = m.drivers.for_mode("fsdax")
    drv.validate(ns)
    drv.format(ns)
    m.bus.enable_namespace(ns.dev)
    assert ns.mode == "fsdax" and isinstance(ns.device, FsdaxDevice)
    mine = m.platform.dimms[0].media.read(0, 8192)
    theirs = golden_bytes("labelless-fsdax", 0, 8192)
    assert without_uuid_and_checksum(mine) == without_uuid_and_checksum(theirs)
    (linux,) = golden.linux_report(golden.load_case("labelless-fsdax")).namespaces
    j = ndctl.namespace_json(ns, verbose=True)
    assert {**j, "uuid": None} == {**linux, "uuid": None} and "raw_uuid" not in j


def test_multi_fsdax_namespace_matches_linux():
    m = labelled_machine()
    report = golden.linux_report(golden.load_case("multi"))
    layout = json.loads(golden.load_case("multi").layout_json.read_text())
    labels = {lb["name"]: lb["uuid"] for lb in layout["labels"]}
    ndctl.create_namespace(m, mode="sector", size="64M", name="ns-a-sector",
                           uuid=labels["ns-a-sector"])
    ndctl.create_namespace(m, mode="fsdax", size="64M", name="ns-b-fsdax",
                           uuid=labels["ns-b-fsdax"])
    ns = m.bus.namespace("namespace0.1")
    mine = ns.read_bytes(0, 8192)
    theirs = golden_bytes("multi", 64 * MiB, 8192)
    assert without_uuid_and_checksum(mine) == without_uuid_and_checksum(theirs)
    (linux,) = [n for n in report.namespaces if n["dev"] == "namespace0.1"]
    j = ndctl.namespace_json(ns, verbose=True)
    assert {**j, "uuid": None} == {**linux, "uuid": None}


# -- the data area and the claim lifecycle --------------------------------------------------


def test_disk_sector_zero_is_namespace_offset_dataoff(machine):
    ndctl.create_namespace(machine, mode="fsdax", size="64M")
    ns = machine.bus.namespace("namespace0.0")
    disk = machine.block_device("pmem0")
    assert disk.size == 62 * MiB and ns.device.data_offset == 2 * MiB
    disk.write(0, b"D" * 4096, fua=True)
    disk.write(disk.size - 4096, b"E" * 4096, fua=True)
    assert ns.read_bytes(2 * MiB, 4096) == b"D" * 4096
    assert ns.read_bytes(ns.size - 4096, 4096) == b"E" * 4096
    with pytest.raises(InvalidArgument):
        disk.write(disk.size, b"F" * 4096)
    # the info block is out of the disk's reach
    assert PfnInfo.unpack(ns.read_bytes(INFO_OFFSET, 4096)).dataoff == 2 * MiB


def test_badblocks_are_relative_to_the_data_area(machine):
    ndctl.create_namespace(machine, mode="fsdax", size="64M")
    ns = machine.bus.namespace("namespace0.0")
    ndctl.inject_error(machine, "namespace0.0", block=(2 * MiB + 8192) // 512, count=1)
    assert [(e.start, e.length) for e in ns.device.badblocks] == [(16, 1)]


def test_disable_lists_raw_and_enable_finds_fsdax_again(machine):
    ndctl.create_namespace(machine, mode="fsdax", size="64M", map="mem")
    dram = machine.platform.dram
    assert dram.charges == {"memmap:namespace0.0": 64 * (64 * MiB // 4096)}
    ndctl.disable_namespace(machine, "namespace0.0")
    idle = ndctl.list_(machine, idle=True)
    assert (idle[0]["mode"], idle[0]["size"], idle[0]["state"]) == ("raw", 64 * MiB,
                                                                      "disabled")
    assert dram.charges == {}  # memunmap_pages gave the memmap back
    ndctl.enable_namespace(machine, "namespace0.0")
    assert ndctl.list_(machine)[0]["map"] == "mem" and dram.used == 64 * 16384


def test_reboot_and_crash_find_the_personality_and_charge_once(machine):
    ndctl.create_namespace(machine, mode="fsdax", size="64M", map="mem")
    machine.block_device("pmem0").write(0, b"x" * 4096, fua=True)
    machine.reboot()
    assert machine.bus.namespace("namespace0.0").mode == "fsdax"
    machine.crash(policy_from_name("nothing"))
    machine.boot()
    assert machine.platform.dram.used == 64 * 16384  # the dead kernel's charge was dropped
    assert machine.block_device("pmem0").read(0, 4096) == b"x" * 4096


def test_save_and_load_keep_fsdax(machine, tmp_path):
    ndctl.create_namespace(machine, mode="fsdax", size="32M", align="4K")
    machine.save(tmp_path)
    m2 = Machine.load(tmp_path)
    j = ndctl.list_(m2)[0]
    assert (j["mode"], j["align"], j["size"]) == ("fsdax", 4096, 30 * MiB)


def test_a_block_linux_would_not_recognise_comes_up_raw(machine):
    ndctl.create_namespace(machine, mode="fsdax", size="64M", uuid=UID)
    ns = machine.bus.namespace("namespace0.0")
    machine.bus.disable_namespace(ns.dev)
    raw = bytearray(ns.read_bytes(INFO_OFFSET, 4096))
    raw[100] ^= 1  # checksum no longer matches
    ns.write_bytes(INFO_OFFSET, bytes(raw))
    machine.bus.enable_namespace(ns.dev)
    assert ns.mode == "raw" and ns.device.size == 64 * MiB  # nd_pmem attached it raw


def test_a_block_linux_cannot_use_fails_the_probe(machine):
    ndctl.create_namespace(machine, mode="fsdax", size="64M")
    ns = machine.bus.namespace("namespace0.0")
    machine.bus.disable_namespace(ns.dev)
    info = PfnInfo.unpack(ns.read_bytes(INFO_OFFSET, 4096))
    ns.write_bytes(INFO_OFFSET, attrs.evolve(info, page_size=64 * KiB).pack())
    with pytest.raises(UnsupportedInfoBlock):
        machine.bus.enable_namespace(ns.dev)
    assert not ns.enabled and machine.platform.dram.used == 0


@pytest.mark.parametrize(("opts", "match"), [
    ({"map": "both"}, "--map"),
    ({"align": "8K"}, "unsupported align"),
    ({"align": "1G"}, "must align to interleave-width: 1 and alignment: 1073741824"),
    ({"sector_size": 520}, "512 or 4096"),
])
def test_refused_options_write_nothing(machine, opts, match):
    before = machine.platform.dimms[0].media.read(QEMU_CAPACITY, 128 * KiB)
    with pytest.raises(InvalidArgument, match=match):
        ndctl.create_namespace(machine, mode="fsdax", size="64M", **opts)
    assert machine.platform.dimms[0].media.read(QEMU_CAPACITY, 128 * KiB) == before
    assert machine.bus.namespaces() == []


def test_sector_size_4096_is_recorded_in_the_label(machine):
    out = ndctl.create_namespace(machine, mode="fsdax", size="32M", sector_size=4096)
    assert out["sector_size"] == 4096
    assert machine.block_device("pmem0").logical_block_size == 4096
    (lbl,) = [x for x in ndctl.read_labels(machine, "nmem0")["label"] if x["flags"] == "0"]
    assert lbl["lbasize"] == 4096


def test_memmap_in_dram_that_does_not_fit_is_refused_before_any_write():
    m = labelled_machine(dram_size=2 * MiB)
    before = m.platform.dimms[0].media.read(QEMU_CAPACITY, 128 * KiB)
    with pytest.raises(NoSpace, match="memmap needs 3932160 of DRAM"):
        ndctl.create_namespace(m, mode="fsdax", map="mem")
    assert m.platform.dimms[0].media.read(QEMU_CAPACITY, 128 * KiB) == before
    ndctl.create_namespace(m, mode="fsdax", map="dev")  # the memmap on pmem fits anywhere
    assert m.platform.dram.used == 0


def test_forced_memmap_variant_none_writes_map_mem_and_has_no_struct_pages():
    from drivers.pmem import PmemDriver
    from nvdimm.claim import DriverRegistry

    reg = DriverRegistry()
    reg.register(PmemDriver())
    reg.register(PfnDriver(memmap="none"))
    m = Machine.create(MachineConfig(dimms=1, dimm_size=QEMU_CAPACITY), drivers=reg)
    m.init_labels()
    out = ndctl.create_namespace(m, mode="fsdax", size="64M")
    dev = m.bus.namespace("namespace0.0").device
    assert out["map"] == "mem" and dev.pgmap.memmap.name == "none"
    assert m.platform.dram.used == 0 and not dev.pgmap.memmap.can_pin
    with pytest.raises(InvalidArgument, match="no variant"):
        PfnDriver(memmap="nvram")
    with pytest.raises(InvalidArgument, match="needs --map=dev"):
        reg.register(PfnDriver(memmap="pmem"))
        ndctl.create_namespace(m, mode="fsdax", size="64M", map="mem")


def test_fsdax_on_a_two_way_interleave_set():
    m = labelled_machine(dimms=2, interleave=True)
    out = ndctl.create_namespace(m, mode="fsdax", size="32M", map="mem")
    assert out["size"] == "30.00 MiB (31.46 MB)"
    with pytest.raises(InvalidArgument, match="interleave-width: 2 and alignment: 1073741824"):
        ndctl.create_namespace(m, mode="fsdax", size="32M", align="1G")


def test_uuids_differ_and_raw_uuid_is_the_label(machine):
    ndctl.create_namespace(machine, mode="fsdax", size="32M", uuid=UID)
    j = ndctl.list_(machine, verbose=True)[0]
    assert j["raw_uuid"] == UID and uuid.UUID(j["uuid"]) != uuid.UUID(UID)
    assert "raw_uuid" not in ndctl.list_(machine)[0]


def test_block_device_by_pmem_name_and_no_device_for_the_info_area(machine):
    ndctl.create_namespace(machine, mode="fsdax", size="32M")
    assert machine.block_device("pmem0") is machine.block_device("namespace0.0")
    with pytest.raises(NotFound):
        machine.block_device("pmem1")


def test_destroy_wipes_the_info_block_and_returns_the_memmap(machine):
    ndctl.create_namespace(machine, mode="fsdax", size="32M", map="mem")
    ns = machine.bus.namespace("namespace0.0")
    ndctl.destroy_namespace(machine, "namespace0.0", force=True)
    assert ns.read_bytes(0, 8192) == bytes(8192)
    assert machine.platform.dram.used == 0
