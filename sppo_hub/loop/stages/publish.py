"""Stages `publish_data` and `publish_model`: iteration t's datasets and pi_t committed to the Hub with cards.

Hub commits are atomic and found again by their commit message, so a resumed run never publishes twice.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..manifest import atomic_write_text
from .context import RunContext
from .dedupe import link_folder_to_hub, local_hub_dir
from .train import trainer_kwargs


def publish_data(ctx: RunContext, t: int, timer, data: dict) -> dict:
    from ...core.data import load_iteration_datasets

    ds = load_iteration_datasets(data["path"])
    model, revision = ctx.policy_ref(t - 1)
    s = ctx.config.sampling
    info = dict(run_name=ctx.config.run_name, iteration=t, model=model, model_revision=revision,
                prompt_set=ctx.config.prompts.path, num_samples=s.num_samples,
                sampling=dict(temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens,
                              seed=ctx.sampling(t).seed),
                judge=ctx.artifacts(t, "judge")["judge"], probability_rule=ctx.config.data.rule)
    publisher = ctx.publisher()
    ref = publisher.publish_iteration_data(t, ds["table"], ds["pairs"], ds["triplets"], info)
    _add_to_collection(ctx, publisher, ref)
    return {"repo_id": ref.repo_id, "commit": ref.commit_sha, "tag": ref.tag, "url": ref.url}


def publish_model(ctx: RunContext, t: int, timer, published_data: dict) -> dict:
    """Commit pi_t's checkpoint with the run manifest as of now (everything up to its training)."""
    train = ctx.artifacts(t, "train")
    folder = Path(train["path"])
    atomic_write_text(folder / "manifest.json", ctx.manifest.to_json())
    lineage = [ctx.policy_ref(i)[0] for i in range(t)]
    wins = [(i, ctx.artifacts(i, "compare").get("win_rate_vs_base")) for i in range(1, t + 1)]
    info = dict(run_name=ctx.config.run_name, iteration=t, base_model=lineage[-1],
                datasets=[published_data["repo_id"]] if published_data.get("repo_id") else [], lineage=lineage,
                hyperparameters={k: v for k, v in trainer_kwargs(ctx.config, Path(".")).items() if k != "output_dir"},
                loss_history=train.get("loss_history", []),
                win_rates_by_iteration=[(i, w) for i, w in wins if w is not None],
                accuracy_by_iteration=[(i, a) for i in range(t + 1)
                                       if (a := ctx.artifacts(i, "baseline" if i == 0 else "compare").get("accuracy"))
                                       is not None],
                eval_results=heldout_accuracy_results(ctx, t))
    publisher = ctx.publisher()
    ref = publisher.publish_checkpoint(t, folder, info)
    hub_dir = local_hub_dir(ctx)
    if hub_dir is not None:  # the run folder's weights become hard links to the published objects (one copy on disk)
        link_folder_to_hub(folder, hub_dir)
    _add_to_collection(ctx, publisher, ref)
    return {"repo_id": ref.repo_id, "commit": ref.commit_sha, "tag": ref.tag, "url": ref.url}


def _add_to_collection(ctx: RunContext, publisher, ref) -> None:
    try:
        publisher.add_to_collection(ref)
    except Exception as err:  # collections are a nicety: a Hub without them must not fail the run
        ctx.console.print(f"  [yellow]collection not updated: {type(err).__name__}[/yellow]")


def heldout_accuracy_results(ctx: RunContext, t: int) -> list[dict]:
    """pi_t's held-out accuracy under a verifiable judge, as a card EvalResult (none for other judges); the
    metric name carries its 95% interval and pi_0's accuracy."""
    cmp, base = ctx.artifacts(t, "compare"), ctx.artifacts(0, "baseline")
    acc, base_acc = cmp.get("accuracy"), base.get("accuracy")
    if acc is None:
        return []
    judge = ctx.artifacts(t, "judge").get("judge", ctx.config.judge.type)
    notes = [judge]
    if cmp.get("accuracy_ci"):
        notes.append("95% CI {:.4g}-{:.4g}".format(*cmp["accuracy_ci"]))
    if base_acc is not None:
        notes.append(f"pi_0: {base_acc:.4g}")
    samples = cmp.get("samples_per_prompt", 1)
    return [dict(task_type="text-generation", dataset_type="heldout-prompts", dataset_name=(
                 f"{len(ctx.prompt_plan['heldout'])} held-out prompts x {samples} samples of {ctx.config.prompts.path}"),
                 metric_type="accuracy", metric_value=acc, metric_name=f"accuracy ({'; '.join(notes)})")]


def publish_final_manifest(ctx: RunContext) -> None:
    """Commit the finished run manifest to the last iteration's model repo (a no-op when already there)."""
    last = ctx.artifacts(ctx.config.iterations, "publish_model")
    if not last:
        return
    api = ctx.publisher().api
    repo_id = last["repo_id"]
    data = json.loads(ctx.manifest.to_json())
    data.pop("wall_seconds_last_session", None)
    text = json.dumps(data, indent=2) + "\n"
    from ...hub.publish import BOOKKEEPING_DIR

    path_in_repo = f"{BOOKKEEPING_DIR}/run_manifest.json"
    retry = ctx.hub_retry()

    def current() -> str | None:
        from huggingface_hub.errors import EntryNotFoundError

        try:
            return Path(retry.call(f"download {path_in_repo} of {repo_id}", api.hf_hub_download, repo_id,
                                   path_in_repo)).read_text()
        except EntryNotFoundError:
            return None

    if current() != text:  # a retry after a lost reply finds the manifest there and commits nothing twice
        retry.call(f"upload {path_in_repo} to {repo_id}", api.upload_file, path_or_fileobj=text.encode(),
                   path_in_repo=path_in_repo, repo_id=repo_id,
                   commit_message=f"SPPO run {ctx.config.run_name}: final run manifest",
                   recover=lambda: current() == text or None)
