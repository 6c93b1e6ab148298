"""The POSIX errors a filesystem call fails with, beyond the kit's (nvdimm.errors).

Each carries its ``errno``, as the kit's errors do, so a caller can compare with what
the real system call would return."""

from __future__ import annotations

import errno

from nvdimm.errors import NvdimmError


class PathError(NvdimmError):
    """What a system call on a path or an open file fails with (the shell prints these
    as ``PATH: strerror``)."""


class NoEntry(PathError):
    """ENOENT: no such file or directory."""

    errno = errno.ENOENT


class Exists(PathError):
    """EEXIST: the name is taken."""

    errno = errno.EEXIST


class IsADirectory(PathError):
    """EISDIR: a file operation on a directory."""

    errno = errno.EISDIR


class NotADirectory(PathError):
    """ENOTDIR: a path component, or rmdir's target, is not a directory."""

    errno = errno.ENOTDIR


class NotEmpty(PathError):
    """ENOTEMPTY: rmdir or rename over a directory that still has entries."""

    errno = errno.ENOTEMPTY


class BadFile(PathError):
    """EBADF: a closed descriptor, or one not open for this access."""

    errno = errno.EBADF


class NameTooLong(PathError):
    """ENAMETOOLONG."""

    errno = errno.ENAMETOOLONG


class CrossDevice(PathError):
    """EXDEV: rename between two mounts."""

    errno = errno.EXDEV


class FileTooBig(PathError):
    """EFBIG: past the largest offset the filesystem can map."""

    errno = errno.EFBIG


class AccessDenied(PathError):
    """EACCES: the open file does not allow this (mmap of a file not open for reading,
    or a shared writable mapping of one not open for writing)."""

    errno = errno.EACCES
