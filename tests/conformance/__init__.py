"""Conformance with real Linux.

Two kinds of evidence, one harness:

- ``golden``: images real Linux wrote (``../shared/golden``) and what ndctl printed about
  them; always available, no kernel needed (:mod:`tests.conformance.golden`).
- ``oracle``: boot Debian's 6.1 kernel with real ndctl under QEMU on an image and run
  shell commands in the guest; only when ``NVDIMM_LINUX_ORACLE`` points at
  ``run_guest.sh`` (:mod:`tests.conformance.oracle`, pytest marker ``linux``).

Differences are reported with :mod:`tests.conformance.fielddiff`.
"""
