"""Recipe loading: YAML sections fill the stages' dataclass configs; overrides; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sppo_hub.loop.config import RunConfig
from sppo_hub.loop.recipe import load_recipe, parse_overrides, save_recipe, valid_keys
from sppo_hub.generation import SamplingConfig
from sppo_hub.judges import JudgeConfig

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _write(tmp_path, data) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


MINIMAL = {"run_name": "t", "model": "some/model", "prompts": {"path": "prompts.jsonl"}, "iterations": 2}


def test_sections_fill_stage_configs(tmp_path):
    cfg = load_recipe(_write(tmp_path, {**MINIMAL, "sampling": {"num_samples": 4, "temperature": 0.5},
                                        "judge": {"type": "pairrm", "batch_size": 4}}))
    assert isinstance(cfg.sampling, SamplingConfig) and cfg.sampling.num_samples == 4
    assert cfg.sampling.temperature == 0.5
    assert isinstance(cfg.judge, JudgeConfig) and cfg.judge.batch_size == 4
    assert cfg.model.name_or_path == "some/model"  # `model: <str>` shorthand
    assert cfg.iterations == 2 and cfg.run_dir == Path("runs/t")


def test_overrides_are_typed_and_dotted(tmp_path):
    cfg = load_recipe(_write(tmp_path, MINIMAL), ["sampling.num_samples=3", "training.eta=5", "publish.private=true",
                                                  "training.lora_target_modules=[q_proj,v_proj]", "model.revision=abc"])
    assert cfg.sampling.num_samples == 3
    assert cfg.training.eta == 5
    assert cfg.publish.private is True
    assert cfg.training.lora_target_modules == ["q_proj", "v_proj"]
    assert cfg.model.name_or_path == "some/model" and cfg.model.revision == "abc"
    assert parse_overrides(["a.b=0.5"]) == [("a.b", 0.5)]
    cfg = load_recipe(_write(tmp_path, MINIMAL), ["training.learning_rate=1e-5"])  # YAML 1.1 reads this as a str
    assert cfg.training.learning_rate == 1e-5
    with pytest.raises(ValueError, match="training.learning_rate"):
        load_recipe(_write(tmp_path, MINIMAL), ["training.learning_rate=fast"])
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["sampling.num_samples"])


@pytest.mark.parametrize(
    ("data", "overrides", "bad", "suggestion"),
    [
        ({**MINIMAL, "iteratons": 3}, [], "iteratons", "iterations"),
        ({**MINIMAL, "sampling": {"num_sample": 4}}, [], "sampling.num_sample", "sampling.num_samples"),
        (MINIMAL, ["training.learning_rat=1e-5"], "training.learning_rat", "training.learning_rate"),
        (MINIMAL, ["samplng.temperature=0.2"], "samplng.temperature", "sampling.temperature"),
        ({**MINIMAL, "temperature": 0.2}, [], "temperature", "sampling.temperature"),
    ],
)
def test_unknown_key_names_key_and_closest(tmp_path, data, overrides, bad, suggestion):
    with pytest.raises(ValueError) as err:
        load_recipe(_write(tmp_path, data), overrides)
    assert f"'{bad}'" in str(err.value) and f"'{suggestion}'" in str(err.value)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("iterations=0", "iterations"),
        ("sampling.num_samples=1", "sampling.num_samples"),
        ("training.loss=sppo_hardd", "training.loss"),
        ("training.eta=0", "training.eta"),
        ("prompts.path=", "prompts.path"),
        ("judge.type=oracle", "judge.type"),
        ("run_name=bad/name", "run_name"),
        ("judge.extra.recheck_rule=mean_score", "judge.extra.recheck_rule"),
        ("evaluation.compare_samples=0", "evaluation.compare_samples"),
    ],
)
def test_validation_errors_name_the_field(tmp_path, override, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_recipe(_write(tmp_path, MINIMAL), [override])


def test_bad_recipe_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="recipe"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ValueError, match="mapping"):
        load_recipe(bad)


def test_save_and_reload_roundtrip(tmp_path):
    cfg = load_recipe(_write(tmp_path, MINIMAL), ["sampling.num_samples=3"])
    again = load_recipe(save_recipe(cfg, tmp_path / "resolved.yaml"))
    assert again == cfg


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_shipped_recipes_load(recipe):
    cfg = load_recipe(RECIPES / recipe)
    assert isinstance(cfg, RunConfig) and cfg.iterations >= 1
    if recipe.startswith("sppo-"):  # the paper's setups
        assert cfg.sampling.num_samples == 5 and cfg.iterations == 3
        assert cfg.judge.type == "pairrm" and cfg.training.loss == "sppo"
        assert cfg.training.eta == 1000 and cfg.training.learning_rate == 5e-7
        assert cfg.training.optim == "rmsprop" and not cfg.training.use_lora
        assert cfg.prompts.path == "openbmb/UltraFeedback" and cfg.prompts.split_across_iterations


def test_valid_keys_cover_nested_sections():
    keys = valid_keys()
    assert {"sampling.num_samples", "judge.type", "training.eta", "publish.org", "evaluation.hooks"} <= set(keys)


def test_generation_kwargs_reach_the_backend_options():
    """Backend options (e.g. vLLM's gpu_memory_utilization) are a free-form mapping set by dotted overrides."""
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    config = load_recipe(recipe, ["generation_kwargs.gpu_memory_utilization=0.5"])
    assert config.generation_kwargs == {"gpu_memory_utilization": 0.5}


def test_ray_section_is_checked_when_the_recipe_is_read(tmp_path, monkeypatch):
    cfg = load_recipe(_write(tmp_path, {**MINIMAL, "ray": {"enabled": True, "workers": 4, "num_gpus": 1}}))
    assert (cfg.ray.enabled, cfg.ray.workers, cfg.ray.num_gpus) == (True, 4, 1.0)
    assert load_recipe(_write(tmp_path, MINIMAL)).ray.enabled is False  # off unless asked
    with pytest.raises(ValueError, match=r"recipe section 'ray'.*ray.workers=0: need at least 1 actor"):
        load_recipe(_write(tmp_path, {**MINIMAL, "ray": {"workers": 0}}))
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ValueError, match=r"ray.enabled: the Ray engine needs Ray: pip install 'sppo-hub\[ray\]'"):
        load_recipe(_write(tmp_path, {**MINIMAL, "ray": {"enabled": True}}))
