"""The iteration's datasets, built from judged responses with `sppo_hub.core.preference`.

Three `datasets.Dataset`s (columns fixed by docs/DESIGN.md):

- table: `prompt_id`, `prompt`, `responses` (K), `prob_matrix` (K x K P_ij), `win_rates` (K),
  `raw_table` (the judge's K x K output, kept for audit and re-computation under another rule);
- pairs: TRL's conversational preference format (`prompt` as a user turn, `chosen` / `rejected`
  as assistant turns) plus the SPPO paper's probability columns, with the same meaning as in
  uclaml/SPPO's generated data: `chosen_probs` = P(chosen > rejected), `chosen_probs_win` =
  P(chosen > pi_t) (its win rate), `chosen_probs_lose` = P(rejected > pi_t). Chosen is the
  highest win rate, rejected the lowest (ties: `preference.select_pair`);
- triplets: one row per response, `prompt` (user turn), `response` (assistant turn), `win_rate`,
  for the "all responses" SPPO variant.

Empty responses are kept and judged like any other (see `sppo_hub.core.preference`); a missing
(None) response is an error. `save_iteration_datasets` writes Parquet files to a temporary
directory and renames it into place, so a crash never leaves a half-written directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, List, Value

from . import preference

MESSAGES = List({"content": Value("string"), "role": Value("string")})
TABLE_FEATURES = Features(
    {
        "prompt_id": Value("int64"),
        "prompt": Value("string"),
        "responses": List(Value("string")),
        "prob_matrix": List(List(Value("float64"))),
        "win_rates": List(Value("float64")),
        "raw_table": List(List(Value("float64"))),
    }
)
PAIRS_FEATURES = Features(
    {
        "prompt": MESSAGES,
        "chosen": MESSAGES,
        "rejected": MESSAGES,
        "chosen_probs": Value("float64"),
        "chosen_probs_win": Value("float64"),
        "chosen_probs_lose": Value("float64"),
    }
)
TRIPLETS_FEATURES = Features({"prompt": MESSAGES, "response": MESSAGES, "win_rate": Value("float64")})

KIND_COLUMNS = ("output_kind", "table_kind", "kind")  # where a judged dataset may record its kind
DATASET_NAMES = ("table", "pairs", "triplets")
INFO_FILE = "data_info.json"
JUDGED_FILE = "judged.parquet"  # what `sppo-hub judge --out DIR` writes (sppo_hub.judges.stage)


def _require_columns(ds: Dataset, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"{what}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"it has {ds.column_names}. Build it with the matching sppo_hub step."
        )


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def build_table_dataset(
    prompts: Sequence[str],
    responses: Sequence[Sequence[str]],
    tables: Sequence,
    kind: str = "logits",
    rule: str = "pairwise",
    include_diagonal: bool = True,
    prompt_ids: Sequence[int] | None = None,
) -> Dataset:
    """The full table dataset: each prompt's responses, raw table, P matrix and win rates."""
    n = len(prompts)
    if len(responses) != n:
        raise ValueError(f"responses: got {len(responses)} response lists for {n} prompts; pass one per prompt")
    if len(tables) != n:
        raise ValueError(f"tables: got {len(tables)} tables for {n} prompts; pass one per prompt")
    if prompt_ids is None:
        prompt_ids = list(range(n))
    elif len(prompt_ids) != n:
        raise ValueError(f"prompt_ids: got {len(prompt_ids)} ids for {n} prompts")
    elif len(set(prompt_ids)) != n:
        raise ValueError("prompt_ids: ids must be unique (one row per prompt)")
    for i, (prompt, cands, table) in enumerate(zip(prompts, responses, tables)):
        if not isinstance(prompt, str):
            raise ValueError(f"prompt (prompt {i}): expected a string, got {type(prompt).__name__}")
        if isinstance(cands, str):
            raise ValueError(f"responses (prompt {i}): expected a list of strings, got one string")
        for k, cand in enumerate(cands):
            if not isinstance(cand, str):
                raise ValueError(
                    f"responses (prompt {i}, response {k}): expected a string, got {type(cand).__name__}; "
                    "re-generate the missing response"
                )
        shape = np.shape(table)
        if shape != (len(cands), len(cands)):
            raise ValueError(
                f"raw_table (prompt {i}): shape {shape} does not match its {len(cands)} responses; "
                "the judge must return a K x K table per prompt"
            )
    Ps, wrs, _ = preference.preferences_from_tables(tables, kind, rule, include_diagonal, list(prompt_ids))
    return Dataset.from_dict(
        {
            "prompt_id": [int(p) for p in prompt_ids],
            "prompt": list(prompts),
            "responses": [list(c) for c in responses],
            "prob_matrix": [P.tolist() for P in Ps],
            "win_rates": [w.tolist() for w in wrs],
            "raw_table": [np.asarray(t, dtype=np.float64).tolist() for t in tables],
        },
        features=TABLE_FEATURES,
    )


def build_pairs_dataset(table_ds: Dataset, drop_ties: bool = True) -> Dataset:
    """Best vs worst response per prompt, in TRL's conversational preference format.

    `drop_ties=True` (default) skips prompts whose K win rates all tie: their "best vs worst" pair is an arbitrary
    (0, 1) that a DPO/IPO/sppo_hard loss would learn as a real preference. `drop_ties=False` keeps them, as the
    paper's data does; only the soft SPPO losses read them right (P_w = P_l = 1/2, a zero log-ratio target).
    """
    _require_columns(table_ds, ("prompt", "responses", "prob_matrix", "win_rates"), "table dataset")
    rows = {name: [] for name in PAIRS_FEATURES}
    for i, ex in enumerate(table_ds):
        wr = ex["win_rates"]
        if drop_ties and preference.is_tie(wr):
            continue
        try:
            chosen, rejected = preference.select_pair(wr)
        except ValueError as err:
            raise ValueError(f"win_rates (row {i}): {err}") from None
        P = ex["prob_matrix"]
        rows["prompt"].append(_user(ex["prompt"]))
        rows["chosen"].append(_assistant(ex["responses"][chosen]))
        rows["rejected"].append(_assistant(ex["responses"][rejected]))
        rows["chosen_probs"].append(float(P[chosen][rejected]))
        rows["chosen_probs_win"].append(float(wr[chosen]))
        rows["chosen_probs_lose"].append(float(wr[rejected]))
    return Dataset.from_dict(rows, features=PAIRS_FEATURES)


def build_triplets_dataset(table_ds: Dataset) -> Dataset:
    """All K responses of every prompt as (prompt, response, win_rate) rows."""
    _require_columns(table_ds, ("prompt", "responses", "win_rates"), "table dataset")
    rows = {name: [] for name in TRIPLETS_FEATURES}
    for i, ex in enumerate(table_ds):
        if len(ex["responses"]) != len(ex["win_rates"]):
            raise ValueError(f"win_rates (row {i}): {len(ex['win_rates'])} values for {len(ex['responses'])} responses")
        for response, wr in zip(ex["responses"], ex["win_rates"]):
            rows["prompt"].append(_user(ex["prompt"]))
            rows["response"].append(_assistant(response))
            rows["win_rate"].append(float(wr))
    return Dataset.from_dict(rows, features=TRIPLETS_FEATURES)


def judged_kind(judged: Dataset, output_kind: str | None = None) -> str:
    """The table kind of a judged dataset: `output_kind` if given, else its kind column."""
    if output_kind is not None:
        return output_kind
    for col in KIND_COLUMNS:
        if col in judged.column_names:
            kinds = set(judged[col])
            if len(kinds) != 1:
                raise ValueError(f"{col}: judged rows mix table kinds {sorted(kinds)}; judge them with one judge")
            return kinds.pop()
    raise ValueError(
        "output_kind: the judged dataset has no 'output_kind' column; pass output_kind='logits' or 'probs' "
        "(what the judge returned)"
    )


def build_iteration_datasets(
    judged: Dataset,
    output_kind: str | None = None,
    rule: str = "pairwise",
    include_diagonal: bool = True,
    triplets: bool = False,
    drop_ties: bool = True,
) -> dict[str, Dataset]:
    """Judged rows (`prompt_id`, `prompt`, `responses`, `raw_table`) -> {"table", "pairs"[, "triplets"]}.

    The table keeps every prompt; "pairs" leaves out prompts whose K responses all tie unless `drop_ties=False`
    (see `build_pairs_dataset`).
    """
    _require_columns(judged, ("prompt", "responses", "raw_table"), "judged dataset")
    kind = judged_kind(judged, output_kind)
    ids = judged["prompt_id"] if "prompt_id" in judged.column_names else None
    table = build_table_dataset(
        list(judged["prompt"]), list(judged["responses"]), list(judged["raw_table"]), kind, rule, include_diagonal,
        None if ids is None else list(ids),
    )
    out = {"table": table, "pairs": build_pairs_dataset(table, drop_ties=drop_ties)}
    if triplets:
        out["triplets"] = build_triplets_dataset(table)
    return out


def save_iteration_datasets(out_dir: str | Path, datasets: dict[str, Dataset], info: dict | None = None) -> Path:
    """Write each dataset as `<name>.parquet` (+ `data_info.json`) into `out_dir`, atomically.

    Everything goes to a temporary sibling directory first, which then replaces `out_dir`.
    """
    unknown = set(datasets) - set(DATASET_NAMES)
    if unknown:
        raise ValueError(f"datasets: unknown name(s) {sorted(unknown)}; use {DATASET_NAMES}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name, ds in datasets.items():
            ds.to_parquet(str(tmp / f"{name}.parquet"))
        meta = {"rows": {name: len(ds) for name, ds in datasets.items()}, **(info or {})}
        (tmp / INFO_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            # swap: old -> backup, new -> out_dir, then drop the backup
            backup = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.rmdir(backup)
            os.replace(out_dir, backup)
            os.replace(tmp, out_dir)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def load_iteration_datasets(directory: str | Path) -> dict[str, Dataset]:
    """Load what `save_iteration_datasets` wrote: {"table", "pairs"[, "triplets"]}."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"data directory {directory} does not exist; build it with `sppo-hub build-data`")
    features = {"table": TABLE_FEATURES, "pairs": PAIRS_FEATURES, "triplets": TRIPLETS_FEATURES}
    out = {}
    for name in DATASET_NAMES:
        path = directory / f"{name}.parquet"
        if path.exists():
            out[name] = Dataset.from_parquet(str(path), features=features[name])
    if "table" not in out and "pairs" not in out:
        raise FileNotFoundError(f"{directory}: no table.parquet or pairs.parquet found")
    return out


def load_judged_dataset(path: str | Path) -> Dataset:
    """A judged dataset from `save_to_disk` output, a Parquet/JSON(L) file, or a folder of Parquet files."""
    from datasets import load_from_disk

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--judged: {path} does not exist; write it with `sppo-hub judge`")
    if path.is_dir():
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            ds = load_from_disk(str(path))
            if not isinstance(ds, Dataset):  # a DatasetDict: take its only split
                if len(ds) != 1:
                    raise ValueError(f"--judged: {path} holds splits {list(ds)}; pass one split's folder")
                ds = next(iter(ds.values()))
            return ds
        if (path / JUDGED_FILE).is_file():  # a `sppo-hub judge --out` folder (shard chunks live below it)
            return Dataset.from_parquet(str(path / JUDGED_FILE))
        files = sorted(str(f) for f in path.glob("*.parquet"))
        if not files:
            raise ValueError(
                f"--judged: {path} has no {JUDGED_FILE}, saved dataset or .parquet files; "
                "finish (or merge) the judge stage first"
            )
        return Dataset.from_parquet(files)
    if path.suffix == ".parquet":
        return Dataset.from_parquet(str(path))
    if path.suffix in (".json", ".jsonl"):
        return Dataset.from_json(str(path))
    raise ValueError(f"--judged: unsupported file type {path.suffix!r}; use a saved dataset folder, .parquet or .jsonl")


def load_data_info(directory: str | Path) -> dict:
    """The `data_info.json` written beside the datasets (rule, kind, row counts)."""
    path = Path(directory) / INFO_FILE
    return json.loads(path.read_text()) if path.exists() else {}
