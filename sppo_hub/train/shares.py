"""What each process of a training run did, and what the launch did with the last, incomplete global batch.

Two facts a data-parallel run should show rather than assume:
- each rank's share: the pairs each process actually trained on (counted in the loss, not derived from the
  config), and the engine that wrapped the model (DDP, FSDP, a DeepSpeed ZeRO stage). A launch whose ranks
  each redundantly trained on the whole global batch, or whose FSDP / ZeRO config was silently ignored,
  would give the same weights; these records tell them apart.
- the remainder: with n pairs and a global batch of G that does not divide n, one process trains on a short
  last batch of n mod G pairs, while several processes get what accelerate's `even_batches` gives them: the
  short batch filled up with pairs repeated from the start of the epoch (so those pairs count twice). The
  choice between that and dropping the incomplete batch (identical on any number of processes) is the
  Trainer's own flag `dataloader_drop_last` (`training.args: {dataloader_drop_last: true}`); `last_batch`
  says what happened so the run's record and console make it explicit.

Hand-written: neither transformers nor accelerate reports per-rank example counts or the remainder's fate.
"""

from __future__ import annotations

import math
from typing import Any


def engine_name(trainer) -> str:
    """The distributed engine actually wrapping the model: 'deepspeed-zero<stage>', 'fsdp<version>', 'ddp' or
    'single-process' (read from the trainer after training, not from the launch config)."""
    import torch

    accelerator = trainer.accelerator
    if trainer.is_deepspeed_enabled:
        from deepspeed import DeepSpeedEngine

        if not isinstance(trainer.model_wrapped, DeepSpeedEngine):
            return f"deepspeed-unwrapped({type(trainer.model_wrapped).__name__})"
        return f"deepspeed-zero{trainer.model_wrapped.zero_optimization_stage()}"
    if trainer.is_fsdp_enabled:
        from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

        if isinstance(trainer.model_wrapped, FSDPModule):
            return "fsdp2"
        if isinstance(trainer.model_wrapped, FullyShardedDataParallel):
            return "fsdp1"
        return f"fsdp-unwrapped({type(trainer.model_wrapped).__name__})"
    if isinstance(trainer.model_wrapped, torch.nn.parallel.DistributedDataParallel):
        return "ddp"
    return "single-process" if accelerator.num_processes == 1 else f"unwrapped({type(trainer.model_wrapped).__name__})"


def fsdp_falls_back_to_ddp(cpu_training: bool) -> bool:
    """An FSDP launch config (`distributed_type: FSDP`, i.e. ACCELERATE_USE_FSDP) on processes that train on CPU:
    accelerate (1.x) engages FSDP only on accelerators; on CPU it runs the launch as plain DDP over gloo."""
    import os

    return cpu_training and os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


FSDP_ON_CPU_NOTE = ("the launch asks for FSDP, but accelerate shards models only on accelerators: on CPU it trains "
                    "as DDP over gloo (every process holds the whole model; same weights as FSDP would give)")


def gather_from_ranks(value: Any) -> list[Any]:
    """`value` from every process, in rank order (a collective: every training process calls it)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def last_batch(pairs: int, global_batch: int, epochs: float, drop_last: bool, processes: int) -> dict[str, Any]:
    """What happens to an epoch's last, incomplete global batch (pure arithmetic over the Trainer's rules).

    `handling`: 'none' (the global batch divides the pairs), 'dropped' (`dataloader_drop_last`), 'short' (one
    process: a smaller last batch), or 'repeated' (several processes: accelerate's even_batches fills the
    last global batch with pairs from the start of the epoch, each of which then trains twice in that epoch).
    """
    remainder = pairs % global_batch if global_batch > 0 else 0
    record = {"pairs": pairs, "global_batch_size": global_batch, "remainder": remainder, "repeated_per_epoch": 0}
    if remainder == 0:
        return {**record, "handling": "none"}
    if drop_last:
        return {**record, "handling": "dropped", "dropped_per_epoch": remainder}
    if processes == 1:
        return {**record, "handling": "short"}
    return {**record, "handling": "repeated", "repeated_per_epoch": global_batch - remainder,
            "epochs": math.ceil(epochs)}


def describe_last_batch(record: dict[str, Any], t: int) -> str | None:
    """One console line when the remainder is repeated or dropped (None when nothing needs saying)."""
    handling = record.get("handling")
    if handling == "repeated":
        return (f"iteration {t}: {record['pairs']} pairs do not fill global batches of {record['global_batch_size']}: "
                f"the last batch repeats {record['repeated_per_epoch']} pair(s) from the epoch's start on "
                "several processes (accelerate's even_batches), where 1 process trains on a short batch; set "
                "training.args.dataloader_drop_last: true to drop the incomplete batch on any launch")
    if handling == "dropped":
        return (f"iteration {t}: the incomplete last batch ({record['remainder']} of {record['pairs']} pairs) is "
                "dropped each epoch (training.args.dataloader_drop_last)")
    return None
