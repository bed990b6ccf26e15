"""`SPPOConfig`: TRL's `DPOConfig` plus SPPO's `eta`, the loss choice and the saved dtype (TRL's `<method>_config.py`).

`SPPOTrainer` (`train.trainer`) reads it; `train.precision` turns its dtype settings into load / save dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from trl import DPOConfig

from ..core import losses

SAVE_DTYPES = ("auto", "float32", "bfloat16", "float16")


def bf16_supported(use_cpu: bool = False) -> bool:
    """True on a CUDA GPU with bfloat16 (Ampere or newer); False on CPU, where bf16 training is slow and lossy."""
    return not use_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()



@dataclass
class SPPOConfig(DPOConfig):
    """DPOConfig plus SPPO's `eta`. For sppo* and inpo, `beta` is 1/eta (give either); for dpo/ipo it is DPO's beta."""

    loss_type: str = field(
        default="sppo",
        metadata={"help": f"Loss from `sppo_hub.core.losses`: one of {', '.join(losses.LOSSES)}."},
    )
    eta: float | None = field(
        default=None,
        metadata={"help": "SPPO's eta (the target log-ratio scale). Default 1000, i.e. the paper code's beta = 0.001."},
    )
    beta: float | None = field(
        default=None,
        metadata={"help": "For sppo losses 1/eta (must agree with eta when both are set); for dpo/ipo DPO's beta "
                          "(default 0.1)."},
    )
    tau: float = field(default=0.0, metadata={"help": "INPO's KL weight toward pi_ref (0 <= tau * eta <= 1)."})
    reference_mix: float = field(
        default=0.0,
        metadata={"help": "a in [0, 1): the reference becomes pi_ref^(1-a) pi_0^a, pi_0's (or any anchor's) log-probs "
                          "read from the init_*_logps columns (sppo_hub.equilibrium.options; add them with "
                          "add_initial_logps). 0: off."},
    )
    label_smoothing: float = field(default=0.0, metadata={"help": "cDPO label smoothing for loss_type='dpo'."})
    ipo_reduction: str = field(
        default="mean",
        metadata={"help": "loss_type='ipo': 'mean' divides each log-ratio by its completion's token count (TRL >= 1.0, "
                          "the IPO authors' form; default); 'sum' uses summed log-ratios (TRL 0.x, uclaml/SPPO)."},
    )
    save_dtype: str = field(
        default="auto",
        metadata={"help": "dtype of the saved policy: 'auto' keeps the base checkpoint's dtype; or float32, "
                          "bfloat16, float16."},
    )
    logging_steps: float = field(default=1, metadata={"help": "Log (and record the loss history) every N steps."})

    def __post_init__(self):
        name = self.loss_type[0] if isinstance(self.loss_type, list) and len(self.loss_type) == 1 else self.loss_type
        if not isinstance(name, str) or name not in losses.LOSSES:
            raise ValueError(f"loss_type={self.loss_type!r} is not supported: choose one of {', '.join(losses.LOSSES)}.")
        if name in losses.SPPO_LOSSES:
            self.eta = losses.resolve_eta(self.eta, self.beta)
            self.beta = 1.0 / self.eta
        elif self.beta is None:
            self.beta = 0.1
        if self.ld_alpha is not None:
            raise ValueError("ld_alpha is not supported by SPPOTrainer; leave it unset.")
        if not 0.0 <= self.reference_mix < 1.0:
            raise ValueError(f"reference_mix={self.reference_mix}: give pi_0's weight in the reference, in [0, 1).")
        if self.ipo_reduction not in losses.IPO_REDUCTIONS:
            raise ValueError(f"ipo_reduction={self.ipo_reduction!r}: choose 'mean' (per-token, TRL >= 1.0) or 'sum'.")
        if self.save_dtype not in SAVE_DTYPES:
            raise ValueError(f"save_dtype={self.save_dtype!r}: choose one of {', '.join(SAVE_DTYPES)}.")
        if self.bf16 is None:  # TRL would turn None into True; bf16 autocast only where the hardware has it
            self.bf16 = bf16_supported(self.use_cpu) and not self.fp16
        super().__post_init__()  # turns loss_type into a one-element list, as TRL expects
