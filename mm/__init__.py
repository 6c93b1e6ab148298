"""Memory management: DRAM pages, struct page, dev_pagemap, page tables, page cache.

The DRAM resource itself is simulated by :mod:`nvdimm.platform.dram`; this package
will hold the kernel's view of memory (issue 5).
"""
