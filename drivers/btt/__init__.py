"""Sector mode: the Block Translation Table (BTT), Linux-compatible.

``format`` holds the on-media layout, ``arena`` one arena's run-time state and I/O
paths, ``btt`` the block device, ``driver`` the claim-model driver, ``check`` ndctl's
offline ``check-namespace``, ``dump`` a readable view of the metadata.
"""

from drivers.btt.btt import BttDevice
from drivers.btt.driver import BttDriver

__all__ = ["BttDevice", "BttDriver"]
