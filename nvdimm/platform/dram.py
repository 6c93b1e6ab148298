"""System DRAM as a resource with accounting.

The model does not store DRAM contents here (mm's page allocator does, issue 5); this
is the budget that memmap, page cache and process memory draw on, so an experiment can
say "memmap for this namespace costs 16 GiB of DRAM" and fail when it does not fit.
"""

from __future__ import annotations

import attrs

from nvdimm.errors import InvalidArgument, NoSpace
from nvdimm.units import human_size


@attrs.define(slots=True)
class Dram:
    size: int
    charges: dict[str, int] = attrs.field(factory=dict)

    @property
    def used(self) -> int:
        return sum(self.charges.values())

    @property
    def free(self) -> int:
        return self.size - self.used

    def charge(self, who: str, nbytes: int) -> None:
        """Account ``nbytes`` of DRAM to ``who`` (e.g. ``"memmap:namespace0.0"``)."""
        if nbytes < 0:
            raise InvalidArgument(f"cannot charge a negative amount of DRAM: {nbytes}")
        if nbytes > self.free:
            raise NoSpace(f"{who} needs {human_size(nbytes)} of DRAM but only "
                          f"{human_size(self.free)} of {human_size(self.size)} is free")
        self.charges[who] = self.charges.get(who, 0) + nbytes

    def uncharge(self, who: str, nbytes: int | None = None) -> None:
        """Return DRAM charged to ``who`` (all of it when ``nbytes`` is None)."""
        have = self.charges.get(who, 0)
        if nbytes is None or nbytes >= have:
            self.charges.pop(who, None)
        else:
            self.charges[who] = have - nbytes
