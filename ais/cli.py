"""The `ais` command: one entry point, subcommands registered by each subsystem.

Reads: argv. Each subsystem's `commands.register(subparsers)` adds its
subcommands; a handler returns an exit code or raises an `AisError`. This is
the one place where exceptions become messages and exit codes: 0 ok,
1 failure of the world, 2 bad input; never a traceback for either.

`entry()` (the installed `ais` program) first moves the command's own output
to a private descriptor: file descriptor 1 then points at stderr, so a library
that writes to fd 1 (HiGHS prints a banner there when a solver object is made,
rpm scriptlets, any C code) cannot corrupt what scripts parse from `--json`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
import traceback

from ais import __version__
from ais.errors import EXIT_BAD_INPUT, EXIT_FAILURE, AisError, DescriptorError, describe_os_error

# Which module registers each top-level command (`register(subparsers)`), in the
# order `ais --help` lists them. Only the module of the command being run is
# imported, so `ais client ...` on a booting machine loads nothing of the planner,
# the cache or the server (numpy, PuLP, HiGHS, lxml).
COMMANDS = {
    "validate": "ais.descriptors.commands",
    "show": "ais.descriptors.commands",
    "calibrate": "ais.calibrate.commands",
    "plan": "ais.planner.commands",
    "rebuild": "ais.cache.commands",
    "cache": "ais.cache.commands",
    "site": "ais.cache.site_commands",
    "image": "ais.stream.commands",
    "serve": "ais.server.commands",
    "history": "ais.server.history_command",
    "report": "ais.console.commands",
    "client": "ais.client.commands",
    "bootenv": "ais.bootenv.commands",
    "update": "ais.updates.commands",
    "hosts": "ais.updates.commands",
    "agent": "ais.agent.commands",
}


def build_parser(argv: list[str] = ()) -> argparse.ArgumentParser:
    """The parser for argv: only the named command's module, or every module for help."""
    parser = argparse.ArgumentParser(
        prog="ais",
        description="Adaptable Installation System: plan, build and serve partial images; reinstall hosts.",
        epilog="Exit codes: 0 success, 1 failure (tool, disk, network), 2 bad input.",
    )
    parser.add_argument("--version", action="version", version=f"ais {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _modules_for(argv):
        importlib.import_module(name).register(subparsers)
    _add_common_options(parser)
    return parser


def _modules_for(argv: list[str]) -> list[str]:
    """The module of the command in argv (its first word), else all of them, in order."""
    command = next((w for w in argv if not w.startswith("-")), None)
    if command in COMMANDS:
        return [COMMANDS[command]]
    return list(dict.fromkeys(COMMANDS.values()))


# Options every leaf command that reads the site shares (a subsystem may define
# its own version first). `client` and `image` commands run on a booting machine
# or on image files: they get only -v.
SITE_OPTIONS = (
    (("--descriptors",), dict(default="descriptors", metavar="DIR",
                              help="descriptors repository (scd/, hcd/, files/) [%(default)s]")),
    (("--repo",), dict(default="build/repo", metavar="DIR",
                       help="RPM repository built by `make packages` [%(default)s]")),
    (("--cache",), dict(default="build/cache", metavar="DIR", help="image cache directory [%(default)s]")),
)
VERBOSE = (("-v", "--verbose"), dict(action="store_true", help="debug logging"))
WITHOUT_SITE = ("client", "image", "history", "agent")


def _add_common_options(parser: argparse.ArgumentParser, site: bool = True) -> None:
    """Give every leaf subcommand the shared options it does not define itself."""
    subactions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if subactions:
        for action in subactions:
            for name, child in action.choices.items():
                _add_common_options(child, site and name not in WITHOUT_SITE)
        return
    for flags, options in (*SITE_OPTIONS, VERBOSE) if site else (VERBOSE,):
        if not any(flag in parser._option_string_actions for flag in flags):
            parser.add_argument(*flags, **options)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, or a usage error argparse already printed (exit 2)
        return int(done.code or 0)
    configure_logging(args.verbose, sys.stderr)
    return run_handler(args.handler, args)


def configure_logging(verbose: bool, stream) -> None:
    """Log lines on stream: bare on a terminal; under cron, in a log file or a pipe, each starts with
    the UTC time, like ais.progress's lines (one reader's format for the whole log)."""
    logged = "%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"
    tty = hasattr(stream, "isatty") and stream.isatty()
    formatter = logging.Formatter(logged if tty and not verbose else "%(asctime)s " + logged,
                                  datefmt="%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def run_handler(handler, args, prog: str = "ais") -> int:
    """Call handler(args) and map what it raises to a message and an exit code.

    The one place errors become exit codes (`ais` and the lab's tools use it).
    """
    try:
        return int(handler(args) or 0)
    except DescriptorError as err:
        print(f"{prog}: {len(err.problems)} problem(s) in the descriptors:", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except AisError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # `ais show x | head`: the reader left, nothing to say
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as err:  # the OS refused (disk, device, network): a failure of the world
        print(f"{prog}: error: {describe_os_error(err)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: say so plainly, keep the evidence
        print(f"{prog}: internal error (a bug in AIS; please report it):", file=sys.stderr)
        traceback.print_exc()
        return EXIT_FAILURE

def private_stdout() -> None:
    """Give sys.stdout a descriptor of its own and point fd 1 at stderr.

    The duplicate is not inherited by child processes (os.dup is
    non-inheritable), so nothing but this process's own `print` reaches the
    caller's stdout.
    """
    sys.stdout.flush()
    own = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(own, "w", buffering=1 if os.isatty(own) else -1,
                           encoding=sys.stdout.encoding, errors=sys.stdout.errors)


def entry() -> int:
    """The `ais` program: main() with a stdout that only AIS writes to."""
    private_stdout()
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left before the last buffer was written
        sys.stdout = open(os.devnull, "w")
    return code


if __name__ == "__main__":
    sys.exit(entry())
