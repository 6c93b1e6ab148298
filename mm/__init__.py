"""Memory management: struct page, memmap placement, dev_pagemap (ZONE_DEVICE), DRAM
pages, processes with page tables and faults, pinning, and the page cache.

* :mod:`mm.memmap` -- seam ``memmap``: where struct pages of device memory live
  (``none``, ``ram``, ``pmem``, ``compound``) and what they cost, by arithmetic;
* :mod:`mm.page` -- :class:`~mm.page.Page`, a struct page, created only when used;
* :mod:`mm.pagemap` -- :class:`~mm.pagemap.DevPagemap` and
  :class:`~mm.pagemap.PagemapTable` (``memremap_pages``, ``get_dev_pagemap``), which
  charge the memmap's DRAM to the machine's budget;
* :mod:`mm.page_alloc`, :mod:`mm.pagetable`, :mod:`mm.vma`, :mod:`mm.fault`,
  :mod:`mm.process`, :mod:`mm.rmap` -- processes: address spaces, VMAs, 4K/2M/1G page
  table entries, faults, loads and stores through the CPU persistence model;
* :mod:`mm.gup` -- get/pin_user_pages; :mod:`mm.pagecache` -- the page cache.

The DRAM resource itself is simulated by :mod:`nvdimm.platform.dram`; mm imports the
kit (errors, metrics, trace, seams) and, for page cache writeback only, the block layer
(bios and gendisks, a layer beside it); it reaches DRAM, the CPU and device drivers
through protocols the caller hands it.
"""
