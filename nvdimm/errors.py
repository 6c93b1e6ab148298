"""Exceptions named after the kernel failure they model.

Each carries an errno so the CLI can report it the way a kernel interface would.
Every layer may import this module (it is part of the kit, not of the model).
"""

from __future__ import annotations

import errno


class NvdimmError(Exception):
    """Base of every error the model raises on purpose."""

    errno: int = errno.EIO

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(NvdimmError):
    """Bad input: a size, an offset, a name or an option that cannot be honoured (EINVAL)."""

    errno = errno.EINVAL


class NoSpace(NvdimmError):
    """Not enough free capacity or label slots (ENOSPC)."""

    errno = errno.ENOSPC


class Busy(NvdimmError):
    """The object is in use: enabled, claimed, mapped or pinned (EBUSY)."""

    errno = errno.EBUSY


class NotFound(NvdimmError):
    """No such device, namespace, region or DIMM (ENODEV)."""

    errno = errno.ENODEV


class NotSupported(NvdimmError):
    """The operation is not supported by this object or variant (EOPNOTSUPP)."""

    errno = errno.EOPNOTSUPP


class NotAvailableYet(NotSupported):
    """A feature whose issue has not landed yet; the message names the issue."""


class MediaError(NvdimmError):
    """Reading poisoned media: a machine check, or EIO from a driver that checked first.

    ``offset`` and ``length`` say where, in the address space of whoever raised it.
    """

    errno = errno.EIO

    def __init__(self, message: str, offset: int = 0, length: int = 0) -> None:
        super().__init__(message)
        self.offset = offset
        self.length = length


class ReadOnly(NvdimmError):
    """Writing to something read-only (EROFS)."""

    errno = errno.EROFS


class CorruptMetadata(NvdimmError):
    """On-media metadata failed validation (bad signature, checksum or geometry)."""

    errno = errno.EUCLEAN if hasattr(errno, "EUCLEAN") else errno.EIO


class NoDevice(NotFound):
    """Alias kept for readability where Linux says ENXIO."""

    errno = errno.ENXIO
