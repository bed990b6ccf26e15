"""`sppo-hub run RECIPE.yaml [key=value ...] [--resume] [--local-hub] [--check]`: the whole SPPO loop."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run SPPO iterations from a recipe (generate, judge, build data, train, publish)",
        description=(
            "Run Algorithm 1 of SPPO from a YAML recipe: for each iteration, generate K responses with "
            "the current policy, judge them pairwise, build the win-rate datasets, publish them, train the "
            "next policy against the current one, publish it, and load it back from the Hub. The recipe and "
            "everything it points to (model, revision, prompts, judge, training arguments) are checked "
            "before anything is computed; --check does only that and prints the plan."
        ),
    )
    parser.add_argument("recipe", nargs="?", default=None, help="YAML recipe (see recipes/quickstart.yaml)")
    parser.add_argument("--config", default=None, metavar="RECIPE", help="the YAML recipe, as a flag (as in TRL)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="dotted overrides of recipe keys, e.g. sampling.num_samples=4 iterations=2 (before or after flags)",
    )
    parser.add_argument(
        "--check", "--dry-run", dest="check", action="store_true",
        help="only validate the recipe and what it points to, print the plan, and exit (nothing is written)",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="continue the run in the recipe's output_dir from its last finished stage; settings of stages "
             "that have not run yet may change",
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


def recipe_and_overrides(args: argparse.Namespace) -> tuple[str, list[str]]:
    """The recipe path (positional or --config) and the overrides, checked for usage errors."""
    from .errors import UserError

    overrides = list(args.overrides)
    recipe = args.recipe
    if recipe and "=" in recipe and args.config:  # `run --config r.yaml key=value`: the positional is an override
        overrides.insert(0, recipe)
        recipe = None
    if recipe and args.config:
        raise UserError(f"give the recipe once: either {recipe} or --config {args.config}")
    recipe = recipe or args.config
    if not recipe:
        raise UserError("no recipe: pass a YAML recipe, e.g. `sppo-hub run recipes/quickstart.yaml`")
    if not (0 <= args.hub_port <= 65535):
        raise UserError(f"--hub-port {args.hub_port}: use a TCP port between 1 and 65535 (0 picks a free one)")
    if args.local_hub:
        overrides += ["publish.enabled=true", "publish.local_hub=true"]  # the flag means: publish there
    return recipe, overrides


def _run(args: argparse.Namespace) -> int:
    from ..io.console import configure_threads, quiet_libraries

    quiet_libraries(verbose=args.verbose)  # before transformers, datasets, huggingface_hub are imported
    configure_threads()
    from ..loop.recipe import load_recipe
    from ..loop.preflight import preflight

    recipe, overrides = recipe_and_overrides(args)
    config = load_recipe(recipe, overrides)
    from ..loop.ranks import ensure_process_group, process_info

    # torchrun / accelerate launch: join the process group first (the checks may build TrainingArguments, which
    # would start one of their own on the main process alone), then the main process checks alone.
    process = process_info()
    ensure_process_group(process)
    main = process.is_main
    plan = preflight(config, resume=args.resume) if main else None
    if args.check:
        if main:
            print(plan.describe())
            print("check passed: nothing was computed or written")
        return 0
    from ..loop.run import run_from_config

    run_from_config(config, resume=args.resume, hub_port=args.hub_port, prompts=plan.prompt_pool if plan else None)
    return 0
