"""The one exception tree of AIS, and its mapping to exit codes.

Two families, as in networkx: bad input (the admin can fix it: exit 2) and
failures of the world (a tool, a disk, a network failed: exit 1). Every module
raises one of these; only `ais.cli` turns them into messages and exit codes.
"""

from __future__ import annotations

import errno
import os
from collections import namedtuple

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class Problem(namedtuple("Problem", "file line message")):
    """One finding about an input: its file, line (or None) and what to do about it.

    (A plain named tuple: every `ais` process imports this module, and a booting
    client starts a dozen of them; dataclasses and typing cost it milliseconds.)
    """

    __slots__ = ()

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


ERRNO_HINTS = {
    errno.ENOSPC: "the filesystem holding it is full",
    errno.EFBIG: "beyond the file size limit (ulimit -f) or the filesystem's largest file",
    errno.EIO: "the disk reported an I/O error: check or replace it",
    errno.EROFS: "it is on a read-only filesystem",
}


def describe_errno(err: OSError) -> str:
    """'No space left on device (ENOSPC: the filesystem holding it is full)'."""
    name = errno.errorcode.get(err.errno or 0, str(err.errno))
    hint = ERRNO_HINTS.get(err.errno)
    return f"{err.strerror or os.strerror(err.errno or 0)} ({name}{': ' + hint if hint else ''})"


def describe_os_error(err: OSError) -> str:
    """describe_errno, then the path(s) it is about: '... (ENOSPC: ...): /mnt/disk.img'."""
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    what = describe_errno(err) if err.errno else str(err)
    return f"{what}: {' -> '.join(paths)}" if paths else what


class AisError(Exception):
    """Base of every error AIS raises on purpose."""

    exit_code = EXIT_FAILURE


class BadInput(AisError):
    """The input is wrong; nothing was changed. Exit code 2."""

    exit_code = EXIT_BAD_INPUT


class DescriptorError(BadInput):
    """One or more descriptors are invalid; carries every problem found at once."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(BadInput):
    """A command-line argument or option is wrong."""


class PlanMismatch(BadInput):
    """A plan file does not match the current descriptors."""


class WorldError(AisError):
    """Something outside the input failed (a tool, the disk, the network). Exit 1."""


class ToolError(WorldError):
    """An external command failed; message names the command and its stderr."""

    def __init__(self, argv: list[str], returncode: int | None, stderr: str, why: str = ""):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        status = "timed out" if returncode is None else f"exited {returncode}"
        msg = f"command {' '.join(argv[:6])}{' ...' if len(argv) > 6 else ''} {status}"
        if why:
            msg += f" ({why})"
        if tail:
            msg += f":\n{tail}"
        super().__init__(msg)


class BuildError(WorldError):
    """Building an image failed."""


class StreamError(WorldError):
    """Streaming or writing an image failed."""


class TransportStalled(StreamError):
    """A transport other than unicast (multicast, a peer transport) made no progress for its stall
    timeout; the client falls back to unicast and reports why."""


class ImageFormatError(StreamError):
    """A .aisimg file, header or chunk is malformed, hostile or corrupt (exit 1)."""


class ImageFileError(ImageFormatError, BadInput):
    """A local .aisimg file named by the caller is not a sound image (its header): bad input, exit 2.
    Still an ImageFormatError, so callers that skip malformed files go on doing so."""


class ClientError(WorldError):
    """A reinstall step on the client failed."""


class LockBusy(WorldError):
    """Another process holds the lock (e.g. a second cron rebuild)."""
