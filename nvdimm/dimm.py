"""nmemN: one NVDIMM as the kernel sees it, and access to its label storage area."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from nvdimm.platform.nfit import DimmInfo

if TYPE_CHECKING:
    from nvdimm.platform.platform import Platform


@attrs.define(slots=True)
class LabelStorage:
    """A DIMM's label storage area, read and written through DSM commands in
    ``max_xfer`` chunks as the kernel does. This is the object ``nvdimm.label`` works on."""

    platform: Platform
    dimm: int
    size: int
    max_xfer: int

    def read(self, off: int, n: int) -> bytes:
        out = bytearray()
        while n > 0:
            take = min(n, self.max_xfer)
            out += self.platform.get_config_data(self.dimm, off, take)
            off += take
            n -= take
        return bytes(out)

    def write(self, off: int, data: bytes) -> None:
        mv = memoryview(data)
        done = 0
        while done < len(data):
            take = min(len(data) - done, self.max_xfer)
            self.platform.set_config_data(self.dimm, off + done, bytes(mv[done:done + take]))
            done += take


@attrs.define(slots=True, eq=False)
class Dimm:
    info: DimmInfo
    platform: Platform

    @property
    def index(self) -> int:
        return self.info.index

    @property
    def dev(self) -> str:
        return f"nmem{self.info.index}"

    @property
    def has_label_area(self) -> bool:
        return self.info.label_size > 0

    def label_storage(self) -> LabelStorage:
        size, max_xfer = self.platform.get_config_size(self.info.index)
        return LabelStorage(self.platform, self.info.index, size, max_xfer)

    def to_json(self) -> dict[str, object]:
        return {"dev": self.dev, "id": self.info.id_string, "handle": self.info.handle,
                "phys_id": self.info.phys_id}
