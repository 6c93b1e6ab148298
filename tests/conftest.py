from __future__ import annotations

import pytest

from nvdimm.machine import Machine, MachineConfig
from nvdimm.units import KiB, MiB

# The QEMU DIMM the golden images were made on: a 256 MiB file with a 128 KiB label area.
QEMU_CAPACITY = 256 * MiB - 128 * KiB


def labelled_machine(**kw: object) -> Machine:
    """A booted machine whose DIMMs carry freshly initialised v1.1 labels."""
    version = str(kw.pop("label_version", "1.1"))
    cfg = MachineConfig(**{"dimms": 1, "dimm_size": QEMU_CAPACITY, **kw})  # type: ignore[arg-type]
    m = Machine.create(cfg)
    m.init_labels(version)
    return m


@pytest.fixture
def machine() -> Machine:
    return labelled_machine()
