"""benchmarks/ranking.py at its smallest size: llm-blender's Blender.rank is the anchor, fp32 equals it, the
fast options are timed and their accuracy measured, and the printed ratios are the measured ones."""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ranking.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ranking_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ranking_smoke_against_blender_rank(bench, tmp_path, capsys):
    result = bench.main(["--smoke", "--prompts", "1", "--k", "3", "--accuracy-prompts", "1",
                         "--json", str(tmp_path / "result.json")])
    out = capsys.readouterr().out
    assert "Blender.rank(batch_size=1) (anchor)" in out and "quantize=int8" in out and "load" in out
    speed = result["speed"]
    assert speed["ordered_pairs"] == 3 * 2 and speed["repeats"] == 3 and len(speed["load_per_round"]) == 3
    assert set(speed["seconds"]) == {"anchor", *bench.FAST_OPTIONS}
    for name in bench.EXACT:  # default, SDPA with torch linears, transformers' modules: all equal the anchor
        exact = speed["accuracy_on_timed_prompts"][name]
        assert exact["equal_to_anchor"] and exact["max_abs_dlogit"] < 1e-4 and exact["max_abs_dscore"] < 1e-4
    for name in ("ours_bf16linear", "ours_bf16", "ours_int8"):
        acc = speed["accuracy_on_timed_prompts"][name]
        assert 0 < acc["max_abs_dlogit"] < 1  # measured, not assumed: close to fp32 but not equal
    for name in ("ours_bf16linear", "ours_bf16recheck", "ours_bf16", "ours_int8"):
        assert result["accuracy"][name]["prompts"] == 1
        assert result["accuracy"][name]["max_abs_dlogit"] < 1
    for rechecked in (speed["accuracy_on_timed_prompts"]["ours_bf16recheck"]["rechecked"],
                      result["accuracy"]["ours_bf16recheck"]["rechecked"]):  # how much went to the exact copy
        assert 0 <= rechecked["prompts"] <= rechecked["of_prompts"] == 1 and 0 <= rechecked["pairs"] <= rechecked["of_pairs"] == 6
    assert "bf16 + near-tie recheck" in out
    for name, ratio in speed["speedup_over_anchor"].items():
        runs = [a / b for a, b in zip(speed["seconds"]["anchor"]["runs"], speed["seconds"][name]["runs"])]
        assert ratio["median"] == pytest.approx(statistics.median(runs))
        assert ratio["min"] <= ratio["median"] <= ratio["max"]
    assert (tmp_path / "result.json").is_file()


def test_ranking_k_scaling_smoke(bench, capsys):
    result = bench.main(["--smoke", "--k-scaling", "2,3", "--prompts", "1"])
    rows = result["k_scaling"]["k"]
    assert [rows[k]["pairs_per_prompt"] for k in (2, 3)] == [2, 6]
    assert rows[3]["predicted_vs_first"] == 3.0 and rows[2]["cost_vs_first"]["median"] == 1.0
    assert "judge cost per prompt" in capsys.readouterr().out


def test_scores_and_agreement_helpers(bench):
    import numpy as np

    tables = np.array([[[0.0, 2.0, 1.0], [-1.0, 0.0, 0.5], [-0.3, -0.5, 0.0]]])
    scores = bench.blender_scores(tables)  # llm-blender's max_logits rule, diagonal included in the mean
    np.testing.assert_allclose(scores, [[(0 + 3 + 1.3) / 3, (-3 + 0 + 1) / 3, (-1.3 - 1 + 0) / 3]])
    flipped = tables.copy()
    flipped[0, 2, 0] = 2.0  # candidate 2 now beats 0: 0 stays best, 1 becomes the worst
    acc = bench.compare(tables, flipped)
    assert acc["max_abs_dlogit"] == pytest.approx(2.3)
    assert acc["best_agreement"] == 1.0 and acc["worst_agreement"] == 0.0


def test_tokenizer_choice(bench, tmp_path):
    assert bench.base_tokenizer("tiny") is None
    assert bench.base_tokenizer(str(tmp_path)) == tmp_path  # a folder is taken as given
    minilm = bench.base_tokenizer("minilm")  # installed by the Makefile; else the tiny one, with a note
    assert minilm is None or (minilm / "tokenizer.json").is_file()
    with pytest.raises(SystemExit, match="--tokenizer: 'nowhere' is not"):
        bench.base_tokenizer("nowhere")
