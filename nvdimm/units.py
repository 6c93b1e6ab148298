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
    number, suffix = str(m.group(1)), str(m.group(2)).upper()
    mult = _SUFFIX[suffix]
    if "." in number:
        whole, frac = number.split(".")
        scale: int = 10 ** len(frac)
        num = int(whole) * mult + (int(frac) * mult) // scale
        if (int(frac) * mult) % scale:
            raise InvalidArgument(f"size {text!r} is not a whole number of bytes")
        return num
    return int(number) * mult


def human_size(n: int) -> str:
    """ndctl's human form, e.g. ``"240.00 MiB (251.66 MB)"``.

    ndctl borrows mdadm's brief format: binary and decimal side by side, in MiB/MB
    below 2 GiB and GiB/GB above (never TiB), rounded half-up in hundredths. Sizes
    under 5000 KiB are printed as plain numbers.
    """
    if n < 5000 * KiB:
        return str(n)
    if n < 2 * GiB:
        c_bin = (n * 200 // MiB + 1) // 2
        c_dec = (n // (10**6 // 200) + 1) // 2
        units = ("MiB", "MB")
    else:
        c_bin = (n * 200 // GiB + 1) // 2
        c_dec = (n // (10**9 // 200) + 1) // 2
        units = ("GiB", "GB")
    return (f"{c_bin // 100}.{c_bin % 100:02d} {units[0]} "
            f"({c_dec // 100}.{c_dec % 100:02d} {units[1]})")


def json_size(n: int, human: bool = True) -> int | str:
    """A size as ndctl puts it in JSON: a number, or with ``human`` the brief text
    (still a number below 5000 KiB)."""
    if not human or n < 5000 * KiB:
        return n
    return human_size(n)


def align_down(x: int, a: int) -> int:
    return x - (x % a)


def align_up(x: int, a: int) -> int:
    return -(-x // a) * a


def is_power_of_2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0
