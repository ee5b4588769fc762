"""The one wrapper for running external commands (rpm, mke2fs, e2fsck, ...).

Reads: an argv list (never a shell string). Fails with `ToolError` carrying the
command, exit code and the tail of stderr, so tool errors read the same
everywhere. Returns `subprocess.CompletedProcess` with text or bytes output.
Every call is logged at debug level so tests and `-v` runs can observe it.
Every tool runs with LC_ALL=C (unless the caller's env says otherwise): AIS
parses some tools' output (dumpe2fs, rpm, losetup), and their messages read the
same in every log whatever the admin's locale.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time

from ais.errors import ToolError

log = logging.getLogger("ais.run")


def run(
    argv: list[str],
    *,
    check: bool = True,
    input: bytes | str | None = None,
    cwd: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    text: bool = True,
) -> subprocess.CompletedProcess:
    """Run argv, capture output, raise ToolError if it fails (when check)."""
    argv = [os.fspath(a) for a in argv]
    full_env = tool_env(env)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            input=input,
            cwd=cwd,
            env=full_env,
            timeout=timeout,
            capture_output=True,
            text=text,
        )
    except FileNotFoundError as err:
        raise ToolError(argv, 127, "", why=f"{argv[0]} is not installed") from err
    except subprocess.TimeoutExpired as err:
        raise ToolError(argv, None, _as_text(err.stderr), why=f"after {timeout}s") from err
    log.debug("ran %s -> %s in %.3fs", argv[0], proc.returncode, time.monotonic() - started)
    if check and proc.returncode != 0:
        raise ToolError(argv, proc.returncode, _as_text(proc.stderr))
    return proc


def tool_env(extra: dict[str, str] | None) -> dict[str, str]:
    """The environment of a tool: ours, in the C locale, plus the caller's additions."""
    return {**os.environ, "LC_ALL": "C", **(extra or {})}


def _as_text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data


def start(argv: list[str], *, cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None,
          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text: bool = True, **popen) -> subprocess.Popen:
    """Start a long-running process (a server, a peer) in the background.

    The caller owns it: poll, communicate, kill. A missing program is a ToolError,
    as with `run`.
    """
    argv = [os.fspath(a) for a in argv]
    full_env = tool_env(env)
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=stdout, stderr=stderr, text=text, **popen)
    except FileNotFoundError as err:
        raise ToolError(argv, 127, "", why=f"{argv[0]} is not installed") from err
    log.debug("started %s as pid %d", argv[0], proc.pid)
    return proc
