"""Probing a namespace at boot: Linux's order, validation, and failures that do not
stop the boot."""

from __future__ import annotations

from nvdimm import ndctl
from nvdimm.errors import CorruptMetadata
from nvdimm.units import MiB


def _flip(machine, ns, off):
    b = ns.read_bytes(off, 1)
    ns.write_bytes(off - off % 512, ns.read_bytes(off - off % 512, 512)[: off % 512]
                   + bytes([b[0] ^ 0xFF]) + ns.read_bytes(off + 1, 511 - off % 512))


def test_a_btt_with_a_bad_info_checksum_probes_as_raw(machine):
    ndctl.create_namespace(machine, mode="sector", size="64M")
    ns = machine.bus.namespace("namespace0.0")
    assert ns.mode == "sector"
    machine.bus.disable_namespace(ns.dev)
    # v1.1 labels: BTT 1.1 at 4 KiB. Corrupt a byte inside its info block; the probe
    # only reads the primary, so Linux finds no BTT and attaches the namespace raw.
    _flip(machine, ns, 4096 + 40)
    machine.reboot()
    ns = machine.bus.namespace("namespace0.0")
    assert (ns.mode, ns.enabled, ns.device.name) == ("raw", True, "pmem0")


def test_a_failing_attach_leaves_the_namespace_without_a_device_and_boot_goes_on(
        machine, monkeypatch):
    ndctl.create_namespace(machine, mode="raw", size=16 * MiB, name="ok")
    ndctl.create_namespace(machine, mode="raw", size=16 * MiB, name="bad")
    drv = machine.drivers.drivers["raw"]

    real_attach = drv.attach

    def attach(ns):
        if ns.name == "bad":
            raise CorruptMetadata("test: unrecoverable metadata")
        return real_attach(ns)

    monkeypatch.setattr(type(drv), "attach", lambda self, ns: attach(ns))
    machine.reboot()
    states = {ns.name: ns.enabled for ns in machine.bus.namespaces()}
    assert states == {"ok": True, "bad": False}
    assert machine.metrics.get("nd.probe_failures") == 1
    assert any(e.fields.get("result") == "failed" for e in machine.trace.events("nd.probe"))
