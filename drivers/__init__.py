"""Drivers that bind to namespaces: pmem (block and DAX provider) and, as their issues
land, btt (sector mode), pfn (fsdax), dax (device-dax) and kmem."""
