"""`sppo-hub run RECIPE.yaml [key=value ...] [--resume] [--local-hub]`: the whole SPPO loop."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run SPPO iterations from a recipe (generate, judge, build data, train, publish)",
        description=(
            "Run Algorithm 1 of SPPO from a YAML recipe: for each iteration, generate K responses with "
            "the current policy, judge them pairwise, build the win-rate datasets, publish them, train the "
            "next policy against the current one, publish it, and load it back from the Hub."
        ),
    )
    parser.add_argument("recipe", help="YAML recipe (see recipes/quickstart.yaml)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="dotted overrides of recipe keys, e.g. sampling.num_samples=4 iterations=2",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="continue the run in the recipe's output_dir from its last finished stage",
    )
    parser.add_argument(
        "--local-hub", action="store_true",
        help="start the built-in local Hub (data under <run dir>/hub) and publish there",
    )
    parser.add_argument(
        "--hub-port", type=int, default=0, help="port for --local-hub (default: a free one)",
    )
    parser.add_argument(
        "--verbose", action="store_true",
        help="show the libraries' own logs, warnings and progress bars (default: one progress display per stage)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..console import configure_threads, quiet_libraries

    quiet_libraries(verbose=args.verbose)  # before transformers, datasets, huggingface_hub are imported
    configure_threads()
    from ..config import load_recipe
    from ..run import run_from_config

    overrides = list(args.overrides)
    if args.local_hub:
        overrides.append("publish.local_hub=true")
    config = load_recipe(args.recipe, overrides)
    run_from_config(config, resume=args.resume, hub_port=args.hub_port)
    return 0
