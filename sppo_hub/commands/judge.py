"""`sppo-hub judge`: raw K x K judge tables for generated responses (sharded, resumable), and `judge merge`."""

from __future__ import annotations

import argparse
import json
import os

from .ray_flags import add_ray_flags, ray_options


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "judge", help="judge every ordered pair of each prompt's responses",
        description="Adds raw_table (K x K) and table_kind to the generated rows. Chunks are saved under --out as "
                    "they finish, so a failed or killed run resumes. `sppo-hub judge merge --out DIR` joins shards.")
    p.add_argument("action", nargs="?", choices=["merge"], help="merge: join finished shards under --out")
    p.add_argument("--generated", help="`sppo-hub generate --out` folder, saved dataset, .parquet or .jsonl")
    p.add_argument("--out", required=True, help="output folder (chunks, then judged.parquet)")
    p.add_argument("--judge", default="pairrm", choices=["pairrm", "reward_model", "gpm", "llm", "callable"],
                   help="judge type (default pairrm)")
    p.add_argument("--judge-model", default=None, help="judge model folder, Hub id, or endpoint model name")
    p.add_argument("--judge-callable", default=None, help="--judge callable: 'module:function' or 'file.py:function'")
    p.add_argument("--batched", action="store_true", help="--judge callable: fn takes lists")
    p.add_argument("--output-kind", default=None, choices=["probs", "logits"], help="--judge callable: what fn returns")
    p.add_argument("--base-url", default=None, help="--judge llm: OpenAI-compatible endpoint URL")
    p.add_argument("--api-key-env", default=None, help="--judge llm: name of the env var holding the API key")
    p.add_argument("--judge-template", default=None, help="--judge llm: prompt template file")
    p.add_argument("--judge-batch-size", type=int, default=16, help="pairs per judge forward pass (default 16)")
    p.add_argument("--max-length", type=int, default=None, help="max tokens per judge input (longer: truncated)")
    p.add_argument("--device", default=None, help="torch device for the judge")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    p.add_argument("--extra", default=None, help="JSON object of judge-specific keyword arguments")
    p.add_argument("--chunk-size", type=int, default=16, help="prompts per judge call and saved chunk (resume unit)")
    p.add_argument("--shard", default=None, help="i/n: judge only slice i (0-based) of n")
    add_ray_flags(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .errors import UserError

    if args.action == "merge":
        from ..judges.stage import merge_judged

        ds = merge_judged(args.out)
        print(f"merged {len(ds)} judged prompts into {os.path.join(args.out, 'judged.parquet')}")
        return 0
    if not args.generated:
        raise UserError("--generated is required (or use `sppo-hub judge merge --out DIR`)")
    try:
        extra = json.loads(args.extra) if args.extra else {}
    except json.JSONDecodeError as err:
        raise UserError(f"--extra: not valid JSON ({err}); pass an object like '{{\"key\": 1}}'") from None
    if not isinstance(extra, dict):
        raise UserError("--extra: must be a JSON object")

    from ..judges import JudgeConfig, load_judge
    from ..judges.stage import judge_dataset, load_generated
    from .errors import reading

    if args.judge == "callable":
        from ..loop.preflight import check_callable_spec

        try:
            check_callable_spec(args.judge_callable, "--judge-callable")
        except ValueError as err:
            raise UserError(str(err)) from None
    with reading("--generated", args.generated):
        generated = load_generated(args.generated)  # fail on bad input before loading a judge model
    config = JudgeConfig(type=args.judge, model=args.judge_model, batch_size=args.judge_batch_size,
                         max_length=args.max_length, device=args.device, dtype=args.dtype, base_url=args.base_url,
                         api_key_env=args.api_key_env, callable=args.judge_callable, batched=args.batched,
                         output_kind=args.output_kind, judge_template=args.judge_template, extra=extra)
    ray = ray_options(args)
    judge = config if ray else load_judge(config)  # on Ray each actor loads its own judge
    ds = judge_dataset(judge, generated, out_dir=args.out, shard=args.shard, batch_size=args.chunk_size, ray=ray)
    where = os.path.join(args.out, "judged.parquet") if not args.shard else f"{args.out} (shard {args.shard})"
    print(f"judged {len(ds)} prompts with {getattr(judge, 'name', args.judge)} -> {where}")
    return 0
