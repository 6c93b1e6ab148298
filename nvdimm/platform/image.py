"""DIMM image files in QEMU's ``nvdimm`` memory-backend layout.

A file of ``capacity + label_size`` bytes: DPA space first (DPA x at file offset x),
then the label storage area in the last ``label_size`` bytes. Files are written
sparse (holes where the media was never touched) and read by skipping holes, so a
64 TiB DIMM that holds a few MiB saves and loads in milliseconds.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from nvdimm.errors import InvalidArgument
from nvdimm.platform.media import PAGE, SparseMedia

_CHUNK = 1 << 20
_ZERO = bytes(PAGE)


def save_media(path: Path, media: SparseMedia) -> None:
    """Write ``media`` to ``path`` (replaced atomically), leaving holes for zeros."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.truncate(media.size)
        for pno in media.nonzero_pages():
            f.seek(pno * PAGE)
            f.write(media.pages[pno])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """Non-hole extents of a file, or the whole file where SEEK_DATA is unsupported."""
    out: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:  # no more data after pos
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, min(end, size) - start))
            pos = end
    except (OSError, AttributeError):
        return [(0, size)]
    return out


def load_media(path: Path, expected_size: int | None = None) -> SparseMedia:
    """Read an image file into sparse media, keeping only non-zero pages."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InvalidArgument(f"image file {path} does not exist") from None
    if expected_size is not None and size != expected_size:
        raise InvalidArgument(
            f"image {path} is {size} bytes but the machine expects {expected_size}: "
            "truncated, or not this machine's image")
    media = SparseMedia(size)
    with open(path, "rb") as f:
        for start, length in _data_extents(f.fileno(), size):
            # Extents start on filesystem block boundaries; align to our pages anyway.
            pos = start - start % PAGE
            end = start + length
            f.seek(pos)
            while pos < end:
                chunk = f.read(min(_CHUNK, end - pos + (-(end - pos)) % PAGE))
                if not chunk:
                    break
                for i in range(0, len(chunk), PAGE):
                    page = chunk[i:i + PAGE]
                    if page != _ZERO[:len(page)]:
                        buf = bytearray(PAGE)
                        buf[:len(page)] = page
                        media.pages[(pos + i) // PAGE] = buf
                pos += len(chunk)
    return media
