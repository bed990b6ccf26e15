"""`sppo-hub` command line: a thin argparse layer over the Python API.

Each subcommand lives in `sppo_hub/commands/<name>.py` and exposes `register(subparsers)`, which
adds its parser and sets `func`. Command modules must import nothing heavy (torch, transformers,
gradio, ...) at module level: `sppo-hub --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .commands.errors import INTERRUPTED, USAGE, describe

# (module under sppo_hub.commands) in the order shown by --help
COMMAND_MODULES = [
    "generate",
    "judge",
    "build_data",
    "train",
    "hub",
    "run",
    "eval",
    "space",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sppo-hub",
        description="Self-Play Preference Optimization, published to the Hugging Face Hub.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error, anywhere on the line (also: SPPO_HUB_DEBUG=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"sppo_hub.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"sppo_hub.commands.{name}":
                continue  # command not built yet
            raise
        module.register(subparsers)
    return parser


def _version() -> str:
    from . import __version__

    return f"sppo-hub {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure ends as one line on stderr and an exit code (see commands/errors.py)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("SPPO_HUB_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        args, unknown = parser.parse_known_args(argv)
        if getattr(args, "passthrough", False):  # `train` parses its own flags (TrlParser): hand it the rest
            args.argv, unknown = argv[argv.index(args.command) + 1:], []
        if unknown:
            # `run RECIPE --local-hub key=value`: overrides after the flags are still overrides.
            if hasattr(args, "overrides") and all("=" in u and not u.startswith("-") for u in unknown):
                args.overrides = [*args.overrides, *unknown]
            else:
                parser.parse_args(argv)  # argparse's own "unrecognized arguments" message, exit 2
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2, message already printed)
        return exit_.code if isinstance(exit_.code, int) else USAGE
    if not getattr(args, "func", None):
        parser.print_help()
        return USAGE
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as err:
        if debug:
            raise
        code, message = describe(err)
        print(f"sppo-hub {args.command}: error: {message}", file=sys.stderr)
        return code
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
