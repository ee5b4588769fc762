"""The boot environment: the kernel and initramfs a reinstalling host boots into.

`ais bootenv build` (build.py) assembles it from Debian packages following the
recipe (recipe.py), with a POSIX sh /init (init.sh) that brings the machine up
and runs ais-boot; `ais serve` serves the result (ais/server/boot.py).
"""
