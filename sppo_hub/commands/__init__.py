"""CLI subcommands; each module defines `register(subparsers)` and imports heavy code lazily."""
