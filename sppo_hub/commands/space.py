"""`sppo-hub space deploy | run`: publish the Gradio Space for a model, or run the same app locally."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("space", help="deploy or run the chat Space (best-of-n reranked by a judge)",
                                   description="The Gradio Space in spaces/: chat with best-of-n answers reranked "
                                               "by a pairwise judge, and a tab comparing two iterations.")
    sub = parser.add_subparsers(dest="space_command", metavar="SPACE_COMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    def judge_args(p):
        # One meaning across commands (as in `sppo-hub judge`): --judge is the judge TYPE, --judge-model its model.
        p.add_argument("--judge", default=None, metavar="TYPE",
                       help="judge type: pairrm, reward_model, gpm, llm, callable, correctness (default: `run`: the "
                            "judge of the run that trained --model, from its manifest, else pairrm; `deploy`: pairrm)")
        p.add_argument("--judge-model", default=None,
                       help="the judge's model id/path, or 'module:function' with --judge callable "
                            "(default: the judge type's default, llm-blender/PairRM for pairrm)")
        p.add_argument("--judge-type", default=None, help=argparse.SUPPRESS)  # deprecated alias of --judge
        p.add_argument("--compare", action="append", default=[], metavar="MODEL",
                       help="another model (e.g. an earlier iteration) for the compare tab (repeat)")

    deploy = sub.add_parser("deploy", help="create/update a Space serving --model, in one commit",
                            description="Create the Space (sdk gradio), upload spaces/ plus the sppo_hub package "
                                        "with the model configured in one commit, set its variables/secrets, "
                                        "request hardware, and print its URL.")
    deploy.add_argument("--model", required=True, help="model repo id, e.g. {org}/{run}-iter3")
    deploy.add_argument("--revision", default=None, help="model revision (branch, tag, commit)")
    judge_args(deploy)
    deploy.add_argument("--space", default=None, help="Space repo id (default: {model org}/{model name}-chat)")
    deploy.add_argument("--hardware", default=None, help="hardware to request, e.g. cpu-upgrade, t4-small, l4x1")
    deploy.add_argument("--private", action="store_true", help="create a private Space")
    deploy.add_argument("--secret", action="append", default=[], metavar="ENV_NAME",
                        help="send environment variable ENV_NAME as a Space secret (repeat; value never printed), "
                             "e.g. HF_TOKEN so the Space can read a private model")
    deploy.add_argument("--dry-run", action="store_true", help="list what would be uploaded and set; write nothing")
    deploy.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
    deploy.set_defaults(func=_deploy)

    run = sub.add_parser("run", help="launch the same app locally",
                         description="Serve the Space's app on this machine (models load once, at start).")
    run.add_argument("--model", required=True, help="local model folder or Hub repo id")
    run.add_argument("--revision", default=None, help="model revision on the Hub")
    judge_args(run)
    run.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    run.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    run.add_argument("--max-n", type=int, default=8, help="cap on candidates per turn (default 8)")
    run.add_argument("--max-new-tokens", type=int, default=512, help="cap on new tokens (default 512)")
    run.add_argument("--concurrency", type=int, default=1, help="requests served at once (default 1)")
    run.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS",
                     help="wall-clock limit of one answer (default 60); the UI flags an answer it cut")
    run.set_defaults(func=_run)


def judge_flags(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(judge type, judge model) from --judge/--judge-model, accepting the earlier meaning with a warning:
    `--judge-type T` (now --judge T) and `--judge MODEL` (now --judge-model MODEL)."""
    from .errors import UserError
    from ..judges.base import JUDGE_TYPES

    kind, model = args.judge, args.judge_model
    if args.judge_type is not None:
        print("warning: --judge-type is deprecated: the judge type is now --judge (as in `sppo-hub judge`); "
              "the judge's model is --judge-model", file=sys.stderr)
        if kind is not None and kind not in JUDGE_TYPES and model is None:
            model = kind  # the earlier `--judge-type T --judge MODEL`
        elif kind is not None and kind != args.judge_type:
            raise UserError(f"--judge {kind} and --judge-type {args.judge_type} disagree; give the type once, as --judge")
        kind = args.judge_type
    elif kind is not None and kind not in JUDGE_TYPES:
        if model is not None:
            raise UserError(f"--judge {kind!r} is not a judge type; use one of {', '.join(JUDGE_TYPES)}")
        print(f"warning: --judge now names the judge type ({', '.join(JUDGE_TYPES)}); read {kind!r} as "
              f"--judge-model {kind} (the earlier meaning). Pass it as --judge-model.", file=sys.stderr)
        kind, model = None, kind
    return kind, model


def _deploy(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from huggingface_hub.errors import HfHubHTTPError

    from .errors import UserError
    from ..hub.endpoint import use_endpoint
    from ..space.deploy import deploy_space, plan_deploy

    try:
        with use_endpoint(args.endpoint) if args.endpoint else nullcontext():
            judge_type, judge_model = judge_flags(args)
            plan = plan_deploy(args.model, space=args.space, judge=judge_model, judge_type=judge_type,
                               compare_models=args.compare, revision=args.revision, hardware=args.hardware,
                               private=args.private, secrets=args.secret)
            if args.dry_run:
                print(plan.describe())
                print("dry run: nothing was uploaded")
                return 0
            url, warnings = deploy_space(plan)
    except HfHubHTTPError as err:
        raise UserError(f"the Hub refused the request: {str(err).splitlines()[0]}") from None
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"Space deployed: {url}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import UserError
    from ..space.config import SpaceConfig
    from ..space.app import launch

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: use a TCP port between 1 and 65535 (0 picks a free one)")
    for flag, name in [("--model", args.model), *(("--compare", m) for m in args.compare)]:
        if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
            raise UserError(f"{flag}: {name} does not exist; pass a local model folder or a Hub repo id")
    judge_type, judge_model = judge_flags(args)
    try:
        config = SpaceConfig(model=args.model, revision=args.revision, compare_models=args.compare,
                             judge_type=judge_type, judge=judge_model, device=args.device, max_n=args.max_n,
                             max_new_tokens=args.max_new_tokens, concurrency_limit=args.concurrency,
                             time_limit_s=args.time_limit)
        launch(config, host=args.host, port=args.port, strict=True)  # a model or judge that fails to load: no app
    except (ValueError, RuntimeError) as err:
        raise UserError(" ".join(str(err).replace("space.time_limit_s", "--time-limit").splitlines())) from None
    return 0
