"""nvdimm-model: a libnvdimm-style model of the Linux persistent-memory stack.

Kept light on purpose: importing ``nvdimm`` loads no subsystem. Start from
:class:`nvdimm.machine.Machine` or the ``nvdimm`` command.
"""

__version__ = "0.1.0"
