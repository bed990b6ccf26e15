"""`sppo-hub` command line: a thin argparse layer over the Python API.

Each subcommand lives in `sppo_hub/commands/<name>.py` and exposes `register(subparsers)`, which
adds its parser and sets `func`. Command modules must import nothing heavy (torch, transformers,
gradio, ...) at module level: `sppo-hub --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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


class UserError(Exception):
    """An error caused by the user's input: printed as one clear line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sppo-hub",
        description="Self-Play Preference Optimization, published to the Hugging Face Hub.",
    )
    parser.add_argument("--version", action="version", version=_version())
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except UserError as err:
        print(f"sppo-hub {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as err:
        # Our own validation raises these with a message that names the field and the fix.
        print(f"sppo-hub {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
