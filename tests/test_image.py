"""DIMM image files in QEMU's layout: sparse, exact, and the golden images load intact."""

from __future__ import annotations

import hashlib

import pytest

from nvdimm.errors import InvalidArgument
from nvdimm.machine import Machine, MachineConfig
from nvdimm.platform.image import load_media, save_media
from nvdimm.platform.media import SparseMedia
from nvdimm.units import MiB, TiB


def test_huge_sparse_media_saves_and_loads_only_what_was_touched(tmp_path):
    m = SparseMedia(TiB)
    m.write(5, b"head")
    m.write(TiB - 4096, b"tail" * 1024)
    path = tmp_path / "big.img"
    save_media(path, m)
    assert path.stat().st_size == TiB
    assert path.stat().st_blocks * 512 < 64 * MiB  # holes stayed holes
    back = load_media(path, TiB)
    assert back.same_content(m) and back.touched_bytes == 2 * 4096


def test_loading_an_image_of_the_wrong_size_is_refused(tmp_path):
    path = tmp_path / "x.img"
    path.write_bytes(b"\0" * 8192)
    with pytest.raises(InvalidArgument, match="truncated"):
        load_media(path, 16384)


def test_machine_directory_round_trips_media_poison_and_in_flight_stores(tmp_path):
    m = Machine.create(MachineConfig(dimms=1, dimm_size=64 * MiB, label_size=0))
    disk = m.block_device("pmem0")
    disk.write(0, b"d" * 4096, fua=True)
    disk.write(8192, b"f" * 4096)  # still in flight
    m.platform.inject_error(m.bus.namespace("pmem0").spa + 65536, 512)
    m.save(tmp_path)
    back = Machine.load(tmp_path)
    assert back.platform.cpu.pending_bytes() == 4096
    assert back.platform.poisoned() == m.platform.poisoned()
    assert back.block_device("pmem0").read(8192, 4096) == b"f" * 4096


@pytest.mark.golden
def test_golden_images_load_to_the_bytes_linux_left(tmp_path):
    from tests.conformance import golden

    golden.require_golden_dir()
    sums = golden.sha256sums(golden.require_golden_dir())
    for name in ("raw", "labelless-sector"):
        case = golden.load_case(name)
        src = golden.image(case)
        media = load_media(src)
        out = tmp_path / f"{name}.img"
        save_media(out, media)
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        assert digest == sums[f"{name}.img"], name
