"""Filesystems over pmem: vfs, a small extent-based filesystem, DAX paths (issue 6)."""
