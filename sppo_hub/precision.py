"""Which dtypes training uses and saves: chosen from the hardware and the base checkpoint, not inherited.

TRL's configs default to bf16=True, which on CPU means training in pure bf16 and saving a bf16 checkpoint;
`SPPOConfig` asks `bf16_supported` instead, and `train_policy` loads and saves through `training_dtypes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .trainer import SPPOConfig

SAVE_DTYPES = ("auto", "float32", "bfloat16", "float16")


def bf16_supported(use_cpu: bool = False) -> bool:
    """True on a CUDA GPU with bfloat16 (Ampere or newer); False on CPU, where bf16 training is slow and lossy."""
    return not use_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


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
