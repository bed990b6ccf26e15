"""lm-eval through `sppo-hub eval leaderboard`: a small custom YAML task on local JSON, on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sppo_hub.cli import main

DATA = Path(__file__).parent / "data" / "eval_lm_task" / "tiny_qa.jsonl"


def _task_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tasks"
    d.mkdir()
    (d / "tiny_qa.yaml").write_text(f"""task: sppo_tiny_qa
dataset_path: json
dataset_kwargs:
  data_files:
    test: {DATA}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: choices
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
""")
    return d


def test_custom_task_on_tiny_model(tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tasks = _task_dir(tmp_path)
    assert main(["eval", "leaderboard", "--model", str(tiny_model_dir), "--tasks", "sppo_tiny_qa",
                 "--include-path", str(tasks), "--out", str(tmp_path / "out")]) == 0
    saved = json.loads((tmp_path / "out" / "leaderboard_results.json").read_text())
    acc = saved["results"]["sppo_tiny_qa"]["acc,none"]
    assert acc in (0.0, 0.25, 0.5, 0.75, 1.0)  # 4 questions
    assert "acc_stderr,none" in saved["results"]["sppo_tiny_qa"]

    from sppo_hub.evaluation.results import eval_results_for

    items = eval_results_for({"leaderboard": saved["results"]})
    assert [(r.dataset_type, r.metric_type, r.metric_value) for r in items] == [("sppo_tiny_qa", "acc", acc)]


def test_unknown_task_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    tasks = _task_dir(tmp_path)
    assert main(["eval", "leaderboard", "--model", str(tiny_model_dir), "--tasks", "no_such_task",
                 "--include-path", str(tasks), "--out", str(tmp_path / "out")]) == 2
    assert "unknown lm-eval task(s) ['no_such_task']" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="include_path"):
        from sppo_hub.evaluation.leaderboard import run_leaderboard

        run_leaderboard(str(tiny_model_dir), tmp_path, tasks=["x"], include_path=str(tmp_path / "nope"))
