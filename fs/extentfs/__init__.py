"""extentfs: the model's small extent-based filesystem (not a Linux one).

* :mod:`fs.extentfs.layout` -- every on-media structure, encode and decode;
* :mod:`fs.extentfs.mkfs` -- lay out an empty filesystem; :mod:`fs.extentfs.fsck` --
  check and repair an unmounted one, e2fsck-style;
* :mod:`fs.extentfs.journal` -- the redo journal (commit, checkpoint, replay);
* :mod:`fs.extentfs.bitmap` -- the block allocator (freed blocks wait for the commit);
* :mod:`fs.extentfs.extents` -- a file's extent map;
* :mod:`fs.extentfs.fs` -- a mounted filesystem: inodes, directories, the buffered and
  DAX data paths, truncate/punch/fallocate against mapped and pinned pages, and what a
  crash keeps;
* :mod:`fs.extentfs.mapping` -- mmap of a file (page cache pages or pmem).
"""
