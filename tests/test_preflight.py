"""`preflight`: a run is checked before it computes anything; resuming with a corrected recipe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from sppo_hub.loop.recipe import load_recipe
from sppo_hub.loop.preflight import check_model_source, preflight
from sppo_hub.loop.manifest import RunManifest
from sppo_hub.loop.resume import open_run_manifest
from sppo_hub.loop.resume import check_resume_changes, check_run_folder


def _recipe(tmp_path: Path, model: str, **extra) -> Path:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"say {i}"}) + "\n" for i in range(6)))
    data = {"run_name": "pf", "model": model, "prompts": {"path": str(prompts)}, "iterations": 2,
            "judge": {"type": "callable", "callable": f"{Path(__file__).resolve()}:prefer_first"},
            "training": {"optim": "adamw_torch"}, "publish": {"enabled": False},
            "output_dir": str(tmp_path / "run"), **extra}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def prefer_first(prompt: str, a: str, b: str) -> float:
    return 0.75


def test_plan_of_a_valid_recipe(tmp_path, tiny_model_dir):
    config = load_recipe(_recipe(tmp_path, str(tiny_model_dir)), ["training.use_lora=true", "evaluation.compare_prompts=2",
                                                                  "training.lora_target_modules=q_proj, v_proj"])
    assert config.training.lora_target_modules == ["q_proj", "v_proj"]  # a string is split at commas, not letters
    plan = preflight(config)
    assert plan.prompts_per_iteration == [2, 2] and plan.heldout == 2 and plan.iterations == 2
    assert plan.stages == ["generate", "judge", "data", "train", "compare"]
    text = plan.describe()
    assert str(tiny_model_dir) in text and "publish    : off" in text
    assert not (tmp_path / "run").exists()  # nothing written


def test_plan_lists_the_repos_to_publish(tmp_path, tiny_model_dir):
    config = load_recipe(_recipe(tmp_path, str(tiny_model_dir)), ["publish.enabled=true", "publish.local_hub=true"])
    plan = preflight(config)
    assert plan.repos == ["sppo-user/pf-iter1-data (dataset)", "sppo-user/pf-iter1 (model)",
                          "sppo-user/pf-iter2-data (dataset)", "sppo-user/pf-iter2 (model)"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["training.use_lora=true", "training.lora_target_modules=[q_proj,query_key_value]"],
         "training.lora_target_modules"),
        (["training.optim=adamw_fast"], "training.optim"),
        (["training.lr_scheduler_type=cosinee"], "training.lr_scheduler_type"),
        (["training.args.not_a_field=1"], "training.args.not_a_field"),
        (["model.revision=v1"], "model.revision"),  # a local folder has no revisions
        (["judge.callable=missing_judge.py:f"], "judge.callable"),
        (["iterations=7"], "iterations"),
        (["judge.type=reward_model", "judge.model=someone/no-such-reward-model"], "judge.model"),
    ],
)
def test_preflight_rejects(tmp_path, tiny_model_dir, overrides, field):
    config = load_recipe(_recipe(tmp_path, str(tiny_model_dir)), overrides)
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        preflight(config)


def test_vllm_backend_without_vllm(tmp_path, tiny_model_dir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    config = load_recipe(_recipe(tmp_path, str(tiny_model_dir)), ["generation_backend=vllm"])
    with pytest.raises(ValueError, match=r"generation_backend=vllm: .*pip install 'sppo-hub\[vllm\]'"):
        preflight(config)


def test_corrupt_weights_and_missing_folders_fail_early(tmp_path, tiny_model_dir):
    bad = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, bad)
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="corrupt"):
        check_model_source(str(bad))
    with pytest.raises(ValueError, match="no such folder"):
        check_model_source(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="no config.json"):
        check_model_source(str(tmp_path))


def test_hub_model_and_revision(local_hub, tiny_model_dir):
    """Repo and revision are looked up with huggingface_hub calls, here against the local Hub."""
    api = local_hub.api
    repo = api.create_repo("sppo-user/preflight-base", exist_ok=True).repo_id
    api.upload_folder(folder_path=str(tiny_model_dir), repo_id=repo)
    api.create_branch(repo, branch="v1", exist_ok=True)
    assert check_model_source(repo, "v1") == repo
    with pytest.raises(ValueError, match=r"model\.revision='no-such-rev'"):
        check_model_source(repo, "no-such-rev")
    with pytest.raises(ValueError, match=r"model\.name_or_path=sppo-user/no-such-model"):
        check_model_source("sppo-user/no-such-model")


def test_offline_hub_id_not_in_cache(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1 and it is not in the local cache"):
        check_model_source("someone/not-cached-model")


# ----------------------------------------------------------------------------- resume


def _manifest_with(tmp_path, tiny_model_dir, stages):
    config = load_recipe(_recipe(tmp_path, str(tiny_model_dir)))
    manifest = open_run_manifest(config, resume=False)
    for it, name in stages:
        manifest.record(it, name, {}, 0.0)
    return config


def test_resume_takes_changes_of_stages_not_yet_run(tmp_path, tiny_model_dir):
    _manifest_with(tmp_path, tiny_model_dir, [(0, "prompts"), (0, "base_model"), (1, "generate"), (1, "judge")])
    fixed = load_recipe(_recipe(tmp_path, str(tiny_model_dir)), ["training.learning_rate=1e-5", "data.drop_ties=false"])
    manifest = open_run_manifest(fixed, resume=True)  # train and data have not run: allowed
    assert manifest.data["config"]["training"]["learning_rate"] == 1e-5
    assert RunManifest.load(fixed.run_dir).data["config_changes"][0]["training.learning_rate"] == 5e-7
    assert load_recipe(fixed.run_dir / "recipe.yaml").training.learning_rate == 1e-5


def test_resume_refuses_changes_that_finished_stages_used(tmp_path, tiny_model_dir):
    _manifest_with(tmp_path, tiny_model_dir, [(0, "prompts"), (0, "base_model"), (1, "generate"), (1, "judge")])
    changed = load_recipe(_recipe(tmp_path, str(tiny_model_dir)), ["sampling.temperature=0.3"])
    with pytest.raises(ValueError) as err:
        check_resume_changes(RunManifest.load(changed.run_dir), changed.to_dict(), changed.run_dir)
    message = str(err.value)
    assert "sampling.temperature" in message and "iteration 1 generate" in message and str(changed.run_dir) in message


def test_plain_rerun_into_a_run_folder_names_the_way_out(tmp_path, tiny_model_dir):
    config = _manifest_with(tmp_path, tiny_model_dir, [(0, "prompts")])
    with pytest.raises(ValueError) as err:
        check_run_folder(config, resume=False)
    assert "--resume" in str(err.value) and f"rm -r {config.run_dir}" in str(err.value)
    with pytest.raises(ValueError, match="holds no run"):
        check_run_folder(load_recipe(_recipe(tmp_path, str(tiny_model_dir)), ["output_dir=" + str(tmp_path / "new")]),
                         resume=True)


def test_policy_load_kwargs_carry_model_settings(tmp_path, tiny_model_dir):
    config = load_recipe(_recipe(tmp_path, "org/model"), ["model.revision=abc", "model.dtype=bfloat16",
                                                          "model.trust_remote_code=true"])
    assert config.policy_load_kwargs(base=True) == {"trust_remote_code": True, "dtype": "bfloat16", "revision": "abc"}
    assert config.policy_load_kwargs(base=False) == {"trust_remote_code": True, "dtype": "bfloat16"}


# ----------------------------------------------------------------------------- fix and continue, end to end


def broken_hook(context, **kwargs) -> dict:
    raise RuntimeError("evaluation hook failed on purpose")


def fixed_hook(context, **kwargs) -> dict:
    return {"iteration": context.iteration, "repo": context.model_repo}


@pytest.mark.slow
def test_failed_run_is_fixed_and_resumed_from_another_directory(tmp_path, tiny_model_dir, monkeypatch, capsys):
    """A run that fails after publishing (a broken evaluation hook) is resumed with the corrected recipe from
    another working directory: finished stages are reused, the local Hub's repos are found in the run folder."""
    from sppo_hub.cli import main

    monkeypatch.delenv("SPPO_HUB_LOCAL_DIR", raising=False)
    here = Path(__file__).resolve()
    recipe = _recipe(tmp_path, str(tiny_model_dir), iterations=1,
                     sampling={"num_samples": 2, "max_new_tokens": 4, "batch_size": 4},
                     training={"optim": "adamw_torch", "max_length": 64, "per_device_train_batch_size": 4,
                               "learning_rate": 1e-4},
                     evaluation={"hooks": [{"name": f"{here}:broken_hook"}]})
    first = tmp_path / "first"
    first.mkdir()
    monkeypatch.chdir(first)
    assert main(["run", str(recipe), "--local-hub"]) == 1
    assert "evaluation hook failed on purpose" in capsys.readouterr().err
    run_dir = tmp_path / "run"
    assert (run_dir / "hub").is_dir() and not (first / ".hub").exists()  # the local Hub lives in the run folder
    before = RunManifest.load(run_dir)
    assert before.stage(1, "publish_model") is not None and before.stage(1, "evaluate") is None

    assert main(["run", str(recipe), "--local-hub"]) == 2  # a plain rerun: told how to continue or start over
    err = capsys.readouterr().err
    assert "--resume" in err and str(run_dir) in err

    changed = main(["run", str(recipe), "--local-hub", "--resume", "sampling.temperature=0.3"])
    assert changed == 2 and "iteration 1 generate" in capsys.readouterr().err

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", str(recipe), "--local-hub", "--resume", f"evaluation.hooks=[{{name: '{here}:fixed_hook'}}]"]) == 0
    after = RunManifest.load(run_dir)
    assert after.data["finished"] and after.stage(1, "evaluate")["artifacts"]["results"][f"{here}:fixed_hook"] == {
        "iteration": 1, "repo": before.stage(1, "publish_model")["artifacts"]["repo_id"]}
    for stage in ("generate", "judge", "train", "publish_model"):  # reused, not recomputed
        assert after.stage(1, stage)["finished_at"] == before.stage(1, stage)["finished_at"]


def test_stale_publish_temp_folders_are_removed(tmp_path, monkeypatch):
    """A publisher killed with -9 leaves `sppo-publish-<pid>-*`; the next one removes it, never a live one's."""
    import os
    import subprocess
    import tempfile

    from sppo_hub.hub.publish import clean_stale_staging_dirs

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = tmp_path / f"sppo-publish-{gone.pid}-x1"
    live = tmp_path / f"sppo-publish-{os.getppid()}-x2"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"copy")
    assert clean_stale_staging_dirs() == [stale]
    assert live.exists() and not stale.exists()


def test_report_to_reaches_the_training_arguments(tmp_path, tiny_model_dir):
    """`training.report_to` is TrainingArguments' own field (default none, offline); the train stage passes it."""
    from sppo_hub.loop.stages.train import trainer_kwargs
    from sppo_hub.train.config import SPPOConfig

    default = load_recipe(_recipe(tmp_path, str(tiny_model_dir)))
    assert SPPOConfig(**trainer_kwargs(default, tmp_path / "t")).report_to in ([], "none", ["none"])
    config = load_recipe(_recipe(tmp_path, str(tiny_model_dir)), ["training.report_to=[tensorboard]"])
    assert SPPOConfig(**trainer_kwargs(config, tmp_path / "t")).report_to == ["tensorboard"]
