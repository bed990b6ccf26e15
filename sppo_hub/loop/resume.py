"""Which recipe changes a resumed run can take: only those whose stages have not run yet.

A run that failed at the train stage (say, a bad `training.optim`) must be fixable: `--resume` with the
corrected recipe keeps every finished stage and runs the rest with the new settings. A change that a
finished stage already used (new `sampling.temperature` after iteration 1 generated) is refused, naming
the stages it would invalidate and the ways out (restore the value, or start over in a new folder).
"""

from __future__ import annotations

from pathlib import Path

from .manifest import MANIFEST_NAME, RunManifest, config_differences
from .recipe import save_recipe

# Recipe key prefix -> the stages whose results depend on it (iteration 0 holds prompts/base_model/baseline).
EVERY_STAGE = ("prompts", "base_model", "baseline", "generate", "judge", "data", "publish_data", "train", "compare",
               "publish_model", "evaluate")
DEPENDS = {
    "model.": EVERY_STAGE,
    "prompts.": EVERY_STAGE,
    "seed": EVERY_STAGE,
    "sampling.": ("baseline", "generate", "compare"),
    "generation_backend": ("baseline", "generate", "compare"),
    "generation_kwargs.": ("baseline", "generate", "compare"),
    "judge.": ("judge", "compare"),
    "data.": ("data",),
    "training.": ("train",),
    "publish.retry_max_wait_s": (),  # how long a flaky Hub is waited for changes no artifact
    "publish.": ("publish_data", "publish_model"),
    "run_name": ("publish_data", "publish_model"),
    "evaluation.compare_prompts": ("prompts", "baseline", "compare"),
    "evaluation.compare_samples": ("baseline", "compare"),
    "evaluation.hooks": ("evaluate",),
}


def _depends(key: str, old: dict, new: dict) -> tuple[str, ...]:
    if key == "iterations":  # more/fewer iterations re-split the prompts only when each iteration has its own chunk
        split = new.get("prompts", {}).get("split_across_iterations", True)
        return ("prompts",) if split else ()
    for prefix, stages in DEPENDS.items():
        if key == prefix.rstrip(".") or key.startswith(prefix):
            return stages
    return EVERY_STAGE


def finished_stages(manifest: RunManifest, stages: tuple[str, ...]) -> list[str]:
    """`iteration t: stage` labels of the finished stages among `stages`."""
    out = []
    for it in manifest.iterations():
        for name in manifest.data["iterations"][str(it)]:
            if name in stages:
                out.append(f"{name}" if it == 0 else f"iteration {it} {name}")
    return out


def check_resume_changes(manifest: RunManifest, new: dict, run_dir: str | Path) -> list[str]:
    """The changed keys a resume may take; raises ValueError naming the finished stages a change would invalidate."""
    old = manifest.data["config"]
    changed = config_differences(old, new)
    blocked = []
    for key in changed:
        hit = finished_stages(manifest, _depends(key, old, new))
        if hit:
            blocked.append(f"{key} (already used by: {', '.join(hit[:4])}{', ...' if len(hit) > 4 else ''})")
    if blocked:
        raise ValueError(
            f"--resume: these settings changed since the run in {run_dir} started, but finished stages used the old "
            f"values: {'; '.join(blocked)}. Restore them to resume, or start over: remove {run_dir} "
            "(or set output_dir=<new folder>)."
        )
    return changed


def accept_resume_changes(manifest: RunManifest, new: dict, run_dir: str | Path) -> list[str]:
    """Check, then record the new config in the manifest (the old one's changed keys are kept in its history)."""
    changed = check_resume_changes(manifest, new, run_dir)
    if changed:
        history = manifest.data.setdefault("config_changes", [])
        history.append({key: _get(manifest.data["config"], key) for key in changed})
        manifest.data["config"] = new
        manifest.save()
    return changed


def _get(data: dict, key: str):
    for part in key.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def check_run_folder(config, resume: bool) -> RunManifest | None:
    """Before any work: a plain run into a folder holding a run, or a resume without one, fails with a way out."""
    run_dir = config.run_dir
    path = run_dir / MANIFEST_NAME
    if resume:
        if not path.exists():
            raise ValueError(f"--resume: {run_dir} holds no run (no {MANIFEST_NAME}); drop --resume to start one there.")
        manifest = RunManifest.load(run_dir)
        check_resume_changes(manifest, config.to_dict(), run_dir)
        return manifest
    if path.exists():
        manifest = RunManifest.load(run_dir)
        state = "a finished run" if manifest.data.get("finished") else "an unfinished run"
        raise ValueError(
            f"output_dir {str(run_dir)!r} already holds {state}. Continue it with --resume (recipe settings of stages "
            f"that have not run yet may change), or start over: remove the folder (rm -r {run_dir}) or set "
            "output_dir=<new folder>."
        )
    return None


def open_run_manifest(config, resume: bool) -> RunManifest:
    """A new run's manifest (refusing to overwrite one), or, with `resume`, the existing one if the recipe matches."""
    run_dir = config.run_dir
    data = config.to_dict()
    check_run_folder(config, resume)  # a plain rerun into a run's folder, or --resume without one: a way out
    if resume:
        manifest = RunManifest.load(run_dir)
        if accept_resume_changes(manifest, data, run_dir):  # only settings of stages that have not run yet
            save_recipe(config, run_dir / "recipe.yaml")
        return manifest
    run_dir.mkdir(parents=True, exist_ok=True)
    save_recipe(config, run_dir / "recipe.yaml")
    return RunManifest.create(run_dir, config.run_name, data)
