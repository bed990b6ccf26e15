"""AlpacaEval 2.0: eval set loading, model outputs, annotation, and alpaca_eval's own metrics.

Annotation goes through the real `alpaca_eval` package (its annotator configs, optionally pointed at an
OpenAI-compatible endpoint), or through one of our pairwise judges for a free local estimate. Local-judge
annotations carry an annotator name starting with `LOCAL-ESTIMATE` and every metrics file says
`official_annotator: false`. Scoring always uses `alpaca_eval.metrics` (win rate, and the
length-controlled GLM when its Hub files can be had).
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import os
import tempfile
from pathlib import Path
from typing import Any

ALPACA_EVAL_REPO = "tatsu-lab/alpaca_eval"
REFERENCE_FILE = "alpaca_eval_gpt4_baseline.json"  # gpt4_1106_preview outputs, in the Hub dataset
DEFAULT_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
LOCAL_ANNOTATOR_PREFIX = "LOCAL-ESTIMATE (not the official AlpacaEval annotator)"
METRIC_KEYS = ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total",
               "discrete_win_rate", "avg_length", "length_controlled_winrate", "lc_standard_error")


def _atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return _atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False))


def read_records(path: str | os.PathLike, what: str) -> list[dict]:
    """A JSON list (alpaca_eval's format) or JSON lines file of dicts."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise ValueError(f"{what}: {path} is neither a JSON list nor JSON lines ({err})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{what}: {path} must hold a list of objects")
    return data


def load_eval_set(path: str | os.PathLike | None = None, max_instances: int | None = None) -> list[dict]:
    """The 805 instructions with gpt4_1106_preview's reference outputs.

    From `path` when given, else from the Hub dataset's file via `hf_hub_download` (alpaca_eval's own
    loader goes through a dataset script that datasets >= 4 rejects).
    """
    if path is None:
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(ALPACA_EVAL_REPO, REFERENCE_FILE, repo_type="dataset")
        except Exception as err:  # noqa: BLE001 - offline, or the Hub is down
            raise FileNotFoundError(f"reference: cannot download {REFERENCE_FILE} from the Hub dataset "
                                    f"{ALPACA_EVAL_REPO} ({type(err).__name__}); pass --reference FILE") from None
    rows = read_records(path, "reference")
    for i, r in enumerate(rows):
        if "instruction" not in r or "output" not in r:
            raise ValueError(f"reference: row {i} of {path} lacks 'instruction'/'output' fields")
    if max_instances is not None:
        rows = rows[: int(max_instances)]
    return rows


def validate_model_outputs(outputs: list[dict], reference: list[dict], allow_empty: bool = False) -> None:
    """Raise a ValueError naming missing, duplicated, unknown or (unless allowed) empty outputs."""
    problems = []
    seen: dict[str, int] = {}
    for i, r in enumerate(outputs):
        if "instruction" not in r or "output" not in r:
            problems.append(f"row {i} lacks 'instruction'/'output'")
            continue
        seen[r["instruction"]] = seen.get(r["instruction"], 0) + 1
        if not allow_empty and not str(r["output"]).strip():
            problems.append(f"row {i} has an empty output (instruction {r['instruction'][:60]!r})")
    dups = [k for k, n in seen.items() if n > 1]
    if dups:
        problems.append(f"{len(dups)} duplicated instruction(s), e.g. {dups[0][:60]!r}")
    wanted = [r["instruction"] for r in reference]
    missing = [k for k in wanted if k not in seen]
    if missing:
        idx = [wanted.index(k) for k in missing[:5]]
        problems.append(f"{len(missing)} instruction(s) of the eval set missing (indices {idx}"
                        f"{'...' if len(missing) > 5 else ''}, first {missing[0][:60]!r})")
    extra = set(seen) - set(wanted)
    if extra:
        problems.append(f"{len(extra)} instruction(s) not in the eval set, e.g. {sorted(extra)[0][:60]!r}")
    if problems:
        raise ValueError("outputs: " + "; ".join(problems) + ". Regenerate the outputs or pass the matching "
                         "--reference file.")


def align_outputs(outputs: list[dict], reference: list[dict], allow_empty: bool = False) -> list[dict]:
    """Model outputs in the reference's order (after validation)."""
    validate_model_outputs(outputs, reference, allow_empty)
    by_instruction = {r["instruction"]: r for r in outputs}
    return [by_instruction[r["instruction"]] for r in reference]


def generate_model_outputs(model: str, reference: list[dict], sampling=None, backend: str = "transformers",
                           generator_name: str | None = None, **backend_kwargs) -> list[dict]:
    """One response per instruction from `model` (its chat template), in model_outputs.json format."""
    from ..generation import SamplingConfig, make_generator

    sampling = sampling or SamplingConfig(num_samples=1, temperature=0.0)
    if int(sampling.num_samples) != 1:
        sampling = SamplingConfig(**{**sampling.__dict__, "num_samples": 1})
    generator = make_generator(str(model), sampling, backend=backend, **backend_kwargs)
    responses = generator.generate([r["instruction"] for r in reference])
    name = generator_name or Path(str(model)).name
    return [{"instruction": r["instruction"], "output": resp[0], "generator": name,
             "dataset": r.get("dataset", "alpaca_eval")} for r, resp in zip(reference, responses)]


def annotate_with_judge(outputs: list[dict], reference: list[dict], judge) -> list[dict]:
    """alpaca_eval-format annotations from one of our `PairwiseJudge`s (a local, unofficial estimate).

    preference = 1 + P(model output beats reference), with both presentation orders averaged
    (alpaca_eval's convention: 1 = output_1 (baseline) wins, 2 = output_2 (model) wins).
    """
    from ..core.preference import pairwise_probabilities

    outputs = align_outputs(outputs, reference, allow_empty=True)
    tables = judge.pairwise_tables([r["instruction"] for r in reference],
                                   [[ref["output"], out["output"]] for ref, out in zip(reference, outputs)])
    name = f"{LOCAL_ANNOTATOR_PREFIX}: {getattr(judge, 'name', type(judge).__name__)}"
    annotations = []
    for index, (ref, out, table) in enumerate(zip(reference, outputs, tables)):
        p = pairwise_probabilities(table, kind=judge.output_kind)
        annotations.append({"index": index,  # position in the eval set: alpaca_eval's LC GLM keys on it
            "instruction": ref["instruction"], "output_1": ref["output"],
            "generator_1": ref.get("generator", "baseline"),
            "output_2": out["output"], "generator_2": out["generator"], "dataset": ref.get("dataset", "alpaca_eval"),
            "annotator": name, "preference": 1.0 + float(p[1, 0]),
        })
    return annotations


def annotator_config(annotator: str = DEFAULT_ANNOTATOR, base_url: str | None = None,
                     judge_model: str | None = None, config_dir: str | os.PathLike = ".") -> str:
    """alpaca_eval's annotator config name, or a copy of it pointed at an OpenAI-compatible endpoint
    (written as `<config_dir>/<annotator>@<model>/configs.yaml`, the layout alpaca_eval loads; no key in it)."""
    if base_url is None and judge_model is None:
        return annotator
    import yaml
    from alpaca_eval import constants

    ae_dir = Path(constants.EVALUATORS_CONFIG_DIR)
    cfg_file = ae_dir / annotator / "configs.yaml"
    if not cfg_file.exists():
        raise ValueError(f"annotator: {annotator!r} is not one of alpaca_eval's annotator configs")
    cfg = dict(yaml.safe_load(cfg_file.read_text())[annotator])
    cfg["prompt_template"] = str(ae_dir / cfg["prompt_template"])
    kwargs = dict(cfg.get("completions_kwargs", {}))
    if judge_model:
        kwargs["model_name"] = judge_model
    if base_url:
        kwargs["openai_api_base"] = base_url
        if not os.environ.get("OPENAI_API_KEY") and not os.environ.get("OPENAI_API_KEYS"):
            kwargs["openai_api_keys"] = ["EMPTY"]  # local OpenAI-compatible servers (vLLM) accept any key
    cfg["completions_kwargs"] = kwargs
    name = f"{annotator}@{(judge_model or kwargs.get('model_name')).replace('/', '_')}"
    target = _atomic_write_text(Path(config_dir) / name / "configs.yaml", yaml.safe_dump({name: cfg}))
    return str(target.parent.resolve())


def check_api_key(base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY") -> None:
    """Fail before any generation when the OpenAI annotator has no key (local endpoints may need none)."""
    if not os.environ.get(api_key_env) and not os.environ.get("OPENAI_API_KEYS"):
        if base_url:
            return  # local endpoints get a placeholder key in annotator_config
        raise ValueError(f"annotator: alpaca_eval's OpenAI annotators need ${api_key_env}; export it, or pass "
                         "--base-url for an OpenAI-compatible endpoint, or --local-judge for a local estimate")


def annotate_with_alpaca_eval(outputs: list[dict], reference: list[dict], annotators_config: str,
                              out_dir: str | os.PathLike) -> list[dict]:
    """Annotations from alpaca_eval's own annotator (alpaca_eval.main.evaluate)."""
    import pandas as pd
    from alpaca_eval.main import evaluate

    outputs = align_outputs(outputs, reference, allow_empty=True)
    _, annotations = evaluate(model_outputs=pd.DataFrame(outputs), reference_outputs=pd.DataFrame(reference),
                              annotators_config=annotators_config, output_path=str(out_dir),
                              is_return_instead_of_print=True, precomputed_leaderboard=None,
                              is_overwrite_leaderboard=True, fn_metric="get_winrate",
                              sort_by="win_rate")  # LC comes from score_annotations
    return annotations.to_dict("records") if hasattr(annotations, "to_dict") else list(annotations)


def check_preferences(annotations: list[dict]) -> None:
    """alpaca_eval's encoding: 1 = reference wins, 2 = model wins, 1.5 or 0 = draw, values in between for
    weighted annotators, null = not annotated. Anything else fails here, naming the row, not deep in pandas."""
    for n, a in enumerate(annotations, 1):
        p = a.get("preference")
        if p is None or (isinstance(p, float) and math.isnan(p)):
            continue
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not (p == 0 or 1 <= p <= 2):
            raise ValueError(f"annotations: row {n} has 'preference': {p!r}; use a number: 1 (reference wins), "
                             "2 (model wins), 1.5 or 0 (draw), a value between 1 and 2, or null")


def score_annotations(annotations: list[dict], length_controlled: bool = True) -> dict:
    """alpaca_eval's metrics for annotations (win_rate... avg_length; LC via its GLM when possible)."""
    import pandas as pd
    from alpaca_eval.metrics import get_winrate

    df = pd.DataFrame(annotations)
    for col in ("preference", "output_2"):
        if col not in df:
            raise ValueError(f"annotations: missing the '{col}' field; pass an alpaca_eval annotations.json")
    check_preferences(annotations)
    metrics = {k: _plain(v) for k, v in get_winrate(df).items()}
    metrics["avg_length"] = int(df["output_2"].astype(str).str.len().mean())
    metrics["length_controlled_winrate"] = None
    metrics["lc_standard_error"] = None
    annotators = sorted(df["annotator"].astype(str).unique()) if "annotator" in df else []
    metrics["annotator"] = annotators[0] if len(annotators) == 1 else annotators
    metrics["official_annotator"] = not any(a.startswith("LOCAL-ESTIMATE") for a in annotators)
    if length_controlled and "index" not in df:
        metrics["length_controlled_note"] = ("length-controlled win rate not computed: the annotations lack the "
                                             "'index' field (position in the 805-instruction eval set)")
    elif length_controlled:
        try:
            from alpaca_eval.metrics.glm_winrate import get_length_controlled_winrate

            lc = get_length_controlled_winrate(df.copy(), save_weights_dir=None, is_warn_extreme_changes=False)
            metrics["length_controlled_winrate"] = _plain(lc["length_controlled_winrate"])
            metrics["lc_standard_error"] = _plain(lc["lc_standard_error"])
        except Exception as err:  # noqa: BLE001 - the GLM needs Hub files; report the rest
            metrics["length_controlled_note"] = (
                f"length-controlled win rate not computed: alpaca_eval's GLM needs df_gamed.csv / "
                f"instruction_difficulty.csv from the Hub dataset {ALPACA_EVAL_REPO} ({type(err).__name__})")
    return metrics


def _plain(v):
    try:
        return v.item()
    except AttributeError:
        return v


def write_leaderboard_row(path: str | os.PathLike, name: str, metrics: dict, mode: str = "community") -> Path:
    """One row in alpaca_eval's leaderboard CSV format."""
    cols = ["win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total", "discrete_win_rate",
            "mode", "avg_length", "length_controlled_winrate", "lc_standard_error"]
    row = {**{c: metrics.get(c) for c in cols}, "mode": mode}
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([""] + cols)
        w.writerow([name] + ["" if row[c] is None else row[c] for c in cols])
    os.replace(tmp, path)
    return path


def run_alpaca_eval(out_dir: str | os.PathLike, model: str | None = None, outputs_file: str | None = None,
                    reference_file: str | None = None, annotations_file: str | None = None, judge=None,
                    annotator: str = DEFAULT_ANNOTATOR, base_url: str | None = None, judge_model: str | None = None,
                    max_instances: int | None = None, sampling=None, backend: str = "transformers",
                    generator_name: str | None = None, length_controlled: bool = True) -> dict:
    """The whole benchmark: outputs (generated or given), annotations, metrics JSON and leaderboard row."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if annotations_file:
        annotations = read_records(annotations_file, "annotations")
    else:
        if judge is None:
            check_api_key(base_url)  # before anything is downloaded or generated
            config = annotator_config(annotator, base_url, judge_model, out / "annotator_configs")
        reference = load_eval_set(reference_file, max_instances)
        if outputs_file:
            outputs = read_records(outputs_file, "outputs")
            if max_instances is not None:
                wanted = {r["instruction"] for r in reference}
                outputs = [r for r in outputs if r.get("instruction") in wanted]
        elif model:
            outputs = generate_model_outputs(model, reference, sampling, backend, generator_name)
        else:
            raise ValueError("model: pass --model to generate outputs, --outputs FILE, or --annotations FILE")
        # A file given by the user must be complete; our own generations may legitimately be empty.
        outputs = align_outputs(outputs, reference, allow_empty=not outputs_file)
        n_empty = sum(not str(r["output"]).strip() for r in outputs)
        write_json(out / "model_outputs.json", outputs)
        if judge is not None:
            annotations = annotate_with_judge(outputs, reference, judge)
        else:
            annotations = annotate_with_alpaca_eval(outputs, reference, config, out / "alpaca_eval")
            positions = {r["instruction"]: i for i, r in enumerate(reference)}
            for a in annotations:
                a.setdefault("index", positions[a["instruction"]])
        write_json(out / "annotations.json", annotations)
    metrics = score_annotations(annotations, length_controlled=length_controlled)
    name = generator_name or str(annotations[0].get("generator_2", "model"))
    metrics["generator"] = name
    if not annotations_file:
        metrics["n_empty_outputs"] = n_empty
    write_json(out / "metrics.json", metrics)
    write_leaderboard_row(out / "leaderboard.csv", name, metrics)
    return metrics
