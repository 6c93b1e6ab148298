"""Block layer: block devices (gendisk), bios and their flags, badblocks."""
