"""Open LLM Leaderboard v2 tasks (or any lm-eval task list) through lm-eval's `simple_evaluate`, HF backend."""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_TASKS = ("leaderboard",)  # lm-eval's Open LLM Leaderboard v2 group


def run_leaderboard(model: str, out_dir: str | os.PathLike, tasks: list[str] | tuple[str, ...] = DEFAULT_TASKS,
                    include_path: str | None = None, limit: int | float | None = None, batch_size: int | str = 1,
                    device: str | None = None, num_fewshot: int | None = None,
                    apply_chat_template: bool = False, dtype: str = "auto") -> dict:
    """Run lm-eval on `model` (local folder or Hub id); write results.json and return {task: {metric: value}}.

    `include_path`: a folder of custom task YAMLs (e.g. a task on local JSON files for offline runs).
    """
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    if not tasks:
        raise ValueError("tasks: give at least one lm-eval task or group name (default: leaderboard)")
    if include_path is not None and not Path(include_path).is_dir():
        raise FileNotFoundError(f"include_path: {include_path} is not a folder of lm-eval task YAMLs")
    if device is None:  # lm-eval's HF backend would default to cuda
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise ValueError(f"tasks: unknown lm-eval task(s) {unknown}; check the names or pass --include-path")
    results = simple_evaluate(model="hf", model_args={"pretrained": str(model), "dtype": dtype}, tasks=list(tasks),
                              limit=limit, batch_size=batch_size, device=device, num_fewshot=num_fewshot,
                              apply_chat_template=apply_chat_template, task_manager=manager, log_samples=False)
    skip = ("alias", "sample_len")
    scores = {task: {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k not in skip}
              for task, metrics in results["results"].items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"model": str(model), "tasks": list(tasks), "results": scores,
               "versions": {k: str(v) for k, v in results.get("versions", {}).items()},
               "n_samples": results.get("n-samples", {})}
    tmp = out / "leaderboard_results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, out / "leaderboard_results.json")
    return scores
