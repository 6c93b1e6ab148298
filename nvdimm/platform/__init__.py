"""Simulated hardware and firmware: NVDIMM media, CPU cache and persistence domain,
DRAM, the NFIT-like platform table and its DSM commands.

This package imports nothing of the model above it (only the kit: errors, units,
trace, metrics, seams).
"""
