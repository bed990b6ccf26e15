"""SPPO on top of TRL: `SPPOTrainer(DPOTrainer)`, `save_policy`, `train_policy` (`SPPOConfig` is in `train.config`).

TRL's DPOTrainer already does what SPPO needs around the loss: tokenising conversational pairs with the model's
chat template, the reference model (a frozen copy, the adapter-disabled base under LoRA, or log-probs precomputed
once per iteration with `precompute_ref_log_probs`), the fused LM head that never materialises the full logits,
bf16, gradient checkpointing and `accelerate launch` (DDP / DeepSpeed / FSDP). This subclass only
- lets the paper's probability columns through (signature-column whitelist and collator),
- replaces the loss by `sppo_hub.core.losses.get_loss(loss_type)` (sppo, sppo_single, sppo_hard, dpo, ipo, inpo),
- logs log-ratios and rewards, and keeps `trainer.state.log_history` (the loss curve).

Position ids: TRL's collator concatenates prompt + completion and pads on the RIGHT, so real tokens always sit at
positions 0..n-1 and the model's default position ids are correct; the left-padding trap does not arise here.
"""

from __future__ import annotations

import inspect
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import is_peft_model
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from ..core import losses
from ..equilibrium.options import mix_log_probs
from .config import SPPOConfig
from .precision import fsdp_loads_weights_on_rank0_only, full_weights_on_every_rank, load_causal_lm, training_dtypes
from .shares import engine_name, gather_from_ranks

__all__ = [
    "PROBABILITY_COLUMNS", "DataCollatorForSPPO", "SPPOTrainer", "add_initial_logps", "loss_history",
    "save_policy", "train_policy",
]

PROBABILITY_COLUMNS = ("chosen_probs", "chosen_probs_win", "chosen_probs_lose")
INIT_LOGP_COLUMNS = ("init_chosen_logps", "init_rejected_logps")  # INPO: log-probs under pi_ref = pi_0
EXTRA_COLUMNS = PROBABILITY_COLUMNS + INIT_LOGP_COLUMNS
REQUIRED_COLUMNS = {
    "sppo": ("chosen_probs_win", "chosen_probs_lose"),
    "sppo_single": ("chosen_probs",),
    "sppo_hard": (),
    "dpo": (),
    "ipo": (),
    "inpo": INIT_LOGP_COLUMNS,
}


@dataclass
class DataCollatorForSPPO(DataCollatorForPreference):
    """TRL's preference collator, also stacking the probability / INPO log-prob columns into float tensors."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().torch_call(examples)
        for key in EXTRA_COLUMNS:
            if key in examples[0]:
                out[key] = torch.tensor([float(ex[key]) for ex in examples], dtype=torch.float32)
        return out


class SPPOTrainer(DPOTrainer):
    """DPOTrainer whose loss is any of `sppo_hub.core.losses`, fed by the dataset's probability columns."""

    _tag_names = ["trl", "sppo", "sppo-hub"]
    _name = "SPPO"

    def __init__(self, model, ref_model=None, args: SPPOConfig | None = None, train_dataset=None, **kwargs):
        if args is None:
            raise ValueError("args is required: pass SPPOConfig(output_dir=..., loss_type=..., eta=...).")
        if not isinstance(args, SPPOConfig):
            raise TypeError(f"args must be an SPPOConfig (got {type(args).__name__}); build one with SPPOConfig(...).")
        self.loss_name = args.loss_type[0]
        self.loss_fn = losses.get_loss(self.loss_name)
        self._loss_params = set(inspect.signature(self.loss_fn).parameters)
        for name, ds in [("train_dataset", train_dataset), *_named(kwargs.get("eval_dataset"))]:
            _check_columns(ds, self.loss_name, name)
            if args.reference_mix and ds is not None and not set(INIT_LOGP_COLUMNS) <= set(ds.column_names):
                raise ValueError(f"reference_mix={args.reference_mix} needs {name} columns {INIT_LOGP_COLUMNS} "
                                 "(log-probs under pi_0); add them with sppo_hub.train.trainer.add_initial_logps.")
        user_collator = kwargs.get("data_collator") is not None
        super().__init__(model, ref_model=ref_model, args=args, train_dataset=train_dataset, **kwargs)
        if not user_collator and type(self.data_collator) is DataCollatorForPreference:
            c = self.data_collator
            self.data_collator = DataCollatorForSPPO(
                pad_token_id=c.pad_token_id, max_length=c.max_length, truncation_mode=c.truncation_mode,
                pad_to_multiple_of=c.pad_to_multiple_of,
            )

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = list(dict.fromkeys([*self._signature_columns, *EXTRA_COLUMNS]))

    def compute_ref_log_probs(self, model, inputs):
        """The parent's reference pass, without the extra columns (the model must not see them)."""
        return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k not in EXTRA_COLUMNS})

    def _sequence_logps(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Summed completion log-probs of the policy, split into (chosen, rejected), and the model outputs."""
        skip = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", *EXTRA_COLUMNS}
        model_kwargs = {k: v for k, v in inputs.items() if k not in skip}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        seq_len = completion_mask.size(1) - 1
        logps = outputs.log_probs[:, -seq_len:].sum(dim=1)  # fused head: label positions only, masked ones are 0
        chosen, rejected = logps.chunk(2, dim=0)
        return chosen, rejected, outputs

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        chosen_logps, rejected_logps, outputs = self._sequence_logps(model, inputs)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_chosen, ref_rejected = self.compute_ref_log_probs(self.ref_model or self.model, inputs)
        if self.args.reference_mix:  # reference pi_ref^(1-a) pi_0^a
            a = self.args.reference_mix
            ref_chosen = mix_log_probs(ref_chosen.to(chosen_logps), inputs["init_chosen_logps"].to(chosen_logps), a)
            ref_rejected = mix_log_probs(ref_rejected.to(rejected_logps),
                                         inputs["init_rejected_logps"].to(rejected_logps), a)
        chosen_logratios = chosen_logps - ref_chosen.to(chosen_logps)
        rejected_logratios = rejected_logps - ref_rejected.to(rejected_logps)

        available: dict[str, Any] = {
            "chosen_logratios": chosen_logratios, "rejected_logratios": rejected_logratios,
            "eta": self.args.eta, "beta": self.beta, "tau": self.args.tau, "label_smoothing": self.args.label_smoothing,
            **{k: inputs[k] for k in PROBABILITY_COLUMNS if k in inputs},
        }
        if self.loss_name == "ipo" and self.args.ipo_reduction == "mean":  # per-token, as TRL's DPOTrainer
            available["chosen_lengths"], available["rejected_lengths"] = inputs["completion_mask"].sum(dim=1).chunk(2)
        if self.loss_name == "inpo":  # the trainer's reference is pi_t; pi_ref = pi_0 comes as precomputed log-probs
            available.update(
                chosen_logratios=chosen_logps - inputs["init_chosen_logps"].to(chosen_logps),
                rejected_logratios=rejected_logps - inputs["init_rejected_logps"].to(rejected_logps),
                chosen_logratios_prev=chosen_logratios, rejected_logratios_prev=rejected_logratios,
            )
        if self.loss_name in losses.SPPO_LOSSES:
            available.pop("beta")  # eta already holds it; passing both would only re-check 1/eta
        per_example = self.loss_fn(**{k: v for k, v in available.items() if k in self._loss_params})
        if mode == "train":  # this process's share, counted where the pairs meet the loss (see train.shares)
            self.pairs_trained = getattr(self, "pairs_trained", 0) + int(per_example.shape[0])
        loss = per_example.mean()
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss

        self._log_batch_metrics(mode, chosen_logps, rejected_logps, chosen_logratios, rejected_logratios)
        if return_outputs:
            return loss, outputs
        return loss

    def _log_batch_metrics(self, mode, chosen_logps, rejected_logps, chosen_logratios, rejected_logratios):
        """Per-batch means, gathered over processes; `log()` averages them over the logging window."""
        gather = self.accelerator.gather_for_metrics
        chosen_r, rejected_r = chosen_logratios.detach(), rejected_logratios.detach()
        values = {
            "logratios/chosen": chosen_r,
            "logratios/rejected": rejected_r,
            "rewards/chosen": self.beta * chosen_r,
            "rewards/rejected": self.beta * rejected_r,
            "rewards/margins": self.beta * (chosen_r - rejected_r),
            "rewards/accuracies": (chosen_r > rejected_r).float(),
            "logps/chosen": chosen_logps.detach(),
            "logps/rejected": rejected_logps.detach(),
        }
        for key, value in values.items():
            self._metrics[mode][key].append(gather(value).float().mean().item())


def _named(eval_dataset) -> list[tuple[str, Any]]:
    if eval_dataset is None:
        return []
    if isinstance(eval_dataset, dict):
        return [(f"eval_dataset[{k!r}]", v) for k, v in eval_dataset.items()]
    return [("eval_dataset", eval_dataset)]


def _check_columns(dataset, loss_name: str, name: str) -> None:
    """Fail before any model work when the dataset lacks a column the loss needs or holds bad probabilities."""
    if dataset is None or getattr(dataset, "column_names", None) is None:
        return
    cols = set(dataset.column_names)
    for col in ("prompt", "chosen", "rejected", *REQUIRED_COLUMNS[loss_name]):
        if col not in cols:
            hint = " (log-probs of chosen/rejected under pi_0)" if col in INIT_LOGP_COLUMNS else ""
            raise ValueError(f"{name} has no column {col!r}{hint}, which loss_type={loss_name!r} needs; "
                             f"columns present: {sorted(cols)}. Build pairs with sppo_hub.core.data.")
    for col in ("prompt", "chosen", "rejected", *(c for c in EXTRA_COLUMNS if c in cols)):
        values = dataset[col]
        missing = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and v != v)]
        if missing:
            raise ValueError(f"{name} column {col!r} is null or NaN in {len(missing)} of {len(values)} rows "
                             f"(first: row {missing[0]}); drop or fix those rows before training.")
    for col in PROBABILITY_COLUMNS:
        if col in cols and len(dataset):
            losses.check_probabilities(f"{name} column {col!r}", torch.tensor(dataset[col], dtype=torch.float64))


def save_policy(trainer: DPOTrainer, out_dir: str | Path, merge: bool = False, dtype: "torch.dtype | None" = None) -> Path:
    """Save the trained policy with its tokenizer, chat template and generation config; atomically (temp, rename).

    LoRA: the adapter alone, or (`merge=True`) the merged full model; merging folds the adapter into the trainer's
    model in place (`trainer.model` becomes the plain merged model), so save an adapter first if you want both.
    Full fine-tuning: the full model. `dtype` casts a merged or fully fine-tuned model before saving (e.g. back to
    the base checkpoint's bf16 after fp32 training on CPU: half the size to publish). The loss history (`trainer.state.log_history`) goes beside it as `log_history.json`.
    """
    import json

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if trainer.accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # a killed run's leftover
    trainer.accelerator.wait_for_everyone()  # sharded saves write from every process: not before the cleanup
    model = trainer.accelerator.unwrap_model(trainer.model)
    if merge and is_peft_model(model):
        if trainer.accelerator.is_main_process:
            merged = model.merge_and_unload()  # folds the adapter into the base weights in place
            if dtype is not None:
                merged = merged.to(dtype)
            trainer.model = merged
            merged.save_pretrained(tmp)
            trainer.processing_class.save_pretrained(tmp)
    else:
        sharded = trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled
        if dtype is not None and not is_peft_model(model) and not sharded and model.dtype != dtype:
            model.to(dtype)  # training is over: store the full model in the requested (the base's) dtype
        trainer.save_model(str(tmp))  # Trainer's path handles DeepSpeed/FSDP gathering; saves the tokenizer too
    if trainer.accelerator.is_main_process:
        if model.generation_config is not None and not (tmp / "generation_config.json").exists():
            model.generation_config.save_pretrained(tmp)
        (tmp / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    trainer.accelerator.wait_for_everyone()
    return out_dir


def add_initial_logps(model, dataset, args: SPPOConfig, processing_class=None):
    """`dataset` plus `init_chosen_logps` / `init_rejected_logps`: summed completion log-probs under `model` (pi_0).

    INPO needs log-ratios against pi_ref = pi_0 as well as against the trainer's reference pi_t; this runs TRL's
    reference precompute pass once with pi_0 as the model and keeps its two columns.
    """
    import dataclasses

    cfg = dataclasses.replace(args, loss_type="sppo_hard", eta=None, beta=None, tau=0.0, precompute_ref_log_probs=True,
                              max_steps=1, reference_mix=0.0)
    scorer = SPPOTrainer(model, args=cfg, train_dataset=dataset.remove_columns(
        [c for c in INIT_LOGP_COLUMNS if c in dataset.column_names]), processing_class=processing_class)
    scored = scorer.train_dataset
    if len(scored) != len(dataset):
        raise ValueError(f"{len(dataset) - len(scored)} pairs have prompts longer than max_length={args.max_length}; "
                         "raise max_length or drop them before INPO.")
    out = dataset.remove_columns([c for c in INIT_LOGP_COLUMNS if c in dataset.column_names])
    out = out.add_column("init_chosen_logps", scored["ref_chosen_logps"])
    return out.add_column("init_rejected_logps", scored["ref_rejected_logps"])


def loss_history(trainer: DPOTrainer) -> list[tuple[int, float]]:
    """(step, training loss) pairs from `trainer.state.log_history`, for plots and model cards."""
    return [(int(r["step"]), float(r["loss"])) for r in trainer.state.log_history if "loss" in r and "step" in r]


def train_policy(
    model: str | Path,
    train_dataset,
    args: SPPOConfig,
    *,
    ref_model: str | Path | None = None,
    peft_config=None,
    output_dir: str | Path | None = None,
    merge: bool = True,
    progress=None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    model_dtype: str | None = None,
) -> dict[str, Any]:
    """Fit a policy on a pairs dataset with `model` (pi_t) as the reference unless `ref_model` is given; save it.

    `progress`: a TrainerCallback that replaces the Trainer's progress bar and printed log dicts
    (`sppo_hub.io.console.training_progress()`: one bar of steps with the loss).

    `revision` / `trust_remote_code` go to every `from_pretrained` of `model`; `model_dtype` (a torch dtype name,
    not "auto") loads the policy and reference in that dtype instead of the one chosen from the hardware.

    Returns the training metrics plus `loss_history` ([(step, loss)]), `log_history` (the raw log records) and
    `shares` (the engine in use, the pairs each process trained on, the optimizer steps; see train.shares).
    """
    from transformers import AutoConfig, AutoTokenizer

    for label, path in (("model", model), ("ref_model", ref_model)):
        if path is not None and str(path).startswith((".", "/")) and not Path(path).exists():
            raise ValueError(f"{label} path {path} does not exist; pass a saved model folder or a Hub id.")
    hub = {"revision": revision, "trust_remote_code": trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(str(model), **hub)
    if not tokenizer.chat_template:
        raise ValueError(f"model {model} has no chat template (tokenizer_config chat_template); set one before training.")
    # fp32 weights on CPU (bf16 only under GPU autocast); the saved policy keeps the base's stored dtype
    stored = getattr(AutoConfig.from_pretrained(str(model), **hub), "dtype", None)
    stored = getattr(torch, stored) if isinstance(stored, str) and hasattr(torch, stored) else stored
    dtype, save_dtype = training_dtypes(args, stored if isinstance(stored, torch.dtype) else None)
    if model_dtype not in (None, "auto"):
        dtype = getattr(torch, model_dtype)
    policy = load_causal_lm(model, dtype, **hub)
    reference = load_causal_lm(ref_model, dtype, trust_remote_code=trust_remote_code) if ref_model is not None else None
    if reference is None and peft_config is None and fsdp_loads_weights_on_rank0_only():
        with full_weights_on_every_rank():  # TRL's own reference copy would be zeros off rank 0 (see there)
            reference = load_causal_lm(model, dtype, **hub)
    trainer = SPPOTrainer(policy, ref_model=reference, args=args, train_dataset=train_dataset,
                          processing_class=tokenizer, peft_config=peft_config)
    if progress is not None:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(progress)
    result = trainer.train()
    shares = {"engine": engine_name(trainer),
              "pairs_per_rank": gather_from_ranks(getattr(trainer, "pairs_trained", 0)),
              "optimizer_steps": trainer.state.global_step}
    if output_dir is not None:
        save_policy(trainer, output_dir, merge=merge, dtype=save_dtype)
    return {**result.metrics, "loss_history": loss_history(trainer), "log_history": list(trainer.state.log_history),
            "shares": shares}
