"""Machines with an extentfs, for the filesystem tests."""

from __future__ import annotations

from typing import Any

from fs.extentfs.fs import ExtentFs
from nvdimm import ndctl
from nvdimm.machine import Machine, MachineConfig
from nvdimm.units import MiB


def fs_machine(*, mode: str = "fsdax", dax: str = "always", size: int = 64 * MiB,
               memmap: str | None = None, busy: str = "wait", sector_size: int | None = None,
               mkfs: dict[str, Any] | None = None, formatted: bool = True, mount: bool = True,
               **config: Any) -> tuple[Machine, str, Any]:
    """A one-DIMM machine with one namespace of ``mode`` holding a fresh extentfs mounted
    at /mnt (the ExtentFs is returned; None when ``mount`` or ``formatted`` is False).
    ``memmap`` re-registers the fsdax driver with that memmap variant."""
    cfg = {"dimms": 1, "dimm_size": 256 * MiB, **config}
    m = Machine.create(MachineConfig(**cfg))
    if memmap is not None:
        from drivers.pfn import PfnDriver

        pfn = m.drivers.drivers["fsdax"]
        assert isinstance(pfn, PfnDriver)
        m.drivers.register(PfnDriver(memmap=memmap, pagemaps=pfn.pagemaps))
    m.init_labels()
    kw: dict[str, Any] = {"mode": mode, "size": size}
    if sector_size is not None:
        kw["sector_size"] = sector_size
    name = ndctl.create_namespace(m, **kw)["blockdev"]
    if not formatted:
        return m, name, None
    m.mkfs(name, **(mkfs or {}))
    if not mount:
        return m, name, None
    fs = m.mount(name, "/mnt", dax=dax, busy=busy)
    return m, name, fs


def remount(m: Machine, name: str, *, dax: str = "always", busy: str = "wait") -> ExtentFs:
    """After a crash: boot and mount again."""
    if not m.booted:
        m.boot()
    fs: ExtentFs = m.mount(name, "/mnt", dax=dax, busy=busy)
    return fs
