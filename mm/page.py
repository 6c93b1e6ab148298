"""struct page: the kernel's record of one 4 KiB page frame, created lazily.

Linux initialises every struct page of a range when it is hot-added; the model creates
a :class:`Page` only when something first asks for it (a fault, a pin, a look), so a
64 TiB namespace costs no Python objects until it is used. What the memmap *costs* is
computed arithmetically by the seam variant (:mod:`mm.memmap`), not counted here.

The fields are those the rest of mm needs to reason about device pages:

* ``flags`` (a few PG_* bits), ``refcount`` (get_page/put_page), ``pincount``
  (pin_user_pages: DMA and O_DIRECT hold pages by pinning them);
* ``mapping``/``index`` (which file, at which page offset; set by fsdax when a file
  maps the page);
* ``pgmap`` (the dev_pagemap of a ZONE_DEVICE page; None for ordinary DRAM pages);
* ``head`` (the pfn of the compound head for a device-dax compound page; the head's own
  pfn for the head, None for a base page), ``order`` (compound order of a head).

A ZONE_DEVICE page is idle at refcount 0: when the last reference goes, the pgmap's
owner is told (``page_free``), which is how fsdax knows a truncated block's page is no
longer under DMA.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import attrs

from nvdimm.errors import InvalidArgument

if TYPE_CHECKING:
    from mm.pagemap import DevPagemap


class PageFlags(enum.IntFlag):
    """The PG_* bits the model uses (names as Linux's, values the model's own)."""

    LOCKED = 1 << 0
    REFERENCED = 1 << 1
    UPTODATE = 1 << 2
    DIRTY = 1 << 3
    RESERVED = 1 << 4
    HEAD = 1 << 5
    WRITEBACK = 1 << 6


@attrs.define(slots=True, eq=False)
class Page:
    """One struct page. Reference counts live on the compound head, as in a folio."""

    pfn: int
    pgmap: DevPagemap | None = None
    flags: PageFlags = attrs.field(factory=lambda: PageFlags(0))
    refcount: int = 0
    pincount: int = 0
    mapping: object | None = None
    index: int = 0
    head: int | None = None
    order: int = 0

    @property
    def is_tail(self) -> bool:
        return self.head is not None and self.head != self.pfn

    def _folio(self) -> Page:
        if self.is_tail and self.pgmap is not None and self.head is not None:
            return self.pgmap.page(self.head)
        return self

    def get(self) -> None:
        """get_page: one more reference (on the compound head)."""
        self._folio().refcount += 1

    def put(self) -> None:
        """put_page: drop a reference; an idle device page goes back to its owner."""
        folio = self._folio()
        if folio.refcount <= 0:
            raise InvalidArgument(f"put_page on pfn {folio.pfn:#x} with refcount 0")
        folio.refcount -= 1
        if folio.refcount == 0 and folio.pgmap is not None:
            folio.pgmap.page_idle(folio)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pfn": self.pfn, "flags": self.flag_names(),
                               "refcount": self.refcount, "pincount": self.pincount,
                               "mapping": None if self.mapping is None else str(self.mapping),
                               "index": self.index}
        if self.head is not None:
            out["compound_head"] = self.head
            out["compound_order"] = self._folio().order
        return out

    def flag_names(self) -> list[str]:
        return [f.name for f in PageFlags if f in self.flags and f.name]
