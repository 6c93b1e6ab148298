"""The metadata journal: every metadata change reaches its home block through a redo
transaction, so a crash leaves either all of a transaction or none of it.

A commit, in this order (each step's flush is what makes the next step safe):

1. the caller has already written the data the transaction's metadata will point at
   (ordered mode: :meth:`fs.extentfs.fs.ExtentFs.commit`), and flushed it;
2. the descriptor and one image per metadata block go to the journal; flush;
3. the commit block (sequence and CRC of everything before it) goes; flush. The
   transaction is now durable: recovery will replay it;
4. checkpoint: the images go to their home blocks; flush;
5. the journal superblock's sequence moves past the transaction; flush. The journal is
   empty again.

Recovery (:func:`replay`) finds at most one transaction: a descriptor and commit for the
superblock's sequence with a matching CRC; it writes the images home, flushes and moves
the sequence on. A transaction without a good commit is ignored: it never happened.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from block.genhd import Gendisk
from fs.extentfs.layout import (
    BLOCK,
    J_MAX_TARGETS,
    Superblock,
    crc,
    decode_commit,
    decode_descriptor,
    decode_journal_super,
    encode_commit,
    encode_descriptor,
    encode_journal_super,
)
from nvdimm.errors import InvalidArgument
from nvdimm.metrics import Metrics
from nvdimm.trace import Trace


def capacity(sb: Superblock) -> int:
    """The most metadata blocks one transaction can carry."""
    return min(J_MAX_TARGETS, sb.journal_blocks - 3)


@attrs.define(slots=True, eq=False)
class Journal:
    disk: Gendisk
    sb: Superblock
    sequence: int
    metrics: Metrics
    trace: Trace

    @property
    def capacity(self) -> int:
        return capacity(self.sb)

    def _write(self, block: int, data: bytes) -> None:
        self.disk.write(block * BLOCK, data)

    def commit(self, images: Mapping[int, bytes]) -> int:
        """Journal ``images`` (home block -> 4 KiB) atomically and checkpoint them;
        returns the transaction's sequence number."""
        if not images:
            return self.sequence
        targets = sorted(images)
        if len(targets) > self.capacity:
            raise InvalidArgument(f"a transaction of {len(targets)} blocks exceeds the "
                                  f"journal's {self.capacity}")
        seq = self.sequence
        j = self.sb.journal_start
        tr = self.trace
        desc = encode_descriptor(seq, targets)
        body = bytearray(desc)
        if tr.on:
            tr.emit("fs.journal.log", seq=seq, blocks=len(targets), targets=targets)
        self._write(j + 1, desc)
        blob = b"".join(images[t] for t in targets)
        self.disk.write((j + 2) * BLOCK, blob)
        body += blob
        self.disk.flush()
        self._write(j + 2 + len(targets), encode_commit(seq, crc(body)))
        self.disk.flush()
        c = self.metrics.c
        c["fs.journal.commits"] += 1
        c["fs.journal.blocks"] += len(targets)
        if tr.on:
            tr.emit("fs.journal.commit", seq=seq, blocks=len(targets))
        checkpoint(self.disk, images)
        self.sequence = seq + 1
        self._write(j, encode_journal_super(self.sequence))
        self.disk.flush()
        if tr.on:
            tr.emit("fs.journal.done", seq=seq)
        return seq


def checkpoint(disk: Gendisk, images: Mapping[int, bytes]) -> None:
    """Write the images to their home blocks (runs of adjacent blocks as one write)."""
    targets = sorted(images)
    i = 0
    while i < len(targets):
        j = i
        while j + 1 < len(targets) and targets[j + 1] == targets[j] + 1:
            j += 1
        disk.write(targets[i] * BLOCK, b"".join(images[t] for t in targets[i:j + 1]))
        i = j + 1
    disk.flush()


def pending(disk: Gendisk, sb: Superblock) -> tuple[int, dict[int, bytes] | None]:
    """(the journal's sequence, the committed transaction waiting to be replayed or None)."""
    j = sb.journal_start
    seq = decode_journal_super(disk.read(j * BLOCK, BLOCK))
    targets = decode_descriptor(disk.read((j + 1) * BLOCK, BLOCK), seq)
    if targets is None or not targets or len(targets) > capacity(sb):
        return seq, None
    desc = disk.read((j + 1) * BLOCK, BLOCK)
    blob = disk.read((j + 2) * BLOCK, len(targets) * BLOCK)
    body_crc = decode_commit(disk.read((j + 2 + len(targets)) * BLOCK, BLOCK), seq)
    if body_crc is None or body_crc != crc(desc + blob):
        return seq, None
    if any(not 0 < t < sb.blocks for t in targets):
        return seq, None  # a target outside the filesystem: not a transaction of ours
    return seq, {t: blob[i * BLOCK:(i + 1) * BLOCK] for i, t in enumerate(targets)}


def replay(disk: Gendisk, sb: Superblock, *, write: bool = True) -> tuple[int, int]:
    """Recovery: replay the committed transaction, if any. Returns (the sequence to use
    next, blocks replayed). ``write=False`` only looks."""
    seq, images = pending(disk, sb)
    if images is None:
        return seq, 0
    if write:
        checkpoint(disk, images)
        disk.write(sb.journal_start * BLOCK, encode_journal_super(seq + 1))
        disk.flush()
    return seq + 1, len(images)
