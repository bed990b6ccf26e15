"""Multi-process runs on CPU (gloo), launched as a user launches them: `accelerate launch` with the recipes in
recipes/accelerate/ and `torchrun`. One process generates, judges and publishes; every process trains on its
share of each global batch; one local Hub; kill -9 of either process, then --resume.

Each multi-process run is compared with a 1-process run of the same recipe and the same global batch
(per-device batch 4 on 1 process = 2 x 2 on 2 processes). Generated, judged and published data must be
identical; the models equal to float tolerance: within 1% of the training update (max |w_2proc - w_1proc| <=
0.01 * max |w_1proc - w_0|). Why not bit-equal: each process averages the loss over its 2 pairs and DDP /
FSDP / ZeRO average the gradients across processes, while 1 process averages over 4 pairs: the same sum in
another float32 order (~1e-7 relative), which Adam's normalised steps carry into the weights (measured:
~3e-6 after iteration 1 and ~2e-5 after iteration 2, against updates of ~4e-3).
"""

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

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes" / "accelerate"
RUN_NAME = "dp"  # the same repo names in every run's local Hub, so the published files compare one to one
PROMPTS = ["Say hi.", "Name a color.", "Count to three.", "What is 2+2?", "Name a fruit.", "Greet me.", "Say yes.",
           "Name an animal.", "Spell cat.", "Say no.", "Name a day.", "Say thanks.", "Name a city.", "Say bye.",
           "Name a tree.", "Add 1 and 1."]
# Files whose text names run-specific commits (cards, the artifact record) or timings; the data and weights do not.
RUN_SPECIFIC = ("README.md", "artifact.json", "manifest.json", "run_manifest.json", "log_history.json",
                "training_args.bin", "model.safetensors")


def prefer_longer(prompt: str, a: str, b: str) -> float:
    """A cheap deterministic judge: P(a beats b) grows with a's extra length."""
    return 1.0 / (1.0 + math.exp(-(len(a) - len(b)) / 4.0))


def _recipe(tmp: Path, model_dir: Path, name: str, per_device: int, publish: bool = True) -> Path:
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": p}) + "\n" for p in PROMPTS))
    recipe = {
        "run_name": RUN_NAME, "model": str(model_dir), "iterations": 2,
        "prompts": {"path": str(prompts), "column": "text"},
        "sampling": {"num_samples": 3, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6, "batch_size": 8},
        "judge": {"type": "callable", "callable": f"{Path(__file__).resolve()}:prefer_longer"},
        # 8 pairs per iteration, 4 per global batch, 2 epochs: 4 optimizer steps. drop_last: an incomplete last
        # batch would be padded differently by 1 and 2 processes (accelerate repeats samples to even them out).
        "training": {"loss": "sppo", "eta": 10.0, "learning_rate": 1e-3, "optim": "adamw_torch", "num_train_epochs": 2,
                     "per_device_train_batch_size": per_device, "max_length": 64, "warmup_ratio": 0.0,
                     "args": {"dataloader_drop_last": True}},
        "publish": {"enabled": publish, "org": "sppo-user"},
        "evaluation": {"compare_prompts": 0},
        "output_dir": str(tmp / name),
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _env(hub_dir: Path, **extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", SPPO_HUB_LOCAL_DIR=str(hub_dir), TRANSFORMERS_VERBOSITY="error")
    env.pop("HF_TOKEN", None)  # the local Hub's own token travels from the main process to the others
    env.update(extra)
    return env


def _cli(recipe: Path, *flags: str) -> list[str]:
    return ["-m", "sppo_hub.cli", "run", str(recipe), *flags]


def _torchrun(recipe: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *_cli(recipe, *flags)]


def _accelerate(config: str, recipe: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(RECIPES / config),
            "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "0", *_cli(recipe, *flags)]


def _run(cmd: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def _weights(run_dir: Path, t: int) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / f"iter{t}" / "model" / "model.safetensors"))


def _assert_same_training(ours: Path, reference: Path, model_dir: Path) -> None:
    """Same sampled, judged and built data; weights within 1% of the update (see the module docstring)."""
    from safetensors.torch import load_file

    a, b = _manifest(ours)["iterations"], _manifest(reference)["iterations"]
    for t in ("1", "2"):
        for stage in ("generate", "judge", "data"):
            assert a[t][stage]["artifacts"]["sha"] == b[t][stage]["artifacts"]["sha"], (t, stage)
        assert a[t]["train"]["artifacts"]["global_batch_size"] == b[t]["train"]["artifacts"]["global_batch_size"] == 4
    base = load_file(str(model_dir / "model.safetensors"))
    for t in (1, 2):
        mine, ref = _weights(ours, t), _weights(reference, t)
        assert set(mine) == set(ref)
        update = max((ref[k] - base[k]).abs().max().item() for k in ref)
        diff = max((mine[k] - ref[k]).abs().max().item() for k in ref)
        assert update > 1e-4, "training moved nothing: the comparison would be empty"
        assert diff <= 0.01 * update, f"iteration {t}: max weight difference {diff:.3g} vs update {update:.3g}"


def _published(hub_dir: Path) -> dict:
    """{repo: (commit titles, {file: blob or LFS id})} of the run's repos, read back through the local Hub."""
    from huggingface_hub import HfApi

    from sppo_hub.hub.endpoint import use_endpoint
    from sppo_hub.hub.server import start_local_hub

    hub = start_local_hub(hub_dir, port=0, token="hf_local_readback")
    try:
        with use_endpoint(hub.url, token="hf_local_readback"):  # lifts HF_HUB_OFFLINE for the loopback Hub
            return _repos(HfApi(endpoint=hub.url, token="hf_local_readback"))
    finally:
        hub.stop()


def _assert_same_published(hub_dir: Path, reference_hub_dir: Path) -> None:
    ours, ref = _published(hub_dir), _published(reference_hub_dir)
    assert sorted(ours) == sorted(ref)
    for repo in ref:
        assert ours[repo][0] == ref[repo][0], f"{repo}: commits {ours[repo][0]} vs {ref[repo][0]}"
        files_a, files_b = ours[repo][1], ref[repo][1]
        differ = sorted(f for f in set(files_a) | set(files_b) if files_a.get(f) != files_b.get(f))
        assert not differ, f"{repo}: files differ: {[(f, files_a.get(f), files_b.get(f)) for f in differ]}"


def _repos(api) -> dict:
    out = {}
    for t in (1, 2):
        for repo, kind in ((f"sppo-user/{RUN_NAME}-iter{t}", "model"), (f"sppo-user/{RUN_NAME}-iter{t}-data", "dataset")):
            titles = [c.title for c in api.list_repo_commits(repo, repo_type=kind)]
            files = {f.path: (f.lfs.sha256 if getattr(f, "lfs", None) else f.blob_id)
                     for f in api.list_repo_tree(repo, repo_type=kind, recursive=True)
                     if hasattr(f, "blob_id") and not f.path.endswith(RUN_SPECIFIC)}
            out[repo] = (titles, files)
    return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_model_dir):
    """The reference: 1 process, per-device batch 4, published to its own local Hub."""
    tmp = tmp_path_factory.mktemp("dp-one")
    _run([sys.executable, *_cli(_recipe(tmp, tiny_model_dir, "run", 4), "--local-hub")], _env(tmp / "hub"), tmp)
    return tmp


def test_accelerate_ddp_recipe_trains_data_parallel_like_one_process(one_process, tmp_path, tiny_model_dir):
    recipe = _recipe(tmp_path, tiny_model_dir, "run", 2)
    proc = _run(_accelerate("ddp.yaml", recipe, "--local-hub"), _env(tmp_path / "hub"), tmp_path)
    out = proc.stdout
    assert out.count("local Hub: ") == 1, out  # one Hub, started by the main process
    assert out.count(f"SPPO run {RUN_NAME}: 2 iteration(s)") == 1, out  # one summary
    train = _manifest(tmp_path / "run")["iterations"]["1"]["train"]["artifacts"]
    assert train["processes"] == 2
    _assert_same_training(tmp_path / "run", one_process / "run", tiny_model_dir)
    # Published once each (same commits as the 1-process run), the same data files byte for byte.
    _assert_same_published(tmp_path / "hub", one_process / "hub")


def _workers(launcher_pid: int) -> dict[int, int]:
    """{rank: pid} of the launcher's worker processes (read from /proc: their RANK variable)."""
    ranks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == launcher_pid:
            for item in env:
                if item.startswith(b"RANK="):
                    ranks[int(item[5:])] = int(entry.name)
    return ranks


def _kill_rank_when(cmd: list[str], env: dict, cwd: Path, run_dir: Path, rank: int, ready) -> None:
    """Launch, wait until `ready(manifest)`, kill -9 that rank's process; the launcher must then fail."""
    launcher = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 900
        while time.time() < deadline and launcher.poll() is None:
            path = run_dir / "manifest.json"
            if path.exists() and ready(json.loads(path.read_text())["iterations"]):
                break
            time.sleep(0.2)
        assert launcher.poll() is None, f"the run ended before the kill point: {launcher.stdout.read()[-3000:]}"
        workers = _workers(launcher.pid)
        assert set(workers) == {0, 1}, workers
        os.kill(workers[rank], signal.SIGKILL)
        assert launcher.wait(timeout=300) != 0  # torchrun stops the other worker and reports the failure
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_torchrun_kill_either_process_then_resume(one_process, tmp_path, tiny_model_dir):
    recipe = _recipe(tmp_path, tiny_model_dir, "run", 2)
    run_dir, env = tmp_path / "run", _env(tmp_path / "hub")

    def training_1(its):  # rank 1 is in (or entering) iteration 1's training
        return "publish_data" in its.get("1", {}) and "train" not in its["1"]

    def generating_2(its):  # rank 0 is generating iteration 2's responses
        return "publish_model" in its.get("1", {}) and "generate" not in its.get("2", {})

    _kill_rank_when(_torchrun(recipe, "--local-hub"), env, tmp_path, run_dir, 1, training_1)
    _kill_rank_when(_torchrun(recipe, "--local-hub", "--resume"), env, tmp_path, run_dir, 0, generating_2)
    proc = _run(_torchrun(recipe, "--local-hub", "--resume"), env, tmp_path)
    assert "finished earlier, reused" in proc.stdout
    assert _manifest(run_dir)["finished"] is True
    _assert_same_training(run_dir, one_process / "run", tiny_model_dir)
    _assert_same_published(tmp_path / "hub", one_process / "hub")  # nothing published twice


def test_accelerate_fsdp_recipe_matches_one_process(one_process, tmp_path, tiny_model_dir):
    # The recipe as shipped: FSDP2, full state dict gathered for saving, cpu_ram_efficient_loading (rank 0 reads
    # the weights; the trainer loads the reference in full on every rank, see train/precision.py).
    recipe = _recipe(tmp_path, tiny_model_dir, "run", 2, publish=False)
    _run(_accelerate("fsdp.yaml", recipe), _env(tmp_path / "hub"), tmp_path)
    _assert_same_training(tmp_path / "run", one_process / "run", tiny_model_dir)


def test_accelerate_deepspeed_zero3_recipe_matches_one_process(one_process, tmp_path, tiny_model_dir):
    # DeepSpeed's CPU accelerator (DS_ACCELERATOR=cpu) falls back to gloo without oneCCL; the Trainer's torch AdamW
    # runs on the ZeRO-3 partitions, and the 16-bit gather at save time writes the full model.
    pytest.importorskip("deepspeed", reason="DeepSpeed is installed by `make install` (see the Makefile)")
    recipe = _recipe(tmp_path, tiny_model_dir, "run", 2, publish=False)
    _run(_accelerate("deepspeed_zero3.yaml", recipe), _env(tmp_path / "hub", DS_ACCELERATOR="cpu"), tmp_path)
    _assert_same_training(tmp_path / "run", one_process / "run", tiny_model_dir)


def test_accelerate_cpu_flag_with_several_processes_is_refused(tmp_path, tiny_model_dir):
    # `accelerate launch --cpu --num_processes 2` starts ONE process; training alone would pass for data-parallel.
    recipe = _recipe(tmp_path, tiny_model_dir, "run", 2, publish=False)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", *_cli(recipe)]
    proc = subprocess.run(cmd, env=_env(tmp_path / "hub"), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "starts one process, not 2" in proc.stderr and "torchrun --nproc_per_node 2" in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written
