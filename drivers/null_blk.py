"""null_blk with ``memory_backed=1``: a block device whose data lives in memory, standing
in for a slow disk (an SSD or a spinning one) behind pmem.

Linux's ``null_blk`` is a test driver; with ``memory_backed=1`` it stores what is
written and reads it back, and ``completion_nsec`` makes each I/O take that long. Here
the data is sparse (:class:`~nvdimm.platform.media.SparseMedia`: unwritten blocks read
as zeros and cost nothing) and the I/O is immediate; how slow the disk is belongs to the
cost model (the explore layer prices its I/Os with a disk preset), which is why every
I/O is counted: ``media.<medium>.reads`` / ``.bytes_read`` / ``.bytes_written`` (medium
``disk`` unless told), besides the block layer's own ``block.<name>.*`` counters.

::

    disk = NullBlk("nullb0", 64 << 20, metrics).disk
    disk.write(0, page)        media.disk.bytes_written += 4096
    disk.read(0, 4096)         media.disk.reads += 1
"""

from __future__ import annotations

import attrs

from block.bio import Bio, BufferLike
from block.genhd import Gendisk, complete_bio
from mm.numa import count_media
from nvdimm.errors import InvalidArgument
from nvdimm.metrics import Metrics
from nvdimm.platform.media import SparseMedia
from nvdimm.trace import Trace
from nvdimm.units import SECTOR_SIZE


@attrs.define(slots=True, eq=False)
class NullBlk:
    """One memory-backed null_blk device of ``size`` bytes."""

    name: str
    size: int
    metrics: Metrics
    trace: Trace = attrs.field(factory=lambda: Trace(on=False))
    medium: str = "disk"
    logical_block_size: int = SECTOR_SIZE
    #: null_blk's completion_nsec, recorded for reports; the model does not sleep.
    completion_nsec: int = 0
    media: SparseMedia = attrs.field(init=False)
    disk: Gendisk = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.size <= 0 or self.size % self.logical_block_size:
            raise InvalidArgument(f"{self.name}: size {self.size} must be a positive multiple "
                                  f"of its {self.logical_block_size}-byte blocks")
        self.media = SparseMedia(self.size)
        self.disk = Gendisk(name=self.name, ops=self, capacity=self.size // SECTOR_SIZE,
                            logical_block_size=self.logical_block_size, metrics=self.metrics,
                            trace=self.trace, can_discard=True, can_write_zeroes=True)

    def do_read(self, sector: int, length: int) -> bytes:
        count_media(self.metrics, self.medium, reads=1, bytes_read=length)
        return self.media.read(sector * SECTOR_SIZE, length)

    def do_write(self, sector: int, data: BufferLike, flags: int) -> None:
        count_media(self.metrics, self.medium, bytes_written=len(data))
        self.media.write(sector * SECTOR_SIZE, data)

    def flush(self) -> None:
        """No volatile cache: nothing to do."""

    def submit_bio(self, bio: Bio) -> None:
        complete_bio(bio, self.do_read, self.do_write, self.flush, write_zeroes=True)
