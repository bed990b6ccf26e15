"""Multi-process runs on CPU (gloo), launched as a user launches them: `accelerate launch` with the recipes in
recipes/accelerate/ and `torchrun`. One process generates, judges and publishes; every process trains on its
share of each global batch; one local Hub; kill -9 of either process, then --resume.

Each multi-process run is compared with 1-process runs of the same recipe and the same global batch of 4:
- the user's view, per-device batch 4 on 1 process: generated, judged and published data identical;
- the arithmetic twin, per-device batch 2 x 2 accumulation steps on 1 process: the same micro-batches as the
  2 ranks' (2 pairs each), their gradients averaged by the Trainer instead of by DDP. Adding two gradients is
  commutative and halving is exact in floating point, so DDP must give these weights BIT FOR BIT, on any CPU
  (measured: max |dw| = 0 on Intel Xeon / AMX, Dec 2026, with Adam and with SGD). On CPU the FSDP recipe trains
  as DDP (accelerate shards only on accelerators): the run says so and the test checks the engine it recorded.
- ZeRO-3 reduces flattened, partitioned buckets and clips on partial norms: another float order, which Adam's
  normalised steps amplify on parameters with near-cancelling gradients. Its bound comes from a noise model
  measured on the machine running the test: N_t = the largest distance, at iteration t, among 1-process runs
  that only regroup the same global batch (4 x 1, 2 x 2, 1 x 4 micro-batches); ZeRO-3 must stay within 3 N_t
  of the 2 x 2 twin. Measured on an Intel Xeon (AMX), seeds 0-4 x 2 iterations: ZeRO-3's distance was
  0.11-1.11 N_t, while N_t itself ranged over 0.05%-1.06% of the update (a fixed fraction of the update is the
  wrong model: the 1% bound this replaces failed there at 1.15%; it had been tuned on an AMD EPYC). A real difference is far outside: a repeated pair in the
  last batch moves the weights by ~58% of the update, gradients summed instead of averaged by 100% under SGD.
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
           "Name a tree.", "Add 1 and 1.", "Name a bird.", "Say maybe.", "Name a sport.", "Spell dog."]
HELDOUT = 4  # the last compare prompts of the pool: 16 train (8 per iteration), 4 held out
# Files whose text names run-specific commits (cards, the artifact record) or timings; the data and weights do not.
RUN_SPECIFIC = ("README.md", "artifact.json", "manifest.json", "run_manifest.json", "log_history.json",
                "training_args.bin", "model.safetensors")


def prefer_longer(prompt: str, a: str, b: str) -> float:
    """A cheap deterministic judge: P(a beats b) grows with a's extra length. SPPO_TEST_JUDGE_DELAY (seconds per
    pair) slows it, so that a test can kill a rank in the middle of its judging."""
    time.sleep(float(os.environ.get("SPPO_TEST_JUDGE_DELAY", "0")))
    return 1.0 / (1.0 + math.exp(-(len(a) - len(b)) / 4.0))


def _recipe(tmp: Path, model_dir: Path, name: str, per_device: int, publish: bool = True, accumulation: int = 1,
            optim: str = "adamw_torch", learning_rate: float = 1e-3, prompts: list[str] = PROMPTS,
            drop_last: bool = True, heldout: int = HELDOUT) -> Path:
    path = tmp / f"{name}-prompts.jsonl"
    path.write_text("".join(json.dumps({"text": p}) + "\n" for p in prompts))
    recipe = {
        "run_name": RUN_NAME, "model": str(model_dir), "iterations": 2,
        "prompts": {"path": str(path), "column": "text"},
        # Chunks of 2 prompts: each rank generates and judges 2 of an iteration's 4 chunks (8 prompts).
        "sampling": {"num_samples": 3, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6, "batch_size": 8,
                     "chunk_size": 2},
        "judge": {"type": "callable", "callable": f"{Path(__file__).resolve()}:prefer_longer", "batch_size": 2},
        # 8 pairs per iteration, 4 per global batch, 2 epochs: 4 optimizer steps. drop_last: an incomplete last
        # batch would be handled differently by 1 and 2 processes (test_the_last_incomplete_batch_is_explicit).
        "training": {"loss": "sppo", "eta": 10.0, "learning_rate": learning_rate, "optim": optim,
                     "num_train_epochs": 2, "per_device_train_batch_size": per_device,
                     "gradient_accumulation_steps": accumulation, "max_length": 64, "warmup_ratio": 0.0,
                     "args": {"dataloader_drop_last": drop_last}},
        "publish": {"enabled": publish, "org": "sppo-user"},
        "evaluation": {"compare_prompts": heldout, "compare_samples": 1},  # held-out answers: split too
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


def _distance(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in b)


def _assert_same_data(ours: Path, reference: Path) -> None:
    a, b = _manifest(ours)["iterations"], _manifest(reference)["iterations"]
    for t in ("1", "2"):
        for stage in ("generate", "judge", "data"):
            assert a[t][stage]["artifacts"]["sha"] == b[t][stage]["artifacts"]["sha"], (t, stage)
        assert a[t]["train"]["artifacts"]["global_batch_size"] == b[t]["train"]["artifacts"]["global_batch_size"] == 4


def _assert_shares(run_dir: Path, engine: str, pairs_per_rank: list[int]) -> None:
    """The engine that wrapped the model, and the pairs each rank trained on, as the run recorded them."""
    for t in ("1", "2"):
        shares = _manifest(run_dir)["iterations"][t]["train"]["artifacts"]["shares"]
        assert shares["engine"] == engine, (t, shares)
        assert shares["pairs_per_rank"] == pairs_per_rank, (t, shares)


def _assert_split(run_dir: Path, prompts: int = 8) -> None:
    """Generate and judge split across both ranks: each wrote half of every iteration's chunk files (and, for
    generation, sampled half of the responses: 3 per prompt, their tokens counted)."""
    for t in ("1", "2"):
        for stage in ("generate", "judge"):
            work = _manifest(run_dir)["iterations"][t][stage]["artifacts"]["work"]
            assert [(w["shard"], w["chunks"], w["items"]) for w in work] == \
                [("0/2", prompts // 4, prompts // 2), ("1/2", prompts // 4, prompts // 2)], (t, stage, work)
            if stage == "generate":
                assert all(w["responses"] == 3 * w["items"] and w["tokens"] > 0 for w in work), work
    for t, stage in (("0", "baseline"), ("1", "compare"), ("2", "compare")):  # the held-out answers
        work = _manifest(run_dir)["iterations"][t][stage]["artifacts"]["work"]
        assert [(w["shard"], w["items"]) for w in work] == [("0/2", HELDOUT // 2), ("1/2", HELDOUT // 2)], (t, work)


def _assert_same_training(ours: Path, runs: dict[str, Path], model_dir: Path, exact: bool) -> None:
    """Data identical to the 1-process run; weights bit-equal to the 2 x 2 twin (`exact`) or within 3 N_t of it
    (module docstring). `runs`: the 1-process runs by grouping ("4x1", "2x2", "1x4")."""
    from safetensors.torch import load_file

    _assert_same_data(ours, runs["4x1"])
    base = load_file(str(model_dir / "model.safetensors"))
    for t in (1, 2):
        mine, twin = _weights(ours, t), _weights(runs["2x2"], t)
        assert set(mine) == set(twin)
        update = _distance(twin, base)
        assert update > 1e-4, "training moved nothing: the comparison would be empty"
        diff = _distance(mine, twin)
        if exact:
            assert diff == 0, f"iteration {t}: max weight difference {diff:.3g} from the 2 x 2 twin (update {update:.3g})"
            continue
        regrouped = [_weights(runs[g], t) for g in ("4x1", "2x2", "1x4")]
        noise = max(_distance(x, y) for i, x in enumerate(regrouped) for y in regrouped[i + 1:])
        print(f"iteration {t}: {diff:.3g} from the 2 x 2 twin; regrouping noise N = {noise:.3g}; update {update:.3g}")
        assert diff <= 3 * noise, f"iteration {t}: max weight difference {diff:.3g} > 3 N = {3 * noise:.3g}"


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


@pytest.fixture(scope="module")
def regrouped(one_process, tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """1-process runs of the same global batch of 4 as 4 x 1, 2 x 2 and 1 x 4 micro-batches (no publishing)."""
    tmp = tmp_path_factory.mktemp("dp-regrouped")
    runs = {"4x1": one_process / "run"}
    for per_device, steps in ((2, 2), (1, 4)):
        name = f"{per_device}x{steps}"
        recipe = _recipe(tmp, tiny_model_dir, name, per_device, publish=False, accumulation=steps)
        _run([sys.executable, *_cli(recipe)], _env(tmp / "hub"), tmp)
        runs[name] = tmp / name
    for name, run_dir in runs.items():
        _assert_shares(run_dir, "single-process", [16])  # 8 pairs x 2 epochs, all on the one process
    return runs


def test_accelerate_ddp_recipe_trains_data_parallel_like_one_process(one_process, regrouped, tmp_path,
                                                                    tiny_model_dir):
    recipe = _recipe(tmp_path, tiny_model_dir, "run", 2)
    proc = _run(_accelerate("ddp.yaml", recipe, "--local-hub"), _env(tmp_path / "hub"), tmp_path)
    out = proc.stdout
    assert out.count("local Hub: ") == 1, out  # one Hub, started by the main process
    assert out.count(f"SPPO run {RUN_NAME}: 2 iteration(s)") == 1, out  # one summary
    train = _manifest(tmp_path / "run")["iterations"]["1"]["train"]["artifacts"]
    assert train["processes"] == 2
    _assert_split(tmp_path / "run")
    _assert_shares(tmp_path / "run", "ddp", [8, 8])  # each rank half of the 8 pairs x 2 epochs
    _assert_same_training(tmp_path / "run", regrouped, tiny_model_dir, exact=True)
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


def test_torchrun_kill_either_process_then_resume(one_process, regrouped, tmp_path, tiny_model_dir):
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
    _assert_shares(run_dir, "ddp", [8, 8])
    _assert_same_training(run_dir, regrouped, tiny_model_dir, exact=True)
    _assert_same_published(tmp_path / "hub", one_process / "hub")  # nothing published twice


def test_accelerate_fsdp_recipe_on_cpu_trains_as_ddp_and_says_so(regrouped, tmp_path, tiny_model_dir):
    # The recipe as shipped (FSDP2). accelerate 1.x engages FSDP only on accelerators (state.py: FSDP is chosen
    # among the MULTI_GPU / XPU / ... types, never MULTI_CPU), so on CPU the launch trains as DDP over gloo. The
    # run must say so and record the engine it really used, not pass for FSDP; the weights are then DDP's, bit for
    # bit. FSDP's sharding itself can only run where there is an accelerator (CI has none).
    recipe = _recipe(tmp_path, tiny_model_dir, "run", 2, publish=False)
    proc = _run(_accelerate("fsdp.yaml", recipe), _env(tmp_path / "hub"), tmp_path)
    assert "accelerate shards models only on accelerators" in " ".join(proc.stdout.split())
    _assert_shares(tmp_path / "run", "ddp", [8, 8])
    _assert_same_training(tmp_path / "run", regrouped, tiny_model_dir, exact=True)


def test_accelerate_deepspeed_zero3_recipe_matches_one_process(regrouped, tmp_path, tiny_model_dir):
    # DeepSpeed's CPU accelerator (DS_ACCELERATOR=cpu) falls back to gloo without oneCCL; the Trainer's torch AdamW
    # runs on the ZeRO-3 partitions, and the 16-bit gather at save time writes the full model.
    pytest.importorskip("deepspeed", reason="DeepSpeed is installed by `make install` (see the Makefile)")
    recipe = _recipe(tmp_path, tiny_model_dir, "run", 2, publish=False)
    _run(_accelerate("deepspeed_zero3.yaml", recipe), _env(tmp_path / "hub", DS_ACCELERATOR="cpu"), tmp_path)
    _assert_shares(tmp_path / "run", "deepspeed-zero3", [8, 8])
    _assert_same_training(tmp_path / "run", regrouped, tiny_model_dir, exact=False)


def test_torchrun_averages_gradients_across_ranks_under_sgd(tmp_path, tiny_model_dir):
    # Adam's normalised step hides a gradient scale: gradients summed over ranks instead of averaged would train
    # (almost) the same weights. Plain SGD moves them twice as far. Same data, 2 processes vs the 1-process twin.
    lr = 0.5
    runs = {}
    for name, per_device, steps, launch in (("sgd-4x1", 4, 1, "one"), ("sgd-2x2", 2, 2, "one"), ("sgd-2proc", 2, 1, "two")):
        recipe = _recipe(tmp_path, tiny_model_dir, name, per_device, publish=False, accumulation=steps, optim="sgd",
                         learning_rate=lr)
        _run(_torchrun(recipe) if launch == "two" else [sys.executable, *_cli(recipe)], _env(tmp_path / "hub"),
             tmp_path)
        runs[name] = tmp_path / name
    _assert_shares(runs["sgd-2proc"], "ddp", [8, 8])
    _assert_same_data(runs["sgd-2proc"], runs["sgd-4x1"])
    from safetensors.torch import load_file

    base = load_file(str(tiny_model_dir / "model.safetensors"))
    ours, twin, ref = (_weights(runs[n], 1) for n in ("sgd-2proc", "sgd-2x2", "sgd-4x1"))
    assert _distance(ours, twin) == 0  # bit for bit, as with Adam
    # And the scale itself, against the plain 1-process run: the norm of the update, not its max, to read the
    # factor (1.0 averaged, ~2.0 summed); the regrouping changes it only in float rounding.
    norm = lambda w: sum(((w[k] - base[k]).double() ** 2).sum().item() for k in base) ** 0.5  # noqa: E731
    ratio = norm(ours) / norm(ref)
    assert abs(ratio - 1.0) < 1e-3, f"update norm ratio {ratio:.4f} vs 1 process (2.0 would mean gradients summed)"


def test_accelerate_cpu_flag_with_several_processes_is_refused(tmp_path, tiny_model_dir):
    # `accelerate launch --cpu --num_processes 2` starts ONE process; training alone would pass for data-parallel.
    recipe = _recipe(tmp_path, tiny_model_dir, "run", 2, publish=False)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", *_cli(recipe)]
    proc = subprocess.run(cmd, env=_env(tmp_path / "hub"), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "starts one process, not 2" in proc.stderr and "torchrun --nproc_per_node 2" in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_last_incomplete_batch_is_explicit(tmp_path, tiny_model_dir):
    # 14 prompts: 7 pairs per iteration, global batch 4, remainder 3. Kept (the Trainer's default), 1 process trains
    # a short last batch and 2 processes fill it with a pair repeated from the epoch's start (accelerate's
    # even_batches): different training, so the run says so and records it. Dropped (dataloader_drop_last), both
    # train on the same 4 pairs per epoch. SGD, whose regrouping noise is float rounding (~1e-5 of the update).
    from safetensors.torch import load_file

    prompts = PROMPTS[:14]  # all trained on (heldout=0)
    runs, out = {}, {}
    for drop in (False, True):
        for procs in (1, 2):
            name = f"{'drop' if drop else 'keep'}-{procs}proc"
            recipe = _recipe(tmp_path, tiny_model_dir, name, 4 // procs, publish=False, optim="sgd", learning_rate=0.5,
                             prompts=prompts, drop_last=drop, heldout=0)
            cmd = _torchrun(recipe) if procs == 2 else [sys.executable, *_cli(recipe)]
            out[name] = " ".join(_run(cmd, _env(tmp_path / "hub"), tmp_path).stdout.split())  # unwrap the console
            runs[name] = tmp_path / name
    for name, run_dir in runs.items():
        for t in ("1", "2"):
            assert _manifest(run_dir)["iterations"][t]["data"]["artifacts"]["rows"]["pairs"] == 7, name
    last = {name: _manifest(d)["iterations"]["1"]["train"]["artifacts"]["last_batch"] for name, d in runs.items()}
    assert last["keep-1proc"]["handling"] == "short" and last["keep-1proc"]["remainder"] == 3
    assert last["keep-2proc"]["handling"] == "repeated" and last["keep-2proc"]["repeated_per_epoch"] == 1
    assert last["drop-1proc"]["handling"] == last["drop-2proc"]["handling"] == "dropped"
    assert "repeats 1 pair(s)" in out["keep-2proc"] and "dataloader_drop_last: true" in out["keep-2proc"]
    assert "repeats" not in out["keep-1proc"]
    _assert_shares(runs["keep-1proc"], "single-process", [14])  # 7 pairs x 2 epochs
    _assert_shares(runs["keep-2proc"], "ddp", [8, 8])  # 8 slots x 2 epochs: one pair twice per epoch
    _assert_shares(runs["drop-1proc"], "single-process", [8])
    _assert_shares(runs["drop-2proc"], "ddp", [4, 4])

    base = load_file(str(tiny_model_dir / "model.safetensors"))
    for t in (1, 2):
        update = _distance(_weights(runs["drop-1proc"], t), base)
        dropped = _distance(_weights(runs["drop-2proc"], t), _weights(runs["drop-1proc"], t))
        kept = _distance(_weights(runs["keep-2proc"], t), _weights(runs["keep-1proc"], t))
        print(f"iteration {t}: update {update:.3g}; 2 vs 1 process, dropped {dropped:.3g}, kept {kept:.3g}")
        assert dropped <= 1e-3 * update, f"iteration {t}: dropped remainder differs by {dropped:.3g} (update {update:.3g})"
        assert kept > 1e-2 * update, f"iteration {t}: a repeated pair should change training ({kept:.3g})"


def test_torchrun_kill_rank1_mid_judge_then_resume(one_process, tmp_path, tiny_model_dir):
    # Rank 1 is killed (-9) after writing the first of its 2 judge chunks of iteration 1 and before the second (a
    # judge slowed to 0.1 s per pair: ~1.2 s per chunk). The same launch with --resume continues: every chunk file
    # written before the kill, by either rank, is reused as it is; the data equal the 1-process run's.
    recipe = _recipe(tmp_path, tiny_model_dir, "run", 2, publish=False)
    run_dir, env = tmp_path / "run", _env(tmp_path / "hub", SPPO_TEST_JUDGE_DELAY="0.1")
    rank1_judged = run_dir / "iter1" / "judge-chunks" / "chunks" / "shard-00001-of-00002"

    def mid_judge(its):  # rank 1 finished one judge chunk and works on its other
        return "generate" in its.get("1", {}) and rank1_judged.is_dir() and len(list(rank1_judged.glob("chunk-*"))) == 1

    _kill_rank_when(_torchrun(recipe), env, tmp_path, run_dir, 1, mid_judge)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.glob("iter1/*-chunks/chunks/*/chunk-*")}
    assert len([p for p in before if "judge-chunks" in str(p) and "shard-00001" in str(p)]) == 1, sorted(before)
    assert len([p for p in before if "generate-chunks" in str(p)]) == 4  # both ranks' generation was finished
    proc = _run(_torchrun(recipe, "--resume"), dict(env, SPPO_TEST_JUDGE_DELAY="0"), tmp_path)
    assert "finished earlier, reused" in proc.stdout  # iteration 1's generate
    for path, (mtime, data) in before.items():
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == data, f"{path} was recomputed"
    _assert_split(run_dir)
    _assert_same_data(run_dir, one_process / "run")
