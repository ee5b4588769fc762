"""The one subprocess wrapper: tools run in the C locale, failures name the tool."""

import pytest

from ais.errors import ToolError
from ais.run import run


def test_tools_run_in_the_c_locale(monkeypatch):
    """dumpe2fs and friends are parsed as text: their output must not depend on the admin's locale."""
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    assert run(["sh", "-c", "echo $LC_ALL"]).stdout.strip() == "C"
    assert run(["sh", "-c", "echo $LC_ALL"], env={"LC_ALL": "POSIX"}).stdout.strip() == "POSIX"


def test_a_missing_tool_is_named():
    with pytest.raises(ToolError, match="no-such-tool-here is not installed"):
        run(["no-such-tool-here"])


def test_a_failing_tool_shows_its_stderr():
    with pytest.raises(ToolError, match="exited 3:\nbroken"):
        run(["sh", "-c", "echo broken >&2; exit 3"])
