"""Load a list of prompt strings from a file (jsonl/json/parquet/csv/txt) or a Hub dataset.

One loader shared by `sppo-hub generate`, the run loop and the evaluations. Files and Hub datasets
both go through `datasets.load_dataset`; a `.txt` file is one prompt per non-empty line.
"""

from __future__ import annotations

from pathlib import Path

_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
DEFAULT_COLUMNS = ("prompt", "instruction", "question", "text")


def _prompt_from(value, column: str, row: int) -> str:
    """A cell -> prompt string: a string, or the last user turn of a conversation (list of messages)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        users = [m.get("content") for m in value if m.get("role") == "user"]
        if users and isinstance(users[-1], str):
            return users[-1]
    raise ValueError(f"column {column!r}: row {row} is {type(value).__name__}, not a prompt string or a conversation")


def _check_readable(path: Path) -> None:
    """Empty files and broken JSON Lines fail here with the line number (datasets' errors do not give it)."""
    if not path.read_bytes().strip():
        raise ValueError(f"prompts: {path} is empty; write one JSON object per line, e.g. {{\"prompt\": \"...\"}}")
    if path.suffix != ".jsonl":
        return
    import json

    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"prompts: {path} line {number} is not valid JSON ({err.msg}); "
                                     "write one JSON object per line") from None


def load_prompts(source: str | Path, split: str = "train", column: str | None = None,
                 config_name: str | None = None) -> list[str]:
    """Prompt strings from `source`: a local file or a Hub dataset id (with `split`, `column`).

    `column=None` picks the first of prompt/instruction/question/text that exists.
    """
    path = Path(source)
    if path.suffix == ".txt":
        if not path.is_file():
            raise FileNotFoundError(f"prompts: {path} does not exist")
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not prompts:
            raise ValueError(f"prompts: {path} has no non-empty lines; write one prompt per line")
        return prompts

    from datasets import load_dataset

    if path.suffix in _FORMATS:
        if not path.is_file():
            raise FileNotFoundError(f"prompts: {path} does not exist")
        _check_readable(path)
        try:
            ds = load_dataset(_FORMATS[path.suffix], data_files=str(path), split="train")
        except Exception as err:  # datasets wraps parser errors (and raises StopIteration on some empty files)
            cause = err.__cause__ or err.__context__ or err
            raise ValueError(f"prompts: cannot read {path} as {path.suffix[1:]} ({type(cause).__name__}: "
                             f"{str(cause).splitlines()[0] if str(cause) else 'no rows'})") from None
    elif path.exists():
        raise ValueError(f"prompts: unsupported file {path}; use .jsonl, .json, .parquet, .csv or .txt")
    else:
        try:
            ds = load_dataset(str(source), config_name, split=split)
        except Exception as err:  # the Hub client raises many types; say what was asked for
            raise ValueError(
                f"prompts: cannot load Hub dataset {source!r} (config {config_name!r}, split {split!r}): {err}"
            ) from None
    if column is None:
        column = next((c for c in DEFAULT_COLUMNS if c in ds.column_names), None)
        if column is None:
            raise ValueError(
                f"prompts: no prompt column in {source}; pass --column, one of {', '.join(ds.column_names)}"
            )
    elif column not in ds.column_names:
        raise ValueError(
            f"prompts: column {column!r} not in {source}; columns are: {', '.join(ds.column_names)}"
        )
    prompts = [_prompt_from(v, column, i) for i, v in enumerate(ds[column])]
    if not prompts:
        raise ValueError(f"prompts: {source} has no rows")
    return prompts
