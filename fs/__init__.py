"""Filesystems over pmem.

* :mod:`fs.vfs` -- the VFS: mounts (``dax=always|never|inode``), paths, open files and
  the POSIX calls a workload makes;
* :mod:`fs.extentfs` -- a small extent-based filesystem with a journal, mkfs and fsck,
  whose files go through the page cache or, with DAX, straight to pmem through the
  ``direct_access`` seam (and, on a BTT, the ``btt_remap`` seam);
* :mod:`fs.errors` -- the POSIX errors (ENOENT, EEXIST, ...) beyond the kit's.

fs imports block, mm and the DAX contract (drivers.direct_access); the machine hands it
the DAX provider of a device, so fs never names a driver.
"""
