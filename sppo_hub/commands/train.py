"""`sppo-hub train`: fit pi_t on an iteration's pairs with SPPO (or DPO/IPO/INPO) and save the policy."""

from __future__ import annotations

import argparse
from pathlib import Path

LOSSES = ("sppo", "sppo_single", "sppo_hard", "dpo", "ipo", "inpo")  # mirrors sppo_hub.losses.LOSSES (kept light)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a policy on preference pairs (SPPO and friends) and save it",
        description="Load a pairs dataset (TRL conversational format + chosen_probs / chosen_probs_win / "
        "chosen_probs_lose), train --model against a reference (the starting model itself unless --ref-model), "
        "and save a full checkpoint (or a LoRA adapter, or a merged LoRA model) to --out.",
    )
    parser.add_argument("--model", required=True, help="policy to start from (pi_t): local folder or Hub id")
    parser.add_argument("--data", required=True, help="pairs: a .parquet/.jsonl file or a build-data output folder")
    parser.add_argument("--out", required=True, help="output folder for the trained policy (replaced atomically)")
    parser.add_argument("--loss", choices=LOSSES, default="sppo", help="loss (default: sppo, paper eq. 4.7)")
    parser.add_argument("--eta", type=float, default=None, help="SPPO eta (default 1000, the paper's beta = 0.001)")
    parser.add_argument("--beta", type=float, default=None,
                        help="for sppo losses 1/eta (must agree with --eta); for dpo/ipo DPO's beta (default 0.1)")
    parser.add_argument("--tau", type=float, default=0.0, help="INPO's KL weight toward pi_ref")
    parser.add_argument("--ref-model", default=None, help="reference policy (default: --model, i.e. pi_t)")
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter instead of all weights")
    parser.add_argument("--lora-r", type=int, default=8, help="LoRA rank")
    parser.add_argument("--merge", action="store_true", help="with --lora: save the merged full model, not the adapter")
    parser.add_argument("--lr", type=float, default=5e-7, help="peak learning rate (paper: 5e-7)")
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs over the pairs")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps (-1: epochs)")
    parser.add_argument("--batch-size", type=int, default=8, help="micro-batch of pairs per device")
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    parser.add_argument("--max-length", type=int, default=1024, help="prompt + response tokens kept")
    parser.add_argument("--optim", default="rmsprop", help="transformers optimizer name (paper: rmsprop)")
    parser.add_argument("--precompute-ref", action="store_true", help="compute reference log-probs once, up front")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (GPU)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.set_defaults(func=run)


def _load_pairs(path: str):
    from datasets import Dataset

    p = Path(path)
    if not p.exists():
        raise ValueError(f"--data {path} does not exist; pass pairs.parquet or a `sppo-hub build-data` folder.")
    if p.is_dir():
        from ..data import load_iteration_datasets

        sets = load_iteration_datasets(p)
        if "pairs" not in sets:
            raise ValueError(f"--data {path} has no pairs.parquet; rebuild it with `sppo-hub build-data`.")
        return sets["pairs"]
    if p.suffix == ".parquet":
        return Dataset.from_parquet(str(p))
    if p.suffix in (".json", ".jsonl"):
        return Dataset.from_json(str(p))
    raise ValueError(f"--data {path}: expected a .parquet/.jsonl file or a folder, got {p.suffix or 'no suffix'}.")


def run(args: argparse.Namespace) -> int:
    from ..cli import UserError

    if args.merge and not args.lora:
        raise UserError("--merge only applies with --lora (full fine-tuning always saves the full model).")
    for flag, value in (("--lr", args.lr), ("--batch-size", args.batch_size), ("--epochs", args.epochs)):
        if value <= 0:
            raise UserError(f"{flag} must be > 0 (got {value}).")
    from ..preflight import check_model_source
    from .errors import reading

    try:
        check_model_source(args.model, None, key="--model")
        if args.ref_model:
            check_model_source(args.ref_model, None, key="--ref-model")
    except ValueError as err:
        raise UserError(str(err)) from None
    with reading("--data", args.data):
        pairs = _load_pairs(args.data)

    from ..trainer import SPPOConfig, train_policy

    out = Path(args.out)
    try:
        config = _trainer_config(args, SPPOConfig, out)
    except (ValueError, TypeError) as err:
        flags = {"--optim": args.optim, "--loss": args.loss, "--eta": args.eta, "--beta": args.beta, "--tau": args.tau}
        flag = next((f for f, v in flags.items() if v is not None and str(v) in str(err)), "training arguments")
        raise UserError(f"{flag}: {str(err).split(', please select')[0]}") from None
    lora = None
    if args.lora:
        from peft import LoraConfig

        lora = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, task_type="CAUSAL_LM",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    metrics = train_policy(args.model, pairs, config, ref_model=args.ref_model, peft_config=lora,
                           output_dir=out, merge=args.merge)
    import shutil

    shutil.rmtree(config.output_dir, ignore_errors=True)
    history = metrics["loss_history"]
    if history:
        print(f"loss {history[0][1]:.4g} -> {history[-1][1]:.4g} over {len(history)} steps")
    print(f"wrote {out}")
    return 0


def _trainer_config(args: argparse.Namespace, SPPOConfig, out: Path):
    return SPPOConfig(
        output_dir=str(out.with_name(out.name + ".trainer")), loss_type=args.loss, eta=args.eta, beta=args.beta,
        tau=args.tau, learning_rate=args.lr, num_train_epochs=args.epochs, max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=args.grad_accum,
        max_length=args.max_length, optim=args.optim, precompute_ref_log_probs=args.precompute_ref, bf16=args.bf16,
        gradient_checkpointing=args.gradient_checkpointing, seed=args.seed, report_to="none", save_strategy="no",
        logging_steps=1,
    )
