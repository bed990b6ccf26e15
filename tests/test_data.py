"""sppo_hub.core.data: the table, pairs and triplets datasets, saved and loaded back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from datasets import Dataset

from sppo_hub.core import data, preference


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


PROMPTS = ["Say hi.", "Count to two."]
RESPONSES = [["hi", "hello there", ""], ["1 2", "one, two"]]
# logits, "i first beats j"; prompt 0 has a position bias of +0.5 on every entry
TABLES = [
    np.array([[0.0, -1.0 + 0.5, 2.0 + 0.5], [1.0 + 0.5, 0.0, 3.0 + 0.5], [-2.0 + 0.5, -3.0 + 0.5, 0.0]]),
    np.array([[0.0, 0.0], [0.0, 0.0]]),
]


def _table_ds(**kw):
    return data.build_table_dataset(PROMPTS, RESPONSES, TABLES, kind="logits", prompt_ids=[10, 11], **kw)


def test_table_dataset_columns_and_values():
    ds = _table_ds()
    assert ds.column_names == ["prompt_id", "prompt", "responses", "prob_matrix", "win_rates", "raw_table"]
    row = ds[0]
    assert row["prompt_id"] == 10 and row["responses"] == RESPONSES[0]
    P = np.array(row["prob_matrix"])
    # pairwise rule: P_01 = (sig(-0.5) + 1 - sig(1.5)) / 2
    assert P[0, 1] == pytest.approx((sig(-0.5) + 1 - sig(1.5)) / 2)
    np.testing.assert_allclose(P + P.T, 1.0)
    np.testing.assert_allclose(row["win_rates"], P.mean(axis=1))
    np.testing.assert_allclose(row["raw_table"], TABLES[0])
    # the empty response is kept and judged like any other (here it loses to both)
    assert np.argmin(row["win_rates"]) == 2
    ds_nodiag = _table_ds(include_diagonal=False)
    np.testing.assert_allclose(ds_nodiag[0]["win_rates"], (P.sum(axis=1) - 0.5) / 2)


def test_pairs_dataset_matches_paper_columns():
    table = _table_ds()
    pairs = data.build_pairs_dataset(table, drop_ties=False)
    assert pairs.column_names == ["prompt", "chosen", "rejected", "chosen_probs", "chosen_probs_win", "chosen_probs_lose"]
    first = pairs[0]
    assert first["prompt"] == [{"content": "Say hi.", "role": "user"}]
    assert first["chosen"] == [{"content": "hello there", "role": "assistant"}]
    assert first["rejected"] == [{"content": "", "role": "assistant"}]
    P, wr = np.array(table[0]["prob_matrix"]), table[0]["win_rates"]
    assert first["chosen_probs"] == pytest.approx(P[1, 2])
    assert first["chosen_probs_win"] == pytest.approx(wr[1])
    assert first["chosen_probs_lose"] == pytest.approx(wr[2])
    # prompt 1 is an exact tie: lowest index chosen, next rejected, probabilities 1/2
    second = pairs[1]
    assert second["chosen"][0]["content"] == "1 2" and second["rejected"][0]["content"] == "one, two"
    assert second["chosen_probs"] == 0.5
    # by default an all-tie prompt gives no pair: a DPO loss would read its arbitrary (0, 1) as a preference
    assert len(data.build_pairs_dataset(table)) == 1


def test_pairs_is_trl_preference_format(tiny_model_dir):
    from transformers import AutoTokenizer
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    pairs = data.build_pairs_dataset(_table_ds())
    assert is_conversational(pairs[0])
    # TRL renders it with the model's own chat template: prompt ends with the generation prompt,
    # chosen/rejected are the assistant turns
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = maybe_apply_chat_template(pairs[0], tok)
    assert text["prompt"].endswith("<|im_start|>assistant\n") and "Say hi." in text["prompt"]
    assert text["chosen"].startswith("hello there") and "<|im_end|>" in text["chosen"]


def test_triplets_dataset():
    table = _table_ds()
    trip = data.build_triplets_dataset(table)
    assert trip.column_names == ["prompt", "response", "win_rate"]
    assert len(trip) == 5
    assert [r[0]["content"] for r in trip["response"]] == RESPONSES[0] + RESPONSES[1]
    np.testing.assert_allclose(trip["win_rate"][:3], table[0]["win_rates"])


def test_mean_score_rule_reaches_the_dataset():
    ds = _table_ds(rule="mean_score")
    s = preference.mean_scores(TABLES[0], "logits")
    assert ds[0]["prob_matrix"][0][1] == pytest.approx(sig(s[0] - s[1]))


def test_build_iteration_datasets_and_roundtrip(tmp_path):
    judged = Dataset.from_dict(
        {
            "prompt_id": [10, 11],
            "prompt": PROMPTS,
            "responses": RESPONSES,
            "raw_table": [t.tolist() for t in TABLES],
            "output_kind": ["logits", "logits"],
        }
    )
    out = data.build_iteration_datasets(judged, triplets=True)
    assert set(out) == {"table", "pairs", "triplets"}
    target = tmp_path / "iter1" / "data"
    data.save_iteration_datasets(target, out, info={"rule": "pairwise"})
    # saving again replaces the directory as a whole, leaving no temp dirs behind
    data.save_iteration_datasets(target, {"table": out["table"], "pairs": out["pairs"]})
    assert sorted(p.name for p in target.parent.iterdir()) == ["data"]
    loaded = data.load_iteration_datasets(target)
    assert set(loaded) == {"table", "pairs"}
    assert loaded["pairs"].to_list() == out["pairs"].to_list()
    assert loaded["table"].to_list() == out["table"].to_list()
    assert data.load_data_info(target)["rows"] == {"table": 2, "pairs": 1}  # prompt 11 ties: no pair by default
    assert len(data.build_iteration_datasets(judged, drop_ties=False)["pairs"]) == 2


def test_failed_save_leaves_nothing(tmp_path):
    target = tmp_path / "data"
    good = data.build_iteration_datasets(
        Dataset.from_dict({"prompt": PROMPTS, "responses": RESPONSES, "raw_table": [t.tolist() for t in TABLES]}),
        output_kind="logits", drop_ties=False,
    )
    data.save_iteration_datasets(target, good)
    with pytest.raises(ValueError, match="unknown name"):
        data.save_iteration_datasets(target, {"bogus": good["pairs"]})

    class Boom(Exception):
        pass

    class Exploding:
        def to_parquet(self, path):
            raise Boom()

        def __len__(self):
            return 0

    with pytest.raises(Boom):
        data.save_iteration_datasets(target, {"table": good["table"], "pairs": Exploding()})
    # the previous complete directory is untouched and no temp dir is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert len(data.load_iteration_datasets(target)["pairs"]) == 2


def test_bad_inputs_name_the_field():
    with pytest.raises(ValueError, match="missing column.*'prompt'"):
        data.build_pairs_dataset(Dataset.from_dict({"responses": [["a", "b"]], "prob_matrix": [[[0.5, 0.5], [0.5, 0.5]]], "win_rates": [[0.5, 0.5]]}))
    with pytest.raises(ValueError, match="judged dataset: missing column.*'raw_table'"):
        data.build_iteration_datasets(Dataset.from_dict({"prompt": ["x"], "responses": [["a", "b"]]}), output_kind="probs")
    with pytest.raises(ValueError, match="output_kind"):
        data.build_iteration_datasets(
            Dataset.from_dict({"prompt": ["x"], "responses": [["a", "b"]], "raw_table": [[[0.5, 0.5], [0.5, 0.5]]]})
        )
    with pytest.raises(ValueError, match=r"prompt 0 \(prompt_id=10\): table\[0, 1\] = 2.0 is outside"):
        data.build_table_dataset(["x"], [["a", "b"]], [[[0.5, 2.0], [0.1, 0.5]]], kind="probs", prompt_ids=[10])
    with pytest.raises(ValueError, match=r"responses \(prompt 0, response 1\)"):
        data.build_table_dataset(["x"], [["a", None]], [np.zeros((2, 2))])
    with pytest.raises(ValueError, match=r"raw_table \(prompt 0\): shape \(2, 2\) does not match its 3"):
        data.build_table_dataset(["x"], [["a", "b", "c"]], [np.zeros((2, 2))])
    with pytest.raises(ValueError, match="K >= 2"):
        data.build_table_dataset(["x"], [["a"]], [np.zeros((1, 1))])
    with pytest.raises(ValueError, match="prompt_ids: ids must be unique"):
        data.build_table_dataset(["x", "y"], [["a", "b"]] * 2, [np.zeros((2, 2))] * 2, prompt_ids=[1, 1])
    with pytest.raises(FileNotFoundError, match="build-data"):
        data.load_iteration_datasets("/nonexistent/dir")


def test_build_data_cli(tmp_path, capsys):
    from sppo_hub.cli import main

    judged = Dataset.from_dict(
        {
            "prompt_id": [10, 11],
            "prompt": PROMPTS,
            "responses": RESPONSES,
            "raw_table": [t.tolist() for t in TABLES],
            "output_kind": ["logits", "logits"],
            "judge": ["callable:test", "callable:test"],
        }
    )
    judged.save_to_disk(str(tmp_path / "judged"))
    out = tmp_path / "data"
    rc = main(["build-data", "--judged", str(tmp_path / "judged"), "--out", str(out), "--rule", "mean_score",
               "--exclude-diagonal", "--triplets", "--no-drop-ties"])
    assert rc == 0
    assert "2 prompts -> 2 pairs, 5 triplets" in capsys.readouterr().out
    loaded = data.load_iteration_datasets(out)
    info = data.load_data_info(out)
    assert info["rule"] == "mean_score" and info["include_diagonal"] is False and info["judge"] == "callable:test"
    expected = data.build_iteration_datasets(judged, rule="mean_score", include_diagonal=False, triplets=True,
                                             drop_ties=False)  # --no-drop-ties keeps the all-tie prompt
    for name in ("table", "pairs", "triplets"):
        assert loaded[name].to_list() == expected[name].to_list()

    # a JSONL judged file without a kind column needs --kind; without it the error names the field
    judged.remove_columns(["output_kind"]).to_json(str(tmp_path / "judged.jsonl"))
    assert main(["build-data", "--judged", str(tmp_path / "judged.jsonl"), "--out", str(out)]) == 2
    assert "output_kind" in capsys.readouterr().err
    assert main(["build-data", "--judged", str(tmp_path / "judged.jsonl"), "--out", str(out), "--kind", "logits"]) == 0

    # a `sppo-hub judge --out` folder: judged.parquet (table_kind column) beside shard chunks, which are ignored
    judge_out = tmp_path / "judge-out"
    (judge_out / "shards").mkdir(parents=True)
    tk = judged.rename_column("output_kind", "table_kind")
    tk.to_parquet(str(judge_out / "judged.parquet"))
    tk.select([0]).to_parquet(str(judge_out / "shards" / "chunk-0.parquet"))
    assert main(["build-data", "--judged", str(judge_out), "--out", str(out), "--no-drop-ties"]) == 0
    assert len(data.load_iteration_datasets(out)["table"]) == 2

    # missing prompt column -> exit 2, message names it; the previous output stays intact
    judged.remove_columns(["prompt"]).save_to_disk(str(tmp_path / "bad"))
    assert main(["build-data", "--judged", str(tmp_path / "bad"), "--out", str(out)]) == 2
    assert "'prompt'" in capsys.readouterr().err
    assert len(data.load_iteration_datasets(out)["pairs"]) == 2
    assert main(["build-data", "--judged", str(tmp_path / "nope"), "--out", str(out)]) == 2
