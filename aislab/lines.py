"""Read a child's output line by line with a timeout, without losing lines to a buffer.

`select()` on a pipe followed by `readline()` on Python's buffered file is wrong: readline may pull
several lines into the file object's buffer, select() then sees an empty pipe and waits for data
that has already arrived. The multicast tests waited out their receivers that way whenever two
events came in one read. `next_line` reads the pipe's descriptor a byte at a time, so nothing is
ever held in a buffer that select() cannot see, and the file object stays usable (`communicate()`
later gets exactly what was not read here).
"""

import os
import select


def next_line(stream, timeout: float) -> str:
    """The next line of stream (a pipe of a Popen) with its newline; "" when nothing started within
    timeout seconds or at end of file. A line once started is read to its end (writers flush whole
    lines)."""
    fd = stream.fileno()
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return ""
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line.decode(errors="replace")
