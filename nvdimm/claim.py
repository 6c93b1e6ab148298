"""The claim model: which driver owns a namespace, and how it is found at probe time.

Linux's raw-namespace probe looks for a personality's info block at the start of the
namespace, in a fixed order (BTT, then PFN, then DAX), and hands the namespace to the
personality it finds; with none, the pmem driver attaches it raw. Drivers live above
this layer, so they reach it through a :class:`Driver` object the machine registers
(see DESIGN.md, "Layers"): the core never imports a driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import attrs

from nvdimm.errors import Busy, NotAvailableYet

if TYPE_CHECKING:
    from nvdimm.namespace import Namespace

# Modes in ndctl's words, with the personality and sysfs mode Linux uses for each.
MODES = ("raw", "sector", "fsdax", "devdax")
SYSFS_MODE = {"raw": "raw", "sector": "safe", "fsdax": "memory", "devdax": "dax"}
CLAIM_CLASS = {"raw": "none", "sector": "btt", "fsdax": "pfn", "devdax": "dax"}
# The issue that brings each mode's driver, for honest "not available yet" errors.
MODE_ISSUE: dict[str, int] = {}  # every mode has its driver now


@attrs.frozen(slots=True)
class InfoSignature:
    """A personality's info-block signature and where Linux looks for it."""

    mode: str
    signature: bytes
    offsets: tuple[int, ...]


# Probe order is Linux's: BTT (v2.0 at 0, v1.1 at 4 KiB), then PFN, then DAX (both at 4 KiB).
SIGNATURES = (
    InfoSignature("sector", b"BTT_ARENA_INFO\x00\x00", (0, 4096)),
    InfoSignature("fsdax", b"NVDIMM_PFN_INFO\x00", (4096,)),
    InfoSignature("devdax", b"NVDIMM_DAX_INFO\x00", (4096,)),
)


class Driver(Protocol):
    """What a namespace driver offers the core (implemented in drivers/)."""

    mode: str

    def detect(self, ns: Namespace) -> bool:
        """Whether this driver's on-media personality is present on ``ns``."""
        ...

    def attach(self, ns: Namespace) -> object:
        """Bind to ``ns`` and return the device it exposes (a block or char device)."""
        ...

    def detach(self, ns: Namespace, device: object) -> None:
        """Unbind: flush and release ``device``."""
        ...

    def validate(self, ns: Namespace, **options: object) -> None:
        """Refuse options this personality cannot honour, before anything is written."""
        ...

    def format(self, ns: Namespace, **options: object) -> None:
        """Write this personality's metadata to a fresh namespace (create-namespace -m)."""
        ...


def detect_mode(read: ReadFn, only: str | None = None) -> str | None:
    """Which personality's signature is at the start of a namespace, in probe order
    (``only``: look for that mode's signature alone)."""
    for sig in SIGNATURES:
        if only is not None and sig.mode != only:
            continue
        for off in sig.offsets:
            if read(off + 0, len(sig.signature)) == sig.signature:
                return sig.mode
    return None


class ReadFn(Protocol):
    def __call__(self, offset: int, length: int) -> bytes: ...


@attrs.define(slots=True)
class DriverRegistry:
    """The drivers a machine has loaded, by mode."""

    drivers: dict[str, Driver] = attrs.field(factory=dict)

    def register(self, driver: Driver) -> None:
        self.drivers[driver.mode] = driver

    def for_mode(self, mode: str) -> Driver:
        try:
            return self.drivers[mode]
        except KeyError:
            issue = MODE_ISSUE.get(mode)
            hint = f" (it arrives with issue {issue}); use -m raw for now" if issue else ""
            raise NotAvailableYet(f"{mode} mode is not available yet{hint}") from None


def check_claimable(ns: Namespace, mode: str) -> None:
    """Linux's claim rules: a namespace bound to a driver cannot be claimed again."""
    if ns.enabled:
        raise Busy(f"{ns.dev} is active; disable it first (or use --force)")
    if ns.label_claim_class not in ("none", CLAIM_CLASS[mode]):
        raise Busy(f"{ns.dev} is labelled for {ns.label_claim_class}, not {CLAIM_CLASS[mode]}")
