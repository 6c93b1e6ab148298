"""create-namespace -f -e: a new personality on an existing namespace, in place."""

from __future__ import annotations

import pytest

from nvdimm import ndctl
from nvdimm.errors import Busy, InvalidArgument
from nvdimm.machine import Machine, MachineConfig
from nvdimm.units import MiB


def labelless() -> Machine:
    # As the labelless golden cases: a 256 MiB file with no label area.
    return Machine.create(MachineConfig(dimms=1, dimm_size=256 * MiB, label_size=0))


def test_label_less_namespace_becomes_sector_mode_like_linux_made_it():
    m = labelless()
    out = ndctl.create_namespace(m, mode="sector", reconfig="namespace0.0", force=True)
    # labelless-sector golden: 267091968 bytes of 4 KiB sectors, no uuid parent
    assert (out["mode"], out["blockdev"], out["sector_size"]) == ("sector", "pmem0s", 4096)
    assert m.block_device("pmem0s").size == 267091968
    m.reboot()
    assert m.bus.namespace("namespace0.0").mode == "sector"


def test_reconfigure_of_an_active_namespace_needs_force_and_changes_nothing():
    m = labelless()
    m.block_device("pmem0").write(0, b"k" * 8192, fua=True)
    with pytest.raises(Busy):
        ndctl.create_namespace(m, mode="sector", reconfig="namespace0.0")
    assert m.block_device("pmem0").read(0, 8192) == b"k" * 8192


def test_reconfigure_keeps_a_labelled_namespaces_identity(machine):
    ndctl.create_namespace(machine, mode="raw", size=64 * MiB, name="keep",
                           uuid="11111111-2222-3333-4444-555555555555")
    ndctl.create_namespace(machine, mode="sector", reconfig="namespace0.0", force=True,
                           sector_size=512)
    machine.reboot()
    ns = machine.bus.namespace("namespace0.0")
    assert (ns.mode, ns.name, str(ns.uuid), ns.lbasize) == (
        "sector", "keep", "11111111-2222-3333-4444-555555555555", 512)


def test_bad_reconfigure_options_are_refused_before_anything_is_written(machine):
    ndctl.create_namespace(machine, mode="raw", size=64 * MiB)
    disk = machine.block_device("pmem0")
    disk.write(0, b"q" * 8192, fua=True)
    with pytest.raises(InvalidArgument):
        ndctl.create_namespace(machine, mode="sector", reconfig="namespace0.0", force=True,
                               sector_size=1000)
    with pytest.raises(InvalidArgument):
        ndctl.create_namespace(machine, mode="sector", reconfig="namespace0.0", force=True,
                               size="32M")
    assert machine.block_device("pmem0").read(0, 8192) == b"q" * 8192
