"""Which dtypes training uses and saves: chosen from the hardware and the base checkpoint, not inherited.

TRL's configs default to bf16=True, which on CPU means training in pure bf16 and saving a bf16 checkpoint;
`SPPOConfig` asks `bf16_supported` instead, and `train_policy` loads and saves through `training_dtypes`.
Under FSDP, `fsdp_loads_weights_on_rank0_only` / `full_weights_on_every_rank` decide where weights are read.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .config import SPPOConfig

def training_dtypes(args: "SPPOConfig", stored_dtype: torch.dtype | None) -> tuple[torch.dtype, torch.dtype | None]:
    """(dtype to load the weights in, dtype to save them in) for a base checkpoint stored in `stored_dtype`.

    Weights load in bf16 only under bf16 autocast with a base stored in 16 bits (half the memory, TRL's usual
    setup); otherwise in fp32, so CPU and fp16-AMP training keep fp32 master weights. The saved dtype is the
    base's unless `args.save_dtype` names another (None: leave the trained weights' dtype).
    """
    half = (torch.bfloat16, torch.float16)
    load = torch.bfloat16 if args.bf16 and stored_dtype in half else torch.float32
    if args.save_dtype != "auto":
        return load, getattr(torch, args.save_dtype)
    return load, stored_dtype if isinstance(stored_dtype, torch.dtype) else None


def load_causal_lm(path: str | Path, dtype: torch.dtype, **hub):
    """`AutoModelForCausalLM.from_pretrained`, with a clear error for an unreadable (corrupt, truncated) checkpoint.

    `hub`: revision / trust_remote_code, passed through."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **hub)
    except SafetensorError as err:
        raise ValueError(f"model {path}: its weights cannot be read ({err}); the checkpoint is corrupt or "
                         "incomplete: re-download or re-save it.") from None


def fsdp_loads_weights_on_rank0_only() -> bool:
    """Under FSDP's cpu_ram_efficient_loading, `from_pretrained` fills ranks other than 0 with zeros and relies on
    accelerate broadcasting rank 0's weights when it shards the model. accelerate does that for the policy;
    TRL shards the reference model it builds itself without that broadcast (TRL 1.16, FSDP2), so its copy on
    the other ranks stays zeros. The trainer loads the reference itself, in full, when this is true."""
    from transformers.distributed.fsdp import is_fsdp_enabled

    return is_fsdp_enabled()


@contextmanager
def full_weights_on_every_rank():
    """`from_pretrained` inside this block reads the weights on every rank (cpu_ram_efficient_loading off)."""
    key = "FSDP_CPU_RAM_EFFICIENT_LOADING"
    saved = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved
