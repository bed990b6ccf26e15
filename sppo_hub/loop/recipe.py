"""Recipe loading: a YAML mapping (alignment-handbook style) plus dotted `key=value` overrides -> `RunConfig`.

Sections fill the stages' dataclass configs recursively; every scalar is checked against its field's
type (`iterations: 1.5` and `trust_remote_code: maybe` fail naming the key); an unknown key is an error
naming the closest valid one, or the key a common alias means (`training.lr` -> `training.learning_rate`).

Why not `HfArgumentParser`/`TrlParser` here (`sppo-hub train` uses it): a run recipe is nested, one section
per stage dataclass, and the sections share field names (`batch_size` in sampling, judge and training;
`dtype`, `model`, `seed`, `revision`), which a flat parser cannot tell apart; the training section's
TrainingArguments fields are passed through `training.args` and checked by building the real
`SPPOConfig` (`sppo_hub.loop.preflight`).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any

import yaml

from .config import RunConfig, split_module_names

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
