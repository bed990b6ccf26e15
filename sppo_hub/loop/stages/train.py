"""Stage `train`: pi_t fitted on iteration t's pairs with pi_{t-1} as the reference.

Every process of a multi-process launch runs this stage: the Trainer splits each global batch
(per_device_train_batch_size x gradient_accumulation_steps x processes) across them; the main
process alone saves the checkpoint (`trainer.save_policy`) and records the stage.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..ranks import train_on_cpu
from ...train.shares import FSDP_ON_CPU_NOTE, describe_last_batch, fsdp_falls_back_to_ddp, last_batch
from . import equilibrium
from .context import RunContext, set_seed


def trainer_kwargs(config: RunConfig, output_dir: Path) -> dict[str, Any]:
    """The recipe's `training:` section as `trainer.SPPOConfig` keyword arguments."""
    tc = config.training
    kwargs = dict(
        output_dir=str(output_dir), loss_type=tc.loss, eta=tc.eta, learning_rate=tc.learning_rate,
        optim=tc.optim, lr_scheduler_type=tc.lr_scheduler_type, warmup_steps=float(tc.warmup_ratio),  # a float < 1 is a ratio
        num_train_epochs=tc.num_train_epochs, per_device_train_batch_size=tc.per_device_train_batch_size,
        gradient_accumulation_steps=tc.gradient_accumulation_steps, max_length=tc.max_length, bf16=tc.bf16,
        gradient_checkpointing=tc.gradient_checkpointing, seed=config.seed, data_seed=config.seed,
        report_to=tc.report_to, save_strategy="no", logging_steps=1,
    )
    kwargs.update(tc.args)
    return kwargs


def _progress(t: int):
    """One bar of optimizer steps (with the loss) in a quiet console; None keeps the Trainer's own display."""
    from ...io.console import is_quiet, training_progress

    return training_progress(f"train pi_{t}") if is_quiet() else None


def _leave_zero3() -> None:
    """After ZeRO-3 training transformers keeps routing `from_pretrained` through `deepspeed.zero.Init`, a
    collective of every process; the main process then loads pi_t alone to generate and would wait forever."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


def train(ctx: RunContext, t: int, timer, data: dict) -> dict:
    """Fit pi_t; save a full checkpoint atomically (train_policy writes a temp folder and renames it)."""
    from ...core.data import load_iteration_datasets
    from ...train.config import SPPOConfig
    from ...train.trainer import train_policy

    tc = ctx.config.training
    out = ctx.iter_dir(t)
    policy = ctx.policy_path(t - 1)
    datasets = load_iteration_datasets(data["path"])
    final = out / "model"
    kwargs = trainer_kwargs(ctx.config, out / "trainer")
    if train_on_cpu(ctx.process):
        kwargs["use_cpu"] = True  # else accelerate finds no GPU backend and each process trains alone
    args = SPPOConfig(**kwargs)
    pairs, args = equilibrium.prepare_training(ctx, datasets, args, t)  # all responses / anchors in the reference
    lora = None
    if tc.use_lora:
        from peft import LoraConfig

        lora = LoraConfig(r=tc.lora_r, lora_alpha=tc.lora_alpha, lora_dropout=tc.lora_dropout,
                          target_modules=list(tc.lora_target_modules), task_type="CAUSAL_LM")
    # as the Trainer will batch (training.args may override the section's fields)
    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * ctx.process.world_size
    remainder = last_batch(len(pairs), global_batch, args.num_train_epochs, args.dataloader_drop_last,
                           ctx.process.world_size)
    if ctx.process.is_main and (note := describe_last_batch(remainder, t)):
        ctx.console.print(f"  [yellow]{note}[/yellow]")
    if ctx.process.is_main and fsdp_falls_back_to_ddp(kwargs.get("use_cpu", False)):
        ctx.console.print(f"  [yellow]iteration {t}: {FSDP_ON_CPU_NOTE}[/yellow]")
    set_seed(ctx.config.seed + t)
    with timer.computing():
        load = ctx.config.policy_load_kwargs(base=t == 1)  # model.revision / trust_remote_code / dtype
        metrics = train_policy(policy, pairs, args, peft_config=lora, output_dir=final,
                               merge=ctx.config.publish.merge_lora, progress=_progress(t),
                               revision=load.get("revision"), trust_remote_code=load["trust_remote_code"],
                               model_dtype=load.get("dtype"))
    _leave_zero3()
    if ctx.process.is_main:
        shutil.rmtree(out / "trainer", ignore_errors=True)
    return {"path": str(final), "reference": policy, "seed": ctx.config.seed + t, "lora": tc.use_lora,
            "processes": ctx.process.world_size, "global_batch_size": global_batch,
            "shares": metrics.get("shares", {}), "last_batch": remainder, "eta": args.eta,
            "reference_anchors": {str(i): w for i, w in equilibrium.anchors(ctx, t).items()},
            "loss_history": [list(x) for x in metrics.get("loss_history", [])],
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
