"""Evaluation config, the per-iteration hook, and results in the Hub (card model-index + raw files).

`evaluate_iteration(model, EvalConfig(...), publish=...)` is what `sppo_hub.loop.run` calls after each
iteration; it runs the configured benchmarks and, when publishing, writes the card's model-index
(huggingface_hub's `EvalResult` / `ModelCard`) and the raw outputs and judgments in one commit.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCHMARKS = ("alpaca_eval", "mt_bench", "leaderboard")
RESULTS_DIR_IN_REPO = "eval_results"


@dataclass
class EvalConfig:
    """Which benchmarks to run after an iteration, at what size, with which judge (the `eval:` recipe section)."""

    benchmarks: list[str] = field(default_factory=lambda: ["alpaca_eval"],
                                  metadata={"help": f"Benchmarks to run, any of {', '.join(BENCHMARKS)}."})
    out_dir: str = field(default="eval", metadata={"help": "Folder for outputs, annotations and metrics."})
    max_new_tokens: int = field(default=2048, metadata={"help": "Max new tokens per generated answer."})
    backend: str = field(default="transformers", metadata={"help": "Generation backend: transformers or vllm."})
    # AlpacaEval 2.0
    alpaca_reference_file: str | None = field(
        default=None, metadata={"help": "Eval set file (instructions + gpt4_1106_preview outputs); None: Hub."})
    alpaca_max_instances: int | None = field(
        default=None, metadata={"help": "First N instructions only (a quick estimate); None: all 805."})
    alpaca_annotator: str = field(default="weighted_alpaca_eval_gpt4_turbo",
                                  metadata={"help": "alpaca_eval annotator config name (official: the default)."})
    judge_base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible judge endpoint URL."})
    judge_model: str | None = field(default=None, metadata={"help": "Judge model name at the endpoint."})
    local_judge: dict | None = field(
        default=None, metadata={"help": "JudgeConfig fields of one of our judges for a free local AlpacaEval "
                                        "estimate (labelled as not the official annotator)."})
    length_controlled: bool = field(default=True, metadata={"help": "Try alpaca_eval's LC GLM (needs Hub files)."})
    # MT-Bench
    mt_bench_data_dir: str | None = field(default=None, metadata={"help": "FastChat MT-Bench files; None: download."})
    mt_bench_max_questions: int | None = field(default=None, metadata={"help": "First N questions; None: all 80."})
    mt_bench_local_judge_model: str | None = field(
        default=None, metadata={"help": "Local chat model as MT-Bench judge (instead of an endpoint)."})
    mt_bench_judge_max_new_tokens: int = field(default=512, metadata={"help": "Local judge's max new tokens."})
    # lm-eval
    leaderboard_tasks: list[str] = field(default_factory=lambda: ["leaderboard"],
                                         metadata={"help": "lm-eval tasks or groups (default: Open LLM v2)."})
    leaderboard_include_path: str | None = field(default=None, metadata={"help": "Folder of custom task YAMLs."})
    leaderboard_limit: float | None = field(default=None, metadata={"help": "lm-eval `limit` per task."})

    def __post_init__(self):
        unknown = [b for b in self.benchmarks if b not in BENCHMARKS]
        if unknown:
            raise ValueError(f"eval.benchmarks: unknown {unknown}; choose from {', '.join(BENCHMARKS)}")
        if int(self.max_new_tokens) < 1:
            raise ValueError(f"eval.max_new_tokens: must be >= 1, got {self.max_new_tokens}")


def _alpaca_judge(config: EvalConfig):
    if config.local_judge is None:
        return None
    from ..judges import JudgeConfig, load_judge

    return load_judge(JudgeConfig(**config.local_judge))


def evaluate_iteration(model_repo_or_path: str, eval_config: EvalConfig | dict, publish: bool | str = False,
                       iteration: int | None = None, out_dir: str | os.PathLike | None = None,
                       revision: str | None = None, token: str | None = None) -> dict:
    """Run the configured benchmarks on a model folder or Hub repo id; optionally publish to its card.

    publish: False, True (the model's own Hub repo id), or the repo id to write to.
    Returns {"model", "iteration", "out_dir", benchmark name: metrics, "commit": url or None}.
    """
    config = EvalConfig(**eval_config) if isinstance(eval_config, dict) else eval_config
    out = Path(out_dir or config.out_dir)
    if iteration is not None:
        out = out / f"iter{iteration}"
    name = Path(str(model_repo_or_path)).name if os.path.exists(str(model_repo_or_path)) else str(model_repo_or_path)
    results: dict[str, Any] = {"model": str(model_repo_or_path), "iteration": iteration, "out_dir": str(out)}
    # Judges first: a missing key or bad judge config fails before any generation.
    alpaca_judge = _alpaca_judge(config) if "alpaca_eval" in config.benchmarks else None
    if "alpaca_eval" in config.benchmarks and alpaca_judge is None:
        from .alpaca_eval import check_api_key

        check_api_key(config.judge_base_url)
    if "mt_bench" in config.benchmarks:
        from .mt_bench import endpoint_chat, local_chat

        if config.mt_bench_local_judge_model:
            chat = local_chat(config.mt_bench_local_judge_model, config.mt_bench_judge_max_new_tokens)
            judge_name = f"local:{Path(config.mt_bench_local_judge_model).name}"
        else:
            judge_name = config.judge_model or "gpt-4"
            chat = endpoint_chat(config.judge_base_url, judge_name)
    if "alpaca_eval" in config.benchmarks:
        from ..generation import SamplingConfig
        from .alpaca_eval import run_alpaca_eval

        results["alpaca_eval"] = run_alpaca_eval(
            out / "alpaca_eval", model=str(model_repo_or_path), reference_file=config.alpaca_reference_file,
            judge=alpaca_judge, annotator=config.alpaca_annotator, base_url=config.judge_base_url,
            judge_model=config.judge_model, max_instances=config.alpaca_max_instances, backend=config.backend,
            sampling=SamplingConfig(num_samples=1, temperature=0.0, max_new_tokens=config.max_new_tokens),
            generator_name=name, length_controlled=config.length_controlled)
    if "mt_bench" in config.benchmarks:
        from .mt_bench import run_mt_bench

        results["mt_bench"] = run_mt_bench(out / "mt_bench", model=str(model_repo_or_path),
                                           data_dir=config.mt_bench_data_dir, chat=chat, judge_name=judge_name,
                                           max_questions=config.mt_bench_max_questions,
                                           max_new_tokens=config.max_new_tokens, model_id=name, backend=config.backend)
    if "leaderboard" in config.benchmarks:
        from .leaderboard import run_leaderboard

        results["leaderboard"] = run_leaderboard(str(model_repo_or_path), out / "leaderboard",
                                                 tasks=config.leaderboard_tasks,
                                                 include_path=config.leaderboard_include_path,
                                                 limit=config.leaderboard_limit)
    results["commit"] = None
    if publish:
        repo_id = str(model_repo_or_path) if publish is True else str(publish)
        if publish is True and os.path.exists(repo_id):
            raise ValueError("publish: the model is a local folder; pass publish='<namespace>/<repo>' instead")
        results["commit"] = publish_results(repo_id, results, out, revision=revision, token=token)
    tmp = out / "eval_summary.json.tmp"
    out.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps({**results, "config": asdict(config)}, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, out / "eval_summary.json")
    return results


def eval_results_for(results: dict, source_url: str | None = None) -> list:
    """huggingface_hub `EvalResult`s for the model-index from evaluate_iteration's results.

    `source_url` (where the raw files live) names the source; huggingface_hub needs both or neither.
    """
    from huggingface_hub import EvalResult

    items = []
    src = "sppo-hub eval"

    def result(source_name: str, **kwargs):
        if source_url:
            kwargs.update(source_name=source_name, source_url=source_url)
        return EvalResult(task_type="text-generation", **kwargs)

    if results.get("alpaca_eval"):
        m = results["alpaca_eval"]
        unofficial = "" if m.get("official_annotator", False) else " (LOCAL ESTIMATE, not the official annotator)"
        for key, label in (("win_rate", "win rate"), ("length_controlled_winrate", "length-controlled win rate")):
            if m.get(key) is not None:
                items.append(result(src + unofficial, dataset_type="tatsu-lab/alpaca_eval",
                                    dataset_name="AlpacaEval 2.0", metric_type=key, metric_value=round(m[key], 4),
                                    metric_name=f"{label} vs gpt4_1106_preview{unofficial}"))
    if results.get("mt_bench") and results["mt_bench"].get("overall") is not None:
        mt = results["mt_bench"]
        items.append(result(src, dataset_type="lmsys/mt-bench", dataset_name="MT-Bench", metric_type="mt_bench_score",
                            metric_value=round(mt["overall"], 4), metric_name=f"MT-Bench score (judge {mt['judge']})"))
    for task, metrics in (results.get("leaderboard") or {}).items():
        for metric, value in metrics.items():
            if "stderr" in metric:
                continue
            items.append(result(f"{src} (lm-eval)", dataset_type=task, dataset_name=task,
                                metric_type=metric.split(",")[0], metric_value=round(float(value), 6),
                                metric_name=metric))
    return items


def _key(r) -> tuple:
    return (r.task_type, r.dataset_type, r.metric_type, r.metric_name)


def publish_results(repo_id: str, results: dict, out_dir: str | os.PathLike, revision: str | None = None,
                    token: str | None = None, api=None) -> str:
    """One commit: the card's model-index updated (same task/dataset/metric replaced) + the raw result files."""
    from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, ModelCardData
    from huggingface_hub.errors import EntryNotFoundError

    api = api or HfApi(token=token)
    try:  # through `api`, so its endpoint and token are the ones used
        card = ModelCard.load(api.hf_hub_download(repo_id, "README.md", revision=revision))
    except EntryNotFoundError:
        card = ModelCard.from_template(ModelCardData())
    folder = RESULTS_DIR_IN_REPO + (f"/iter{results['iteration']}" if results.get("iteration") is not None else "")
    new = eval_results_for(results, source_url=f"{api.endpoint}/{repo_id}/tree/{revision or 'main'}/{folder}")
    kept = [r for r in (card.data.eval_results or []) if _key(r) not in {_key(n) for n in new}]
    card.data.eval_results = kept + new
    card.data.model_name = card.data.model_name or repo_id.split("/")[-1]
    ops = [CommitOperationAdd("README.md", str(card).encode("utf-8"))]
    for path in sorted(Path(out_dir).rglob("*")):
        if path.is_file() and not path.name.endswith(".tmp"):
            ops.append(CommitOperationAdd(f"{folder}/{path.relative_to(out_dir).as_posix()}", str(path)))
    info = api.create_commit(repo_id, ops, commit_message=f"Evaluation results ({folder})", revision=revision)
    return info.commit_url


def plot_run_history(history: list[dict], path: str | os.PathLike) -> Path:
    """AlpacaEval win rate and MT-Bench score by iteration (one PNG for a run's card)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(get):
        pts = [(h["iteration"], get(h)) for h in history if h.get("iteration") is not None and get(h) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, ax1 = plt.subplots(figsize=(6, 4))
    x, y = series(lambda h: (h.get("alpaca_eval") or {}).get("win_rate"))
    ax1.plot(x, y, marker="o", color="tab:blue", label="AlpacaEval 2.0 win rate (%)")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("AlpacaEval win rate (%)", color="tab:blue")
    ax2 = ax1.twinx()
    x, y = series(lambda h: (h.get("mt_bench") or {}).get("overall"))
    ax2.plot(x, y, marker="s", color="tab:orange", label="MT-Bench score")
    ax2.set_ylabel("MT-Bench score (1-10)", color="tab:orange")
    ax1.set_title("Evaluation by SPPO iteration")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path
