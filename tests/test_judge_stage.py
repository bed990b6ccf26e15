"""The judge stage on generated rows: schema, resume after a judge failure, shards, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from sppo_hub.generation import generations_dataset
from sppo_hub.judges.callable import CallableJudge
from sppo_hub.judges.stage import judge_dataset, load_generated, merge_judged


def _generated(n: int = 5, k: int = 3) -> Dataset:
    return generations_dataset([{"prompt_id": i, "prompt": f"echo {i}", "responses": ["x" * (r + 1) for r in range(k)],
                                 "generator": "test"} for i in range(n)])


def longer_wins(prompt, a, b):
    """An oracle: the longer response wins with probability 0.9."""
    return 0.9 if len(a) > len(b) else 0.1 if len(a) < len(b) else 0.5


def test_tables_and_columns():
    judged = judge_dataset(CallableJudge(longer_wins, show_progress=False), _generated(), batch_size=2)
    assert judged.column_names == ["prompt_id", "prompt", "responses", "generator", "raw_table", "table_kind"]
    assert set(judged["table_kind"]) == {"probs"}
    table = np.array(judged["raw_table"][0])
    assert table.shape == (3, 3) and np.allclose(np.diag(table), 0.5)
    assert table[2, 0] == 0.9 and table[0, 2] == 0.1


def test_judged_output_feeds_the_data_stage(tmp_path):
    from sppo_hub.core.data import build_iteration_datasets, load_judged_dataset

    judge_dataset(CallableJudge(longer_wins, show_progress=False), _generated(), out_dir=tmp_path)
    judged = load_judged_dataset(tmp_path)
    pairs = build_iteration_datasets(judged)["pairs"]
    assert len(pairs) == 5
    assert pairs[0]["chosen"][0]["content"] == "xxx" and pairs[0]["rejected"][0]["content"] == "x"


def test_judge_failing_midway_loses_nothing_and_resumes(tmp_path):
    seen = []

    def flaky(prompt, a, b):
        seen.append(prompt)
        if prompt == "echo 3":
            raise ConnectionError("judge endpoint went away")
        return longer_wins(prompt, a, b)

    with pytest.raises(ConnectionError):
        judge_dataset(CallableJudge(flaky, show_progress=False), _generated(), out_dir=tmp_path, batch_size=2)
    assert set(seen) == {"echo 0", "echo 1", "echo 2", "echo 3"}
    assert len(list((tmp_path / "chunks").rglob("chunk-*.json"))) == 1  # prompts 0-1 are saved

    seen.clear()
    judged = judge_dataset(CallableJudge(lambda p, a, b: seen.append(p) or longer_wins(p, a, b), show_progress=False,
                                         name=CallableJudge(flaky).name), _generated(), out_dir=tmp_path, batch_size=2)
    assert sorted(set(seen)) == ["echo 2", "echo 3", "echo 4"]  # only the unfinished chunks
    assert judged["prompt_id"] == [0, 1, 2, 3, 4]
    assert Dataset.from_parquet(str(tmp_path / "judged.parquet"))["raw_table"] == judged["raw_table"]


def test_sharded_judging_and_merge(tmp_path):
    judge = CallableJudge(longer_wins, show_progress=False)
    # chunks of 2 prompts: [0, 2), [2, 4), [4, 5); shard 0/2 takes the first two chunks
    a = judge_dataset(judge, _generated(), out_dir=tmp_path, shard="0/2", batch_size=2)
    assert a["prompt_id"] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"shard 1/2"):
        merge_judged(tmp_path)
    b = judge_dataset(judge, _generated(), out_dir=tmp_path, shard="1/2", batch_size=2)
    assert b["prompt_id"] == [4]
    merged = merge_judged(tmp_path)
    assert list(merged["raw_table"]) == list(a["raw_table"]) + list(b["raw_table"])


def test_bad_rows_name_the_prompt_id(tmp_path):
    judge = CallableJudge(longer_wins, show_progress=False)
    rows = _generated(3).to_list()
    rows[1]["responses"] = ["only one"]
    with pytest.raises(ValueError, match="prompt_id 1 has 1 response"):
        judge_dataset(judge, generations_dataset(rows))
    rows[1]["responses"] = []
    with pytest.raises(ValueError, match="prompt_id 1 has 0 response"):
        judge_dataset(judge, generations_dataset(rows), out_dir=tmp_path)
    assert not (tmp_path / "chunks").exists()  # validated before anything was judged
    with pytest.raises(FileNotFoundError, match="sppo-hub generate"):
        load_generated(tmp_path / "missing")


def test_a_list_of_row_dicts_is_judged_like_a_dataset(tmp_path):
    judge = CallableJudge(longer_wins, show_progress=False)
    rows = [{"prompt": f"echo {i}", "responses": ["x" * (r + 1) for r in range(3)]} for i in range(4)]
    from_list = judge_dataset(judge, rows, batch_size=2)
    from_dataset = judge_dataset(judge, Dataset.from_list(rows), batch_size=2)
    assert from_list["raw_table"] == from_dataset["raw_table"] and from_list["prompt_id"] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"generated\[1\]: missing 'responses'"):
        judge_dataset(judge, [rows[0], {"prompt": "no responses"}])
    with pytest.raises(ValueError, match=r"generated\[0\]: expected a dict"):
        judge_dataset(judge, ["just a string"])


def test_show_progress_false_silences_the_judge_stage(tmp_path, capfd):
    judge = CallableJudge(longer_wins, show_progress=False)
    judge_dataset(judge, _generated(), out_dir=tmp_path, shard="0/2", batch_size=1, show_progress=False)
    judge_dataset(judge, _generated(), out_dir=tmp_path, shard="0/2", batch_size=1, show_progress=False)  # resumed
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
