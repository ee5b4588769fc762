"""aislab.lines.next_line: two lines that arrive in one write are both read, each when asked."""

import subprocess
import sys

from aislab.lines import next_line

TWO_LINES_THEN_WAIT = "import sys; sys.stdout.write('one\\ntwo\\n'); sys.stdout.flush(); sys.stdin.read()"


def test_two_lines_in_one_write_are_both_seen():
    proc = subprocess.Popen([sys.executable, "-c", TWO_LINES_THEN_WAIT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert next_line(proc.stdout, 30) == "one\n"
        # select()+readline() on the buffered file lost this one: it sat in the file's buffer.
        assert next_line(proc.stdout, 30) == "two\n"
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.stdout.read() == ""


def test_nothing_within_the_timeout_and_end_of_file_read_as_empty():
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        assert next_line(proc.stdout, 0.05) == ""
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert next_line(proc.stdout, 30) == ""


def test_what_was_not_read_stays_for_communicate():
    proc = subprocess.Popen([sys.executable, "-c", "print('first'); print('rest')"], stdout=subprocess.PIPE,
                            text=True)
    assert next_line(proc.stdout, 30) == "first\n"
    out, _ = proc.communicate(timeout=30)
    assert out == "rest\n"
