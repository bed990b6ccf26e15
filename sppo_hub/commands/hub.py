"""`sppo-hub hub serve | publish-data | publish-model`: the local Hub and per-iteration publishing."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("hub", help="serve a local Hub; publish an iteration's data or checkpoint",
                                   description="Hub tools: a local Hub-compatible server and publishing.")
    sub = parser.add_subparsers(dest="hub_command", metavar="HUB_COMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    serve = sub.add_parser("serve", help="run the local Hub (a development tool) on 127.0.0.1",
                           description="Serve a Hub-compatible API from git repos under --data-dir. Clients use it "
                                       "with HF_ENDPOINT=http://127.0.0.1:PORT HF_HUB_DISABLE_XET=1.")
    serve.add_argument("--data-dir", required=True, help="where repos are stored (created if missing)")
    serve.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0 picks a free one)")
    serve.add_argument("--token", default=None,
                       help="token clients must send (default: $SPPO_HUB_TOKEN; neither = no auth, single user)")
    serve.add_argument("--user", default="sppo-user", help="user name the token maps to (default sppo-user)")
    serve.add_argument("--org", action="append", default=[], help="an organisation the user may write to (repeat)")
    serve.add_argument("--max-body-bytes", type=int, default=None,
                       help="largest JSON / commit request body (default 512 MiB)")
    serve.add_argument("--max-upload-bytes", type=int, default=None,
                       help="largest LFS object upload (default 50 GiB)")
    serve.add_argument("--timeout", type=float, default=None,
                       help="seconds a client may stay idle, and a request's head may take (default 60)")
    serve.add_argument("--workers", type=int, default=None, help="worker threads serving requests (default 32)")
    serve.set_defaults(func=_serve)

    for name, what in (("publish-data", "an iteration's preference data"), ("publish-model", "an iteration's checkpoint")):
        p = sub.add_parser(name, help=f"publish {what} as one commit + tag + collection item")
        p.add_argument("path", help="data dir written by `sppo-hub build-data`" if name == "publish-data"
                       else "checkpoint folder written by save_pretrained (full model or LoRA adapter)")
        p.add_argument("--org", required=True, help="Hub namespace (user or organisation)")
        p.add_argument("--run", required=True, help="run name (repos are {org}/{run}-iter{t}[-data])")
        p.add_argument("--iteration", type=int, required=True, help="SPPO iteration t")
        p.add_argument("--card-info", default=None, help="JSON file with card fields (see sppo_hub.hub.cards)")
        p.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
        p.add_argument("--private", action="store_true", help="create private repos")
        p.add_argument("--overwrite", action="store_true", help="replace a different artifact already published")
        p.add_argument("--no-collection", action="store_true", help="do not add it to the run's collection")
        if name == "publish-data":
            p.add_argument("--model", default=None, help="policy that generated the data (for the card)")
            p.add_argument("--prompt-set", default=None, help="prompt dataset (for the card)")
            p.add_argument("--judge", default=None, help="judge name (for the card)")
            p.set_defaults(func=_hub_errors(_publish_data))
        else:
            p.add_argument("--base-model", default=None, help="previous iteration's repo id (model tree parent)")
            p.add_argument("--dataset", action="append", default=[], help="dataset repo it was trained on (repeat)")
            p.set_defaults(func=_hub_errors(_publish_model))


def _hub_errors(handler):
    """Hub HTTP errors (401, 403, 404, ...) become one clear line (exit 2), not a traceback."""

    def run(args: argparse.Namespace) -> int:
        from huggingface_hub.errors import HfHubHTTPError

        from .errors import UserError

        from contextlib import nullcontext

        from ..hub.endpoint import use_endpoint

        try:
            with use_endpoint(args.endpoint) if args.endpoint else nullcontext():
                return handler(args)
        except HfHubHTTPError as err:
            raise UserError(f"the Hub refused the request: {str(err).splitlines()[0]} "
                            f"({' '.join(str(err).split()[-40:])})") from None
        except Exception as err:  # noqa: BLE001 - only connection failures are turned into a message
            if not _unreachable(err):
                raise
            from ..hub.endpoint import current_endpoint

            where = args.endpoint or current_endpoint()
            raise UserError(f"--endpoint: cannot reach the Hub at {where} ({type(err).__name__}: {err}); nothing was "
                            "published. Check the URL, or start a local Hub with `sppo-hub hub serve --data-dir DIR "
                            "--port PORT` and pass --endpoint http://127.0.0.1:PORT") from None

    return run


def _unreachable(err: BaseException) -> bool:
    """A connection that could not be made or broke (httpx's ConnectError, refused, timed out), anywhere in the chain."""
    seen = 0
    while err is not None and seen < 10:
        name = type(err).__name__
        if isinstance(err, (ConnectionError, TimeoutError)) or name in ("ConnectError", "ConnectTimeout",
                                                                         "RemoteProtocolError", "ReadTimeout"):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def _serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .errors import UserError
    from ..hub.server import ServerLimits, make_server

    limits = ServerLimits()
    for flag, name in (("max_body_bytes", "max_body_bytes"), ("max_upload_bytes", "max_upload_bytes"),
                       ("timeout", "idle_timeout"), ("timeout", "request_timeout"), ("workers", "max_workers")):
        value = getattr(args, flag)
        if value is not None:
            if value <= 0:
                raise UserError(f"--{flag.replace('_', '-')} {value}: must be > 0")
            limits = replace(limits, **{name: value})
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: use a TCP port between 1 and 65535 (0 picks a free one)")
    token = args.token or os.environ.get("SPPO_HUB_TOKEN") or None
    try:
        server = make_server(args.data_dir, port=args.port, token=token, user=args.user, orgs=args.org, limits=limits)
    except ValueError as err:
        raise UserError(str(err)) from None
    host, port = server.server_address[:2]
    recovered = len(server.storage.recovered)
    print(f"local Hub serving {Path(args.data_dir).resolve()} at http://{host}:{port} "
          f"(user {args.user!r}, {'token required' if token else 'no auth'})")
    if recovered:
        print(f"  recovered {recovered} stale lock file(s) left by a previous server that was killed")
    print(f"  browse it: http://{host}:{port}/   use it with: HF_ENDPOINT=http://{host}:{port} HF_HUB_DISABLE_XET=1"
          "  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _card_info(args: argparse.Namespace, defaults: dict) -> dict:
    info = dict(defaults)
    if args.card_info:
        path = Path(args.card_info)
        if not path.is_file():
            raise FileNotFoundError(f"--card-info {path}: file not found (give a JSON file of card fields)")
        try:
            info.update(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise ValueError(f"--card-info {path}: not valid JSON ({err})") from None
    return {k: v for k, v in info.items() if v is not None}


def _publisher(args: argparse.Namespace):
    from ..hub.publish import HubPublisher

    return HubPublisher(args.org, args.run, private=args.private, endpoint=args.endpoint)


def _publish_data(args: argparse.Namespace) -> int:
    from ..core.data import load_data_info, load_iteration_datasets

    ds = load_iteration_datasets(args.path)
    data_info = load_data_info(args.path)
    info = _card_info(args, {"run_name": args.run, "iteration": args.iteration, "model": args.model or "unknown",
                             "prompt_set": args.prompt_set, "judge": args.judge or data_info.get("judge"),
                             "probability_rule": data_info.get("rule")})
    pub = _publisher(args)
    ref = pub.publish_iteration_data(args.iteration, ds.get("table"), ds.get("pairs"), ds.get("triplets"), info,
                                     overwrite=args.overwrite)
    if not args.no_collection:
        pub.add_to_collection(ref)
    print(f"published {ref.repo_type} {ref.repo_id} @ {ref.commit_sha} (tag {ref.tag}): {ref.url}")
    return 0


def _publish_model(args: argparse.Namespace) -> int:
    info = _card_info(args, {"run_name": args.run, "iteration": args.iteration, "base_model": args.base_model,
                             "datasets": args.dataset or None})
    if "base_model" not in info:
        raise ValueError("--base-model is required (or base_model in --card-info): the previous iteration's repo id.")
    pub = _publisher(args)
    ref = pub.publish_checkpoint(args.iteration, args.path, info, overwrite=args.overwrite)
    if not args.no_collection:
        pub.add_to_collection(ref)
    print(f"published {ref.repo_type} {ref.repo_id} @ {ref.commit_sha} (tag {ref.tag}): {ref.url}")
    return 0
