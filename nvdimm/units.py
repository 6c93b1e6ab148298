"""Sizes: parse "16G"/"4K"/"512", format sizes the way ndctl prints them."""

from __future__ import annotations

import re

from nvdimm.errors import InvalidArgument

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
PAGE_SIZE = 4096
SECTOR_SIZE = 512
CACHELINE = 64

_SUFFIX = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB, "P": TiB << 10}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Parse a size such as ``"16G"``, ``"4k"``, ``"2MiB"``, ``"512"`` or ``"0x1000"``.

    Suffixes are binary (K = 1024), as in ndctl. Fractions must land on a whole byte.
    """
    if isinstance(text, int):
        if text < 0:
            raise InvalidArgument(f"size must not be negative: {text}")
        return text
    s = str(text).strip()
    if s.lower().startswith("0x"):
        try:
            return int(s, 16)
        except ValueError:
            raise InvalidArgument(f"not a size: {text!r}") from None
    m = _SIZE_RE.match(s)
    if not m:
        raise InvalidArgument(f"not a size: {text!r} (expected a number with an optional "
                              "K, M, G, T or P suffix, e.g. 16G)")
    number, suffix = m.group(1), m.group(2).upper()
    mult = _SUFFIX[suffix]
    if "." in number:
        whole, frac = number.split(".")
        num = int(whole) * mult + (int(frac) * mult) // (10 ** len(frac))
        if (int(frac) * mult) % (10 ** len(frac)):
            raise InvalidArgument(f"size {text!r} is not a whole number of bytes")
        return num
    return int(number) * mult


def human_size(n: int) -> str:
    """ndctl's human form: ``"240.00 MiB (251.66 MB)"``."""
    if n < KiB:
        return f"{n}"
    for unit, scale, dec_unit, dec_scale in (
        ("EiB", 1 << 60, "EB", 10**18),
        ("PiB", 1 << 50, "PB", 10**15),
        ("TiB", TiB, "TB", 10**12),
        ("GiB", GiB, "GB", 10**9),
        ("MiB", MiB, "MB", 10**6),
        ("KiB", KiB, "KB", 10**3),
    ):
        if n >= scale:
            dec_u, dec_s = dec_unit, dec_scale
            if n < dec_s:  # e.g. 1000 <= n < 1024: decimal unit one step down
                dec_u, dec_s = {"EB": ("PB", 10**15), "PB": ("TB", 10**12),
                                "TB": ("GB", 10**9), "GB": ("MB", 10**6),
                                "MB": ("KB", 10**3), "KB": ("B", 1)}[dec_unit]
            return f"{n / scale:.2f} {unit} ({n / dec_s:.2f} {dec_u})"
    return f"{n}"  # pragma: no cover - unreachable


def align_down(x: int, a: int) -> int:
    return x - (x % a)


def align_up(x: int, a: int) -> int:
    return -(-x // a) * a


def is_power_of_2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0
