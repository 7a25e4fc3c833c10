"""``hoymiles-bridge``: the command-line entry point.

Each sub-command lives in its own module with ``register(subparsers)``; the
chosen command's ``run(args)`` returns the exit code. Errors the user can fix
print one plain sentence on stderr and exit 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from hoymiles_bridge import __version__
from hoymiles_bridge.errors import HoymilesError

EXIT_USAGE = 2

#: Each sub-command's module (``hoymiles_bridge.cli.<module>``), in the help's
#: order. Only the chosen command's module is imported: ``run`` does not load
#: the simulators or the decoder (a smaller, faster-starting service).
COMMAND_MODULES: dict[str, str] = {
    "run": "run",
    "dtu": "dtu",
    "battery": "battery",
    "cloud": "cloud",
    "controller": "controller",
    "decode": "decode",
    "simulate": "simulate",
    "simulate-battery": "simulate_battery",
    "demo": "demo",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command, or only of ``command`` when it is a known one."""
    parser = argparse.ArgumentParser(
        prog="hoymiles-bridge",
        description="Local control of Hoymiles DTUs: client, simulator and decoder.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv for frames)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else COMMAND_MODULES.values()
    for name in dict.fromkeys(modules):
        importlib.import_module(f"hoymiles_bridge.cli.{name}").register(sub)
    return parser


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(chosen)
    args = parser.parse_args(args_list)
    setup_logging(args.verbose)
    try:
        code: int = args.func(args)
    except HoymilesError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE if isinstance(err, ValueError) else 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
