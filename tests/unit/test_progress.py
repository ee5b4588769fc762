"""ais.progress in both modes, for real: bars under a pseudo-terminal, timestamped lines into a pipe.

Each test runs a small program (python -c, or the `ais` command) with its stderr on the slave
side of a pty, or on a pipe, and reads what came out. Under the pty: rich's control codes, the
bar and a percentage, and no timestamped line. Piped: every line timestamped, no escape codes,
no carriage returns, and few lines however many times the program advanced.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import struct
import subprocess
import sys
import termios

import pytest

from ais import progress
from ais.cache.report import Reporter
from ais.errors import UsageError
from aislab.net import ais_command

STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", re.M)
BAR = "━"  # rich's bar glyph
ADVANCES = 2048

PROGRAM = f"""
from ais import progress
progress.line("step one ok")
with progress.task("image 3/7 abc123", total={ADVANCES} * 4096, unit="bytes", every=0) as t:
    for _ in range({ADVANCES}):
        t.advance(4096)
with progress.task("waiting, total unknown", every=0) as t:
    t.advance(3)
print("the result on stdout")
"""


def environment(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("AIS_PROGRESS", "NO_COLOR", "TERM")}
    env.update(TERM="xterm-256color", PYTHONPATH=os.pathsep.join(sys.path), **extra)
    return env


def under_pty(argv: list[str], **env: str) -> tuple[str, str, int]:
    """Run argv with stderr on a pseudo-terminal (120 columns); (what the terminal got, stdout, exit code)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                            env=environment(**env))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return b"".join(chunks).decode(errors="replace"), out, proc.wait(timeout=120)


def piped(argv: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          env=environment(**env))


def assert_bars(terminal: str) -> None:
    assert "\x1b[" in terminal and BAR in terminal and re.search(r"\d+%", terminal), terminal[-2000:]
    assert not STAMPED.search(terminal.replace("\r", "\n")), terminal[-2000:]


def assert_lines(text: str, most: int) -> list[str]:
    assert "\x1b" not in text and "\r" not in text and BAR not in text
    lines = text.splitlines()
    assert lines and all(STAMPED.match(ln) for ln in lines), text
    assert len(lines) <= most, text
    return lines


# ------------------------------------------------------------------ the module itself

def test_under_a_terminal_the_program_draws_bars_and_no_timestamped_lines():
    terminal, out, code = under_pty([sys.executable, "-c", PROGRAM])
    assert code == 0 and out == "the result on stdout\n"  # stdout is for results, untouched
    assert_bars(terminal)
    assert "step one ok" in terminal and "image 3/7 abc123: done, 8.0M in" in terminal


def test_into_a_pipe_the_program_writes_few_timestamped_lines():
    proc = piped([sys.executable, "-c", PROGRAM])
    assert proc.returncode == 0 and proc.stdout == "the result on stdout\n"
    # step line; task: start, at most one per 10% (every=0 lifts the time limit), done; the other task
    lines = assert_lines(proc.stderr, most=1 + (1 + 10 + 1) + 3)
    text = "\n".join(lines)
    assert "image 3/7 abc123: started (8.0M)" in text and "image 3/7 abc123: 4.0M of 8.0M (50%)" in text
    assert re.search(r"image 3/7 abc123: done, 8\.0M in \d+\.\ds", text)
    unknown = [ln for ln in lines if "total unknown" in ln]
    assert unknown and not any("%" in ln for ln in unknown), unknown


def test_lines_come_at_most_every_few_seconds_by_default():
    """2048 advances within the default 10 s: the start and the final line only."""
    proc = piped([sys.executable, "-c", PROGRAM.replace(", every=0", "")])
    assert [ln.split(" ", 1)[1].split(":")[0] for ln in assert_lines(proc.stderr, most=5)] == [
        "step one ok", "image 3/7 abc123", "image 3/7 abc123", "waiting, total unknown", "waiting, total unknown"]


@pytest.mark.parametrize("asked, where", [("lines", "pty"), ("bars", "pipe"), ("off", "pty"), ("off", "pipe")])
def test_ais_progress_overrides_the_choice(asked, where):
    if where == "pty":
        stderr, out, code = under_pty([sys.executable, "-c", PROGRAM], AIS_PROGRESS=asked)
        stderr = stderr.replace("\r\n", "\n")  # the terminal's line discipline
    else:
        proc = piped([sys.executable, "-c", PROGRAM], AIS_PROGRESS=asked)
        stderr, out, code = proc.stderr, proc.stdout, proc.returncode
    assert code == 0 and out == "the result on stdout\n"
    if asked == "off":
        assert stderr == ""
    elif asked == "lines":
        assert_lines(stderr, most=20)
    else:
        assert_bars(stderr)


@pytest.mark.parametrize("value", ["bar", "yes", "1"])
def test_an_unknown_ais_progress_is_a_usage_error(monkeypatch, value):
    monkeypatch.setenv("AIS_PROGRESS", value)
    with pytest.raises(UsageError, match="AIS_PROGRESS must be one of bars, lines, off"):
        progress.choose_mode(io.StringIO())


def test_a_dumb_terminal_gets_lines(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("AIS_PROGRESS", raising=False)
    monkeypatch.setenv("TERM", "dumb")
    assert progress.choose_mode(Tty()) == "lines"
    monkeypatch.setenv("TERM", "xterm")
    assert progress.choose_mode(Tty()) == "bars"


def test_a_failing_task_says_so_and_the_error_propagates():
    out = io.StringIO()
    with pytest.raises(ZeroDivisionError):
        with progress.Output(out, mode="lines").task("image x", total=10, unit="bytes") as t:
            t.advance(4)
            1 / 0
    assert re.search(r"image x: FAILED after \d+\.\ds at 4B of 10B \(40%\) \(ZeroDivisionError\)$", out.getvalue())


# ------------------------------------------------------------------ ais rebuild's step lines

def test_rebuild_steps_on_a_terminal_are_bars_and_lines_with_durations(monkeypatch):
    monkeypatch.delenv("AIS_PROGRESS", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    stream = open(slave, "w", encoding="utf-8")
    rep = Reporter(stream)
    with rep.images(2) as bar:
        for n in (1, 2):
            with rep.step("build", f"{n}/2 web abc") as info:
                rep.doing("pack")
                info["summary"] = f"{n}/2 web abc: 1.0M stored"
            bar.advance()
    stream.close()
    terminal = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        terminal += data
        if b"2/2 web abc: 1.0M stored" in terminal:
            break
    os.close(master)
    text = terminal.decode(errors="replace")
    assert "\x1b[" in text and re.search(r"rebuild: build ok \(\d\.\d\ds\) 1/2 web abc: 1.0M stored", text)
    assert not STAMPED.search(text.replace("\r", "\n")) and set(rep.durations) == {"build"}


def test_rebuild_steps_into_a_log_are_timestamped_lines_and_nothing_else():
    out = io.StringIO()
    rep = Reporter(out)
    with rep.images(2) as bar:
        with rep.step("plan") as info:
            rep.doing("thinking")
            info["summary"] = "7 images"
        bar.advance()
        with pytest.raises(RuntimeError):
            with rep.step("build", "2/2 web abc"):
                raise RuntimeError("boom")
    lines = assert_lines(out.getvalue(), most=2)
    assert re.fullmatch(STAMPED.pattern + r"rebuild: plan ok \(\d\.\d\ds\) 7 images", lines[0])
    assert re.fullmatch(STAMPED.pattern + r"rebuild: build FAILED after \d\.\d\ds: RuntimeError", lines[1])


def test_a_quiet_reporter_writes_nothing():
    out = io.StringIO()
    rep = Reporter(out, quiet=True)
    with rep.step("plan"):
        pass
    assert out.getvalue() == "" and set(rep.durations) == {"plan"}


# ------------------------------------------------------------------ ais image write

def test_ais_image_write_under_a_terminal_shows_a_bar_of_bytes(tmp_path, small_image):
    terminal, out, code = under_pty(ais_command("image", "write", "--create-file", "--json", str(small_image),
                                                str(tmp_path / "disk")))
    assert code == 0 and '"chunks_written"' in out, terminal[-2000:]
    assert_bars(terminal)
    assert "image small-1 -> " in terminal and re.search(r"done, [\d.]+M in", terminal)


def test_ais_image_write_into_a_pipe_writes_timestamped_lines(tmp_path, small_image):
    proc = piped(ais_command("image", "write", "--create-file", "--json", str(small_image), str(tmp_path / "disk")))
    assert proc.returncode == 0 and '"chunks_written"' in proc.stdout, proc.stderr
    lines = assert_lines(proc.stderr, most=12)
    assert "image small-1 -> " in lines[0] and ": started (" in lines[0]
    assert re.search(r": done, [\d.]+M in \d+\.\ds", lines[-1])


def test_the_writer_reports_every_byte_of_the_image(tmp_path, small_image):
    from ais.stream.format import read_header
    from ais.stream.writer import data_total, write_image

    seen = []
    write_image(small_image, tmp_path / "disk", on_bytes=seen.append)
    assert sum(seen) == data_total(read_header(small_image)) and len(seen) == len(read_header(small_image).chunks)


# ------------------------------------------------------------------ ais client: the phases

CLIENT = """
from ais.client.session import show, say
show("plan: asking http://x", final=False)
say("plan: host web01")
show("plan: asking http://x done in 0.10s")
show("image: abc by unicast", final=False)
show("image: abc by unicast done in 0.20s")
"""


def test_client_phases_under_a_terminal_are_a_spinner_with_k_of_n():
    terminal, _, code = under_pty([sys.executable, "-c", CLIENT])
    assert code == 0 and "\x1b[" in terminal and "[ais] image: abc by unicast (phase 4 of 14)" in terminal
    assert "[ais] image: abc by unicast done in 0.20s" in terminal and not STAMPED.search(terminal.replace("\r", "\n"))


def test_client_phases_into_a_pipe_are_a_timestamped_line_at_start_and_end():
    proc = piped([sys.executable, "-c", CLIENT])
    lines = [ln.split(" ", 1)[1] for ln in assert_lines(proc.stderr, most=5)]
    assert lines == ["[ais] plan: asking http://x (phase 2 of 14)", "[ais] plan: host web01",
                     "[ais] plan: asking http://x done in 0.10s", "[ais] image: abc by unicast (phase 4 of 14)",
                     "[ais] image: abc by unicast done in 0.20s"]


def test_log_lines_are_timestamped_off_a_terminal_and_bare_on_one():
    """Under cron the log lines of a command (e.g. rebuild's "cost model: ...") read like the progress lines."""
    import io
    import logging

    from ais.cli import configure_logging

    class Tty(io.StringIO):
        def isatty(self):
            return True

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        for stream, stamped in ((io.StringIO(), True), (Tty(), False)):
            root.handlers.clear()
            configure_logging(False, stream)
            logging.getLogger("ais.test").info("cost model: built-in defaults")
            line = stream.getvalue().rstrip("\n")
            assert bool(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ cost model: built-in defaults", line)) == stamped
            assert line.endswith("cost model: built-in defaults")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
