"""Device-dax: pmem as a character device mapped only at its alignment (``dax_pmem``
and ``device_dax``). See :mod:`drivers.dax.device`."""

from drivers.dax.device import DaxDevice, DaxDriver, Fault, dax_name

__all__ = ["DaxDevice", "DaxDriver", "Fault", "dax_name"]
