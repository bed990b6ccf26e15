"""`--ray*` flags shared by `sppo-hub generate` and `sppo-hub judge`: the chunks on a Ray cluster's actors."""

from __future__ import annotations

import argparse


def add_ray_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray", action="store_true",
                   help="run the chunks on Ray actors (an existing cluster: --ray-address or RAY_ADDRESS; else local)")
    p.add_argument("--ray-address", default=None, help="Ray cluster address for ray.init (e.g. auto, ray://head:10001)")
    p.add_argument("--ray-workers", type=int, default=2, help="Ray actors, each holding one model copy (default 2)")
    p.add_argument("--ray-num-gpus", type=float, default=0.0, help="GPUs per Ray actor (default 0; 1 on GPU nodes)")


def ray_options(args: argparse.Namespace):
    """The flags as `RayOptions`, or None without --ray; a clear error for a bad value or a missing Ray."""
    import importlib.util

    from .errors import UserError

    used = args.ray_address is not None or args.ray_workers != 2 or args.ray_num_gpus
    if not args.ray:
        if used:
            raise UserError("--ray-address / --ray-workers / --ray-num-gpus need --ray")
        return None
    if getattr(args, "shard", None):
        raise UserError("--shard and --ray: the Ray cluster takes every chunk itself; leave --shard out")
    from ..io.ray_executor import INSTALL_HINT, RayOptions

    try:
        options = RayOptions(enabled=True, address=args.ray_address, workers=args.ray_workers,
                             num_gpus=args.ray_num_gpus)
    except ValueError as err:
        raise UserError(str(err).replace("ray.workers=", "--ray-workers ").replace("ray.num_gpus", "--ray-num-gpus")
                        .replace("e.g. ray.workers: 2", "e.g. --ray-workers 2")) from None
    if importlib.util.find_spec("ray") is None:
        raise UserError(INSTALL_HINT)
    return options
