"""The SPPO loop (Algorithm 1 of Wu et al., 2024), resumable, publishing every iteration.

`algorithm_1` is the loop; each stage is a function in `sppo_hub.loop.stages` (one module per stage) and
`sppo_hub.loop.stages.context.run_stage` decides which process runs it and skips what the run manifest
already records. Local artifacts are written to a temp path and renamed, and Hub commits are atomic
and found again by their commit message, so a run killed at any point resumes without recomputing or
republishing anything finished.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import RunConfig
from .hooks import resolve_eval_hook
from .manifest import RunManifest, print_summary
from .ranks import check_launch, open_manifest, process_info, share_from_main
from .resume import open_run_manifest
from .stages import compare, data, equilibrium, evaluate, generate, judge, publish, setup, train
from .stages.context import RunContext, hub_retry
from .stages.dedupe import local_hub_data_dir
from .stages.setup import load_run_prompts

STAGES = ("generate", "judge", "data", "publish_data", "train", "publish_model", "compare", "evaluate")


def algorithm_1(ctx: RunContext) -> None:
    """Algorithm 1 (SPPO): pi_0 = base model; for t = 1..T:

    1. sample K responses y_1..y_K ~ pi_{t-1}(.|x) for each prompt x of iteration t;
    2. judge every ordered pair: P(y_i > y_j | x);
    3. win rates P(y_k > pi_{t-1} | x) = mean_j P(y_k > y_j | x) -> datasets (published);
    4. pi_t = argmin_pi sum (log(pi(y|x) / pi_{t-1}(y|x)) - eta (P(y > pi_{t-1} | x) - 1/2))^2 (published);
    5. compare pi_t with pi_0 and pi_{t-1} on held-out prompts, run the evaluation hooks.
    """
    cfg, stage = ctx.config, ctx.stage
    stage(0, "prompts", setup.prompts)
    stage(0, "base_model", setup.base_model)
    compare_heldout = bool(ctx.prompt_plan["heldout"])
    if compare_heldout:
        stage(0, "baseline", compare.baseline, all_ranks=True)  # each rank samples its share
    for t in range(1, cfg.iterations + 1):
        generated = stage(t, "generate", generate.generate, all_ranks=True)  # each rank its chunks
        judged = stage(t, "judge", judge.judge, generated, all_ranks=True)
        datasets = stage(t, "data", data.build_data, judged)
        published_data = stage(t, "publish_data", publish.publish_data, datasets) if cfg.publish.enabled else {}
        stage(t, "train", train.train, datasets, all_ranks=True)
        if compare_heldout:  # before publishing, so that pi_t's model card reports its own held-out results
            stage(t, "compare", compare.compare, all_ranks=True)
        if cfg.publish.enabled:
            stage(t, "publish_model", publish.publish_model, published_data)
        equilibrium.record_mixture(ctx, t)  # <run>/mixture.json: the averaged policy pi_1..pi_t (main process)
        if cfg.evaluation.hooks:
            stage(t, "evaluate", evaluate.evaluate, published_data)


class SPPORun:
    """Runs (or resumes) one SPPO run described by a `RunConfig`."""

    def __init__(self, config: RunConfig, resume: bool = False, console=None, endpoint: str | None = None,
                 namespace: str | None = None, prompts: list[str] | None = None):
        from rich.console import Console

        process = process_info()
        manifest = open_manifest(process, config.run_dir, lambda: open_run_manifest(config, resume))
        self.ctx = RunContext(config=config, manifest=manifest, console=console or Console(),
                              endpoint=endpoint or config.publish.endpoint, namespace=config.publish.org or namespace,
                              process=process, preloaded_prompts=prompts)

    config = property(lambda self: self.ctx.config)
    manifest = property(lambda self: self.ctx.manifest)
    console = property(lambda self: self.ctx.console)
    endpoint = property(lambda self: self.ctx.endpoint)
    namespace = property(lambda self: self.ctx.namespace)
    run_dir = property(lambda self: self.ctx.run_dir)
    is_main = property(lambda self: self.ctx.process.is_main)

    def policy_path(self, t: int) -> str:
        return self.ctx.policy_path(t)

    def run(self) -> RunManifest:
        """Run every unfinished stage of every iteration, then (main process) print the summary table."""
        started = time.perf_counter()
        ctx = self.ctx
        algorithm_1(ctx)
        if not ctx.process.is_main:
            return ctx.manifest
        ctx.manifest.data["wall_seconds_last_session"] = round(time.perf_counter() - started, 3)
        ctx.manifest.mark_finished()
        if ctx.config.publish.enabled:
            publish.publish_final_manifest(ctx)
        print_summary(ctx.manifest, ctx.config.iterations, ctx.console, ctx.endpoint)
        return ctx.manifest


# ----------------------------------------------------------------------------- entry point


def check_endpoint(endpoint: str | None, retry=None) -> str:
    """Ask the endpoint who the token belongs to; a refused or missing token fails here, before any work.

    `retry` (a `HubRetry`): a busy Hub (429, 5xx) is waited for; one that cannot be reached (a wrong URL) fails
    at once."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    from ..hub.retry import TRANSIENT_STATUS, HubUnavailableError

    where = endpoint or "https://huggingface.co"
    whoami = HfApi(endpoint=endpoint).whoami
    try:
        try:
            info = whoami()
        except HfHubHTTPError as err:
            if retry is None or getattr(err.response, "status_code", None) not in TRANSIENT_STATUS:
                raise
            info = retry.call(f"whoami at {where}", whoami)
    except HubUnavailableError:
        raise
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


def _start_local_hub(hub_port: int, console, run_dir: Path):
    """The built-in local Hub, with a fresh token, and this process's Hub calls switched to it."""
    import secrets

    from ..hub import start_local_hub, use_endpoint

    # In the run folder (as `run --help` says): a resume from any working directory finds the run's repos.
    data_dir = local_hub_data_dir(run_dir)
    token = "hf_local_" + secrets.token_hex(16)
    hub = start_local_hub(data_dir, port=hub_port, token=token)
    console.print(f"local Hub: [link={hub.url}]{hub.url}[/link] (data in {data_dir}/)")
    return hub, data_dir, token, use_endpoint(hub.url, token=token)


def run_from_config(config: RunConfig, resume: bool = False, hub_port: int = 0, console=None,
                    prompts: list[str] | None = None) -> RunManifest:
    """Validate, start the local Hub if asked, check the endpoint, then run (or resume) the loop.

    `prompts`: the run's prompt pool when the caller already read it (`preflight`'s plan), not read again.

    Under a multi-process launch the main process alone does the checks and starts the one local Hub;
    the others learn its URL and token from it (`ranks.share_from_main`) and print nothing.
    """
    from rich.console import Console

    process = process_info()
    check_launch(process)
    console = console or Console(quiet=not process.is_main)
    config.validate()
    hub = switch = None
    endpoint, token, user = config.publish.endpoint, None, None
    try:
        if process.is_main:
            if config.publish.enabled and config.publish.local_hub:
                hub, data_dir, token, switch = _start_local_hub(hub_port, console, config.run_dir)
                endpoint = hub.url
            elif config.publish.enabled and endpoint:
                from ..hub import use_endpoint

                switch = use_endpoint(endpoint)
            user = check_endpoint(endpoint, hub_retry(config.publish.retry_max_wait_s, console)) \
                if config.publish.enabled else None
            for hook in config.evaluation.hooks:  # a misspelt hook fails now, not after the first iteration
                resolve_eval_hook(hook["name"])
            # The prompt source and column are checked before anything is written or loaded.
            done = resume and (config.run_dir / "manifest.json").exists() and \
                RunManifest.load(config.run_dir).stage(0, "prompts") is not None
            prompts = None if done else prompts if prompts is not None else load_run_prompts(config)
        # If the main process failed above, the launcher stops the others while they wait here.
        endpoint, token, user = share_from_main(process, (endpoint, token, user))
        if not process.is_main and config.publish.enabled and endpoint:
            from ..hub import use_endpoint

            switch = use_endpoint(endpoint, token=token)  # token: the local Hub's; else None (HF_TOKEN as usual)
        runner = SPPORun(config, resume=resume, console=console, endpoint=endpoint, namespace=user, prompts=prompts)
        manifest = runner.run()
        if runner.is_main:
            from ..io.console import NextSteps

            last = lambda name: (manifest.stage(config.iterations, name) or {}).get("artifacts", {})  # noqa: E731
            NextSteps(run_dir=str(config.run_dir), model_repo=last("publish_model").get("repo_id"),
                      data_repo=last("publish_data").get("repo_id"), hub_url=hub.url if hub is not None else None,
                      hub_data_dir=str(data_dir) if hub is not None else None,
                      judge_label=last("judge").get("judge")).print(console)
        return manifest
    finally:
        if switch is not None:
            switch.restore()
        if hub is not None:
            hub.stop()
