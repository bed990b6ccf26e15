"""`sppo-hub train`: fit pi_t on an iteration's pairs with SPPO (or DPO/IPO/INPO) and save the policy.

Built on TRL's `TrlParser` (a `transformers.HfArgumentParser`), as `trl dpo` is: every `SPPOConfig` /
`DPOConfig` / `TrainingArguments` field is a flag (`--learning_rate` or `--learning-rate`), `--config
train.yaml` fills them from a flat YAML mapping (flags given on the command line win), and the few
options of this command (`--model`, `--data`, `--out`, LoRA) are one more dataclass. The parser (and TRL)
are imported only when the command runs, so `sppo-hub --help` stays fast.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

# The flags of earlier versions -> the TrainingArguments/SPPOConfig field they set (still accepted).
FLAG_ALIASES = {"--lr": "--learning_rate", "--epochs": "--num_train_epochs", "--batch-size": "--per_device_train_batch_size",
                "--grad-accum": "--gradient_accumulation_steps", "--loss": "--loss_type",
                "--precompute-ref": "--precompute_ref_log_probs"}
# This command's defaults where they differ from TrainingArguments' (the paper's optimizer and lr, one epoch,
# no checkpoints or trackers: the trained policy is saved to --out).
DEFAULTS = dict(learning_rate=5e-7, optim="rmsprop", num_train_epochs=1.0, report_to="none", save_strategy="no",
                logging_steps=1, seed=0)


@dataclass
class TrainScriptArguments:
    """What to train and where to save it (the options that are not SPPOConfig fields)."""

    model: str = field(metadata={"help": "policy to start from (pi_t): local folder or Hub id"})
    data: str = field(metadata={"help": "pairs: a .parquet/.jsonl file or a `sppo-hub build-data` output folder"})
    out: str = field(metadata={"help": "output folder for the trained policy (replaced atomically)"})
    ref_model: str | None = field(default=None, metadata={"help": "reference policy (default: --model, i.e. pi_t)"})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of --model"})
    dtype: str = field(default="auto", metadata={"help": "load the policy in: auto (from the hardware), float32, "
                                                         "bfloat16, float16"})
    lora: bool = field(default=False, metadata={"help": "train a LoRA adapter instead of all weights"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha (default 2 x rank)"})
    lora_target_modules: str = field(default="q_proj,k_proj,v_proj,o_proj",
                                     metadata={"help": "comma-separated module names LoRA wraps"})
    merge: bool = field(default=False, metadata={"help": "with --lora: save the merged full model, not the adapter"})


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", add_help=False,
        help="train a policy on preference pairs (SPPO and friends) and save it",
        description="Every SPPOConfig/DPOConfig/TrainingArguments field is a flag; --config FILE.yaml sets them "
                    "from a YAML mapping. `sppo-hub train --help` lists them all.",
    )
    parser.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(func=run, passthrough=True)


def build_parser():
    """The TrlParser of this command: TrainScriptArguments + SPPOConfig, with this command's defaults."""
    from trl import TrlParser

    from ..train.config import SPPOConfig

    parser = TrlParser((TrainScriptArguments, SPPOConfig), prog="sppo-hub train",
                       description="Train --model on the pairs in --data with SPPO (or sppo_hard, dpo, ipo, inpo) "
                                   "and save the policy to --out. Flags and --config YAML keys are the fields of "
                                   "SPPOConfig (a TRL DPOConfig); earlier flag names (--lr, --epochs, --batch-size, "
                                   "--grad-accum, --loss, --precompute-ref) still work.")
    parser.set_defaults(**DEFAULTS)
    return parser


def parse(argv: list[str]):
    """(script arguments, SPPOConfig) from the command line and an optional --config YAML."""
    argv = [FLAG_ALIASES.get(a.split("=", 1)[0], a.split("=", 1)[0]) + ("=" + a.split("=", 1)[1] if "=" in a else "")
            if a.startswith("--") else a for a in argv]
    if "--config" in argv:
        index = argv.index("--config")
        path = argv[index + 1] if index + 1 < len(argv) else ""
        if not Path(path).is_file():
            raise FileNotFoundError(f"--config {path or '(missing)'}: no such YAML file")
    parser = build_parser()
    try:
        script, config = parser.parse_args_and_config(argv)
    except ValueError as err:
        if "not used by the HfArgumentParser" not in str(err) and "Unknown arguments from config" not in str(err):
            raise
        import difflib
        import re

        flags = [o for action in parser._actions for o in action.option_strings]
        unknown = [u for u in re.findall(r"'([^']+)'", str(err)) if u.startswith("--") or "--" not in str(err)]
        close = difflib.get_close_matches(unknown[0].split("=")[0], flags, n=1) if unknown else []
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"unknown flag or --config key {', '.join(unknown) or str(err)}{hint} "
                         "(`sppo-hub train --help` lists every SPPOConfig field)") from None
    return script, config


def _check(script: TrainScriptArguments, config, argv: list[str]) -> None:
    from .errors import UserError
    from ..loop.preflight import check_model_source

    if script.merge and not script.lora:
        raise UserError("--merge only applies with --lora (full fine-tuning always saves the full model).")
    for name, old in (("learning_rate", "--lr"), ("per_device_train_batch_size", "--batch-size"),
                      ("num_train_epochs", "--epochs")):
        if getattr(config, name) <= 0:
            raise UserError(f"--{name} ({old}) must be > 0 (got {getattr(config, name)}).")
    if script.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise UserError(f"--dtype {script.dtype!r}: use auto, float32, bfloat16 or float16.")
    try:
        check_model_source(script.model, script.revision, key="--model")
        if script.ref_model:
            check_model_source(script.ref_model, None, key="--ref-model")
    except ValueError as err:
        raise UserError(str(err)) from None


def _load_pairs(path: str):
    from datasets import Dataset

    p = Path(path)
    if not p.exists():
        raise ValueError(f"--data {path} does not exist; pass pairs.parquet or a `sppo-hub build-data` folder.")
    if p.is_dir():
        from ..core.data import load_iteration_datasets

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
    import dataclasses
    import shutil

    from .errors import UserError
    from .errors import reading

    argv = list(args.argv)
    try:
        script, config = parse(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a bad flag (2, message printed)
        return exit_.code if isinstance(exit_.code, int) else 2
    except FileNotFoundError as err:
        raise UserError(str(err)) from None
    except (ValueError, TypeError) as err:  # SPPOConfig.__post_init__ / TrainingArguments / an unknown --config key
        raise UserError(_flag_error(str(err), argv)) from None
    _check(script, config, argv)
    with reading("--data", script.data):
        pairs = _load_pairs(script.data)

    from ..train.trainer import train_policy

    out = Path(script.out)
    if config.output_dir in (None, "", "trainer_output"):  # TrainingArguments' own default: keep it beside --out
        config = dataclasses.replace(config, output_dir=str(out.with_name(out.name + ".trainer")))
    lora = None
    if script.lora:
        from peft import LoraConfig

        from ..loop.config import split_module_names

        lora = LoraConfig(r=script.lora_r, lora_alpha=script.lora_alpha or 2 * script.lora_r, task_type="CAUSAL_LM",
                          target_modules=split_module_names(script.lora_target_modules))
    metrics = train_policy(script.model, pairs, config, ref_model=script.ref_model, peft_config=lora, output_dir=out,
                           merge=script.merge, revision=script.revision, trust_remote_code=config.trust_remote_code,
                           model_dtype=script.dtype)
    shutil.rmtree(config.output_dir, ignore_errors=True)
    history = metrics["loss_history"]
    if history:
        print(f"loss {history[0][1]:.4g} -> {history[-1][1]:.4g} over {len(history)} steps")
    print(f"wrote {out}")
    return 0


def _flag_error(message: str, argv: list[str]) -> str:
    """A config error as '--flag: why', the flag found by its name or its value on the command line."""
    first = message.strip().splitlines()[0].split(", please select")[0] if message.strip() else "invalid arguments"
    if first.startswith("unknown flag"):
        return first
    values = {argv[i + 1]: argv[i] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    for value, flag in values.items():
        if value and value in first:
            return f"{flag}: {first}"
    return first
