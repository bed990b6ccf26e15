"""Generate and judge on a local Ray cluster (2 CPUs), as on a real one: the same rows as the local path, chunk
files written by the driver, a resumed stage reusing them, and an actor killed mid-chunk restarted by Ray with
its chunk retried."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="Ray is installed by `make install` (the ray extra)")
PROMPTS = ["Say hi.", "Name a color.", "Count to three.", "What is 2+2?", "Name a fruit.", "Greet me."]
KILL_MARKER = "SPPO_TEST_KILL_MARKER"


def prefer_longer(prompt: str, a: str, b: str) -> float:
    """A cheap deterministic judge. With SPPO_TEST_KILL_MARKER set, the first call anywhere creates that file and
    kills its own process (-9): a Ray worker dying in the middle of a chunk, once."""
    marker = os.environ.get(KILL_MARKER)
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
    return 1.0 / (1.0 + math.exp(-(len(a) - len(b)) / 4.0))


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One local Ray cluster for the module (started as the engine starts it), shut down after."""
    from sppo_hub.io.ray_executor import RayOptions, connect

    connect(RayOptions(enabled=True, workers=2))
    yield tmp_path_factory.mktemp("ray") / "killed"  # where the kill test's marker goes
    ray.shutdown()


def _options(**kw):
    from sppo_hub.io.ray_executor import RayOptions

    return RayOptions(enabled=True, workers=2, **kw)


def test_generate_on_ray_equals_the_local_path(local_ray, tiny_model_dir, tmp_path):
    from sppo_hub.generation import SamplingConfig, generate_responses

    sampling = SamplingConfig(num_samples=3, max_new_tokens=6, temperature=1.0, top_p=1.0, chunk_size=2)
    local = generate_responses(str(tiny_model_dir), PROMPTS, sampling, show_progress=False)
    remote = generate_responses(str(tiny_model_dir), PROMPTS, sampling, out_dir=tmp_path / "gen",
                                show_progress=False, ray=_options())
    assert remote.to_list() == local.to_list()
    chunks = sorted((tmp_path / "gen" / "chunks").glob("*/chunk-*.json"))
    assert len(chunks) == 3  # written by the driver as the actors' results arrived
    # A rerun finds every chunk done: nothing goes to the actors (the model is never loaded again).
    before = {p: p.stat().st_mtime_ns for p in chunks}
    again = generate_responses(str(tiny_model_dir), PROMPTS, sampling, out_dir=tmp_path / "gen",
                               show_progress=False, ray=_options())
    assert again.to_list() == local.to_list() and {p: p.stat().st_mtime_ns for p in chunks} == before


def _judged(tmp_path, name, ray_options=None, extra_env=None):
    from sppo_hub.judges import JudgeConfig
    from sppo_hub.judges.stage import judge_dataset

    rows = [{"prompt": p, "responses": [p, p + " yes", p + " no thanks"]} for p in PROMPTS]
    config = JudgeConfig(type="callable", callable=f"{Path(__file__).resolve()}:prefer_longer")
    return judge_dataset(config, rows, out_dir=tmp_path / name, batch_size=2, show_progress=False, ray=ray_options)


def test_judge_on_ray_equals_the_local_path_and_survives_a_killed_actor(local_ray, tmp_path):
    local = _judged(tmp_path, "local")
    remote = _judged(tmp_path, "remote", _options())
    assert remote.to_list() == local.to_list()
    # An actor process that dies mid-chunk (kill -9 of itself, once): Ray restarts it and retries the chunk.
    marker = local_ray
    survived = _judged(tmp_path, "killed", _options(max_retries=2, env={KILL_MARKER: str(marker)}))
    assert marker.exists(), "no worker was killed: the test proved nothing"
    print(f"faults injected: 1 actor killed (pid {marker.read_text()}) mid-chunk; Ray restarted it and retried")
    assert survived.to_list() == local.to_list()


def test_run_with_ray_stages_equals_the_local_run(local_ray, tiny_model_dir, tmp_path):
    # `sppo-hub run` with `ray: {enabled: true}`: generate and judge go to a Ray cluster (here RAY_ADDRESS points
    # the run at this module's local cluster, as a user points it at theirs); the data equal a local run's.
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": p}) + "\n" for p in PROMPTS))
    shas = {}
    for name, extra in (("local", {}), ("ray", {"ray": {"enabled": True, "workers": 2}})):
        recipe = {"run_name": name, "model": str(tiny_model_dir), "iterations": 1,
                  "prompts": {"path": str(prompts), "column": "text"},
                  "sampling": {"num_samples": 3, "max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0,
                               "chunk_size": 2},
                  "judge": {"type": "callable", "callable": f"{Path(__file__).resolve()}:prefer_longer",
                            "batch_size": 2},
                  "training": {"loss": "sppo", "per_device_train_batch_size": 2, "max_length": 64},
                  "publish": {"enabled": False}, "evaluation": {"compare_prompts": 0},
                  "output_dir": str(tmp_path / name), **extra}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address, OMP_NUM_THREADS="1")
        proc = subprocess.run([sys.executable, "-m", "sppo_hub.cli", "run", str(path)], env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        stages = json.loads((tmp_path / name / "manifest.json").read_text())["iterations"]["1"]
        shas[name] = {s: stages[s]["artifacts"]["sha"] for s in ("generate", "judge", "data")}
        if name == "ray":
            assert stages["generate"]["artifacts"]["engine"] == stages["judge"]["artifacts"]["engine"] == "ray"
    assert shas["ray"] == shas["local"]


def test_cli_generate_and_judge_on_ray(local_ray, tiny_model_dir, tmp_path):
    # `sppo-hub generate --ray` / `sppo-hub judge --ray` against the cluster RAY_ADDRESS names (this module's).
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address, OMP_NUM_THREADS="1")
    common = ["--model", str(tiny_model_dir), "--prompts", str(prompts), "-k", "3", "--max-new-tokens", "6",
              "--temperature", "1.0", "--top-p", "1.0", "--chunk-size", "2"]
    judge = ["--judge", "callable", "--judge-callable", f"{Path(__file__).resolve()}:prefer_longer", "--chunk-size", "2"]
    for where, flags in (("local", []), ("ray", ["--ray", "--ray-workers", "2"])):
        for cmd in (["generate", *common, "--out", str(tmp_path / f"gen-{where}"), *flags],
                    ["judge", "--generated", str(tmp_path / f"gen-{where}"), *judge, "--out",
                     str(tmp_path / f"judge-{where}"), *flags]):
            proc = subprocess.run([sys.executable, "-m", "sppo_hub.cli", *cmd], env=env, capture_output=True,
                                  text=True, timeout=600)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    import pandas as pd

    for stage, name in (("gen", "generated.parquet"), ("judge", "judged.parquet")):
        local, remote = (pd.read_parquet(tmp_path / f"{stage}-{w}" / name) for w in ("local", "ray"))
        assert remote.to_json() == local.to_json(), stage


@pytest.mark.parametrize("flags, message", [
    (["--ray-workers", "3"], "need --ray"),
    (["--ray", "--shard", "0/2"], "--shard and --ray"),
    (["--ray", "--ray-workers", "0"], "--ray-workers 0"),
])
def test_cli_ray_flags_are_checked_before_any_work(tiny_model_dir, tmp_path, flags, message):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Say hi."}) + "\n")
    proc = subprocess.run([sys.executable, "-m", "sppo_hub.cli", "generate", "--model", str(tiny_model_dir),
                           "--prompts", str(prompts), "--out", str(tmp_path / "out"), *flags],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
