"""What the boot environment is made of: Debian packages, the files taken from them, kernel modules.

The recipe is data, so a reader sees in one place everything a booting client
carries; `ais.bootenv.build` follows it. Every entry is there because the
client uses it (docs/client.md, "The boot environment"):

- busybox-static: the shell that runs /init and ais-boot, mount, udhcpc, ip,
  insmod, wget, poweroff, reboot; everything else of a userland.
- e2fsprogs (+ libext2fs2, libblkid1, libcom-err2, libuuid1): mkfs.ext4,
  resize2fs, tune2fs, e2fsck, dumpe2fs, the client's disk steps.
- rpm, rpm-common (+ their libraries): the `rpm` program the install and
  verify steps run (ais/rpmenv.py), and `rpmkeys`, which imports the site's
  RPM key into the target's rpmdb (`rpm --import` is only a popt alias for it). The Python bindings (python3-rpm) are NOT
  carried: the client never imports them, and they pull librpmbuild and
  librpmsign, hence libfsverity, libcrypto, libmagic, libdw and libgomp.
- python3.11-minimal, libpython3.11-minimal, libpython3.11-stdlib (+ zlib1g,
  libexpat1, libbz2, liblzma5, libffi8, libuuid1): the interpreter of
  `ais client`; the wheels of msgspec and zstandard and the client's part of
  the ais package are copied from the builder's own Python environment.
- libssl3 (libssl.so.3, libcrypto.so.3): Python's `ssl` module (_ssl), by which
  the client speaks HTTPS to the server and trusts only the site CA pinned at
  /etc/ais/site-ca.pem (ais.siteca). About 5 MB unpacked.
- the wheels of cryptography and cffi (its Rust module loads _cffi_backend; both
  link OpenSSL and libffi statically) and libgcc-s1 (libgcc_s.so.1, which the
  Rust module needs): the client checks the plan's ed25519 signature by the site
  key (ais.sitekey) before anything is written. About 13 MB unpacked; the
  compressed initramfs grew from 20.7 to 25.1 MB. Python's standard library has no ed25519.
- kexec-tools (+ the Xen libraries its binary links against): kexec into the
  installed system (a later milestone; carried so that the boot environment
  does not change when it comes).
- extlinux: the bootloader step installs EXTLINUX on the installed disk (`extlinux
  --install`; ldlinux.sys and ldlinux.c32 are inside the binary, so syslinux-common,
  which it depends on, is not carried).
- linux-image-amd64: the kernel, and the modules below with what they depend
  on (read from each module's .modinfo; Debian's package ships no modules.dep).

Libraries are never listed by file: the builder follows DT_NEEDED from every
ELF file it copies and fails, naming the soname, when a package is missing here.
"""

from __future__ import annotations

KERNEL_PACKAGE = "linux-image-amd64"  # a metapackage: its Depends names the versioned kernel package

PACKAGES = (
    "busybox-static",
    "libc6",
    "e2fsprogs", "libext2fs2", "libblkid1", "libcom-err2", "libuuid1",
    "rpm", "rpm-common", "librpm9", "librpmio9", "libpopt0", "libcap2", "liblua5.3-0", "libsqlite3-0",
    "libgcrypt20", "libgpg-error0", "libzstd1",
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    "zlib1g", "libexpat1", "libbz2-1.0", "liblzma5", "libffi8",
    "libssl3",
    "kexec-tools", "libxenmisc4.17", "libxencall1", "libxendevicemodel1", "libxenevtchn1",
    "libxenforeignmemory1", "libxengnttab1", "libxentoolcore1", "libxentoollog1",
    "extlinux",
    "libgcc-s1",
)

# Files taken from the unpacked packages (shell-style patterns, relative to /).
# `**` matches any depth. Libraries come by DT_NEEDED, modules by MODULES.
FILES = (
    "bin/busybox",
    "sbin/mke2fs", "sbin/mkfs.ext4", "sbin/e2fsck", "sbin/fsck.ext4", "sbin/resize2fs", "sbin/tune2fs",
    "sbin/dumpe2fs", "etc/mke2fs.conf",
    "sbin/kexec",
    "usr/bin/extlinux",
    "usr/bin/rpm", "usr/bin/rpmkeys", "usr/lib/rpm/rpmrc", "usr/lib/rpm/macros",  # rpmkeys: the site's RPM key
    "usr/lib/rpm/platform/x86_64-linux/**", "usr/lib/rpm/platform/noarch-linux/**",
    "usr/bin/python3.11", "usr/lib/python3.11/**",
)

# Parts of the standard library the client never uses (and the extension modules that
# would drag in ncurses, readline, sqlite, gdbm): left out. _ssl stays: the client speaks HTTPS;
# _hashlib too: libcrypto is there for _ssl, and its sha256 checks chunks about 7x faster than
# Python's own (1,666 against 238 MB/s on this machine).
PYTHON_EXCLUDED = (
    "usr/lib/python3.11/test/**", "usr/lib/python3.11/idlelib/**", "usr/lib/python3.11/tkinter/**",
    "usr/lib/python3.11/turtledemo/**", "usr/lib/python3.11/ensurepip/**", "usr/lib/python3.11/lib2to3/**",
    "usr/lib/python3.11/pydoc_data/**", "usr/lib/python3.11/distutils/**", "usr/lib/python3.11/sqlite3/**",
    "usr/lib/python3.11/curses/**", "usr/lib/python3.11/dbm/**", "usr/lib/python3.11/venv/**",
    *(f"usr/lib/python3.11/lib-dynload/{m}.cpython-311-x86_64-linux-gnu.so" for m in (
        "_curses", "_curses_panel", "_dbm", "_gdbm", "_sqlite3", "readline", "nis",
        "ossaudiodev", "audioop", "_crypt", "_ctypes_test", "xxlimited", "xxlimited_35", "_xxsubinterpreters",
        "_xxtestfuzz", "_testbuffer", "_testcapi", "_testclinic", "_testimportmultiple",
        "_testinternalcapi", "_testmultiphase")),
)

# Kernel modules, loaded in this order (each after what its .modinfo says it depends on):
# virtio (QEMU, most clouds), e1000/e1000e/igb (common NICs), ata_piix/ahci/sd_mod/nvme
# (disks), ext4 and the crc32c its checksums ask for.
MODULES = (
    "virtio_pci", "virtio_mmio", "virtio_net", "virtio_blk", "virtio_scsi",
    "e1000", "e1000e", "igb",
    "ata_piix", "ahci", "sd_mod", "nvme",
    "crc32c_generic", "ext4",
)

# The ais package as far as a booting client uses it: the shared modules, the client, the stream.
AIS_PARTS = ("*.py", "client/**", "stream/**")
# Wheels of the client's Python dependencies, copied from the builder's environment.
PYTHON_DISTRIBUTIONS = ("msgspec", "zstandard", "cryptography", "cffi")

# Library directories of Debian's multiarch layout, searched in this order for a soname.
LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "usr/lib")
