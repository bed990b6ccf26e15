"""The SPPO loop end to end on the tiny model through the local Hub: 2 iterations, kill -9, resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sppo_hub.loop.recipe import load_recipe
from sppo_hub.loop.run import run_from_config

pytestmark = pytest.mark.slow
TESTS_DIR = Path(__file__).resolve().parent
PROMPTS = ["Say hi.", "Name a color.", "Count to three.", "What is 2+2?", "Name a fruit.", "Greet me.",
           "Say yes.", "Name an animal.", "Spell cat.", "Say no.", "Name a day.", "Say thanks."]


def prefer_longer(prompt: str, a: str, b: str) -> float:
    """A cheap deterministic judge for tests: P(a beats b) grows with a's extra length."""
    return 1.0 / (1.0 + math.exp(-(len(a) - len(b)) / 4.0))


def record_hook(context, tag: str) -> dict:
    """An evaluation hook for tests: reports what the loop hands to hooks."""
    return {"tag": tag, "iteration": context.iteration, "repo": context.model_repo, "revision": context.model_revision,
            "has_weights": (Path(context.model_path) / "model.safetensors").is_file()}


def _recipe(tmp_path: Path, model_dir: Path, name: str, endpoint: str) -> Path:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": p}) + "\n" for p in PROMPTS))
    recipe = {
        "run_name": name,
        "model": str(model_dir),
        "prompts": {"path": str(prompts), "column": "text"},
        "iterations": 2,
        "sampling": {"num_samples": 3, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6, "batch_size": 8},
        "judge": {"type": "callable", "callable": f"{Path(__file__).resolve()}:prefer_longer"},
        "training": {"loss": "sppo", "eta": 10.0, "learning_rate": 1e-3, "optim": "adamw_torch",
                     "per_device_train_batch_size": 4, "max_length": 64, "warmup_ratio": 0.0},
        "publish": {"org": "sppo-user", "endpoint": endpoint},
        "evaluation": {"compare_prompts": 2,
                       "hooks": [{"name": f"{Path(__file__).resolve()}:record_hook", "args": {"tag": "x"}}]},
        "output_dir": str(tmp_path / name),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _env(local_hub) -> dict:
    return dict(os.environ, HF_TOKEN=local_hub.token)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_model_dir, local_hub):
    """An uninterrupted 2-iteration run, in process."""
    tmp = tmp_path_factory.mktemp("run-ref")
    config = load_recipe(_recipe(tmp, tiny_model_dir, "tiny-ref", local_hub.url))
    manifest = run_from_config(config)
    return config, manifest


def _tree(api, repo_id: str, commit: str, repo_type: str = "model") -> dict[str, str]:
    """{path: blob/LFS oid} of a commit, minus files that legitimately differ between two runs."""
    files = api.list_repo_tree(repo_id, revision=commit, repo_type=repo_type, recursive=True)
    # run-specific text: timings (log_history, manifests), the run's own paths (training_args), cards naming repos
    skip = ("manifest.json", "README.md", "sppo/artifact.json", "run_manifest.json", "log_history.json",
            "training_args.bin")
    return {f.path: (f.lfs.sha256 if getattr(f, "lfs", None) else f.blob_id) for f in files
            if hasattr(f, "blob_id") and not f.path.endswith(skip)}


def test_two_iterations_publish_and_chain_through_the_hub(reference_run, local_hub):
    config, manifest = reference_run
    api = local_hub.api
    for t in (1, 2):
        for stage in ("generate", "judge", "data", "publish_data", "train", "publish_model", "compare", "evaluate"):
            assert manifest.stage(t, stage) is not None, (t, stage)
        model = manifest.stage(t, "publish_model")["artifacts"]
        assert model["repo_id"] == f"sppo-user/tiny-ref-iter{t}"
        files = {f.path for f in api.list_repo_tree(model["repo_id"], revision=model["commit"], recursive=True)}
        assert {"config.json", "model.safetensors", "sppo/manifest.json"} <= files
        published = json.loads(Path(api.hf_hub_download(model["repo_id"], "sppo/manifest.json", revision=model["commit"])).read_text())
        assert published["iterations"][str(t)]["train"]["artifacts"]["seed"] == manifest.stage(t, "train")["artifacts"]["seed"]
        data = manifest.stage(t, "publish_data")["artifacts"]
        from datasets import load_dataset

        pairs = load_dataset(data["repo_id"], "pairs", split="train", revision=data["commit"])
        assert len(pairs) == 5 and {"chosen_probs", "chosen_probs_win", "chosen_probs_lose"} <= set(pairs.column_names)
        assert all(w >= l for w, l in zip(pairs["chosen_probs_win"], pairs["chosen_probs_lose"]))
    # pi_1 was read back from its Hub commit for iteration 2: generation and the reference both used it
    commit1 = manifest.stage(1, "publish_model")["artifacts"]["commit"]
    assert commit1 in manifest.stage(2, "generate")["artifacts"]["policy"]
    assert manifest.stage(2, "train")["artifacts"]["reference"] == manifest.stage(2, "generate")["artifacts"]["policy"]
    assert manifest.data["finished"]
    hook = manifest.stage(2, "evaluate")["artifacts"]["results"][f"{Path(__file__).resolve()}:record_hook"]
    assert hook == {"tag": "x", "iteration": 2, "repo": "sppo-user/tiny-ref-iter2", "has_weights": True,
                    "revision": manifest.stage(2, "publish_model")["artifacts"]["commit"]}
    for t in (1, 2):
        cmp = manifest.stage(t, "compare")["artifacts"]
        assert 0.0 <= cmp["win_rate_vs_base"] <= 1.0 and 0.0 <= cmp["win_rate_vs_previous"] <= 1.0


def test_resume_of_a_finished_run_recomputes_nothing(reference_run):
    config, manifest = reference_run
    before = json.loads(manifest.path.read_text())
    again = run_from_config(config, resume=True)
    after = json.loads(again.path.read_text())
    assert after["iterations"] == before["iterations"]  # same timings too: nothing ran again


def _wait_for(predicate, proc, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"run exited early (rc={proc.returncode}): {out[-3000:]}")
        time.sleep(0.02)
    pytest.fail("timed out waiting for the run to reach the second iteration")


def test_kill_during_second_iteration_then_resume_gives_same_artifacts(reference_run, tmp_path, tiny_model_dir, local_hub):
    ref_config, ref = reference_run
    recipe = _recipe(tmp_path, tiny_model_dir, "tiny-kill", local_hub.url)
    manifest_path = tmp_path / "tiny-kill" / "manifest.json"
    cmd = [sys.executable, "-m", "sppo_hub", "run", str(recipe)]

    def in_second_iteration() -> bool:
        try:
            return "generate" in json.loads(manifest_path.read_text())["iterations"].get("2", {})
        except (FileNotFoundError, json.JSONDecodeError):
            return False

    proc = subprocess.Popen(cmd, env=_env(local_hub), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(in_second_iteration, proc, timeout=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = json.loads(manifest_path.read_text())
    assert not killed["finished"] and "publish_model" not in killed["iterations"]["2"]

    done = subprocess.run(cmd + ["--resume"], env=_env(local_hub), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "finished earlier, reused" in done.stdout
    resumed = json.loads(manifest_path.read_text())
    assert resumed["finished"]
    # nothing finished before the kill ran again
    for t, stages in killed["iterations"].items():
        for name, entry in stages.items():
            assert resumed["iterations"][t][name] == entry, (t, name)
    # same seeds => same data and same weights as the uninterrupted run
    api = local_hub.api
    for t in ("1", "2"):
        for name in ("generate", "judge", "data"):
            assert resumed["iterations"][t][name]["artifacts"]["sha"] == ref.data["iterations"][t][name]["artifacts"]["sha"]
        ours, theirs = (m["iterations"][t]["publish_model"]["artifacts"] for m in (resumed, ref.data))
        assert _tree(api, ours["repo_id"], ours["commit"]) == _tree(api, theirs["repo_id"], theirs["commit"])
        ours, theirs = (m["iterations"][t]["publish_data"]["artifacts"] for m in (resumed, ref.data))
        assert _tree(api, ours["repo_id"], ours["commit"], "dataset") == _tree(api, theirs["repo_id"], theirs["commit"], "dataset")
    # the Hub holds exactly one commit per published stage (none repeated on resume)
    commits = api.list_repo_commits("sppo-user/tiny-kill-iter2")
    assert sum("iteration 2" in c.title for c in commits) == 1


def _cli(args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "sppo_hub", "run", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_cli_rejects_bad_input_before_any_work(tmp_path, tiny_model_dir, local_hub):
    recipe = _recipe(tmp_path, tiny_model_dir, "tiny-bad", local_hub.url)
    env = _env(local_hub)
    cases = [
        (["iteratons=3"], "'iterations'"),
        (["iterations=0"], "iterations"),
        (["sampling.num_samples=1"], "sampling.num_samples"),
        (["prompts.column=instruction"], "column 'instruction'"),
    ]
    for overrides, expected in cases:
        out = _cli([str(recipe), *overrides], env)
        assert out.returncode == 2 and expected in out.stderr, (overrides, out.stderr)
    bad_token = dict(env, HF_TOKEN="hf_wrong")
    out = _cli([str(recipe)], bad_token)
    assert out.returncode == 2 and "refused the token" in out.stderr and "hf_wrong" not in out.stderr + out.stdout
    assert not (tmp_path / "tiny-bad" / "manifest.json").exists()  # nothing started
