"""Memory management: struct page, memmap placement, dev_pagemap (ZONE_DEVICE); later
page tables, faults, pinning and the page cache (issue 5 part 2).

* :mod:`mm.memmap` -- seam ``memmap``: where struct pages of device memory live
  (``none``, ``ram``, ``pmem``, ``compound``) and what they cost, by arithmetic;
* :mod:`mm.page` -- :class:`~mm.page.Page`, a struct page, created only when used;
* :mod:`mm.pagemap` -- :class:`~mm.pagemap.DevPagemap` and
  :class:`~mm.pagemap.PagemapTable` (``memremap_pages``, ``get_dev_pagemap``), which
  charge the memmap's DRAM to the machine's budget.

The DRAM resource itself is simulated by :mod:`nvdimm.platform.dram`; mm imports only
the kit (errors, metrics, trace, seams) and reaches DRAM through the ``DramBudget``
protocol the caller hands it.
"""
