"""benchmarks/loop_overhead.py at smoke size: the report adds up and covers every compute stage."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "loop_overhead.py"


def test_loop_overhead_smoke(tmp_path, capsys, monkeypatch, local_hub):
    # The benchmark starts its own throwaway local Hub; the session Hub fixture only keeps the
    # client caches of this test session away from the user's.
    spec = importlib.util.spec_from_file_location("loop_overhead", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--smoke", "--json", str(tmp_path / "result.json")])
    out = capsys.readouterr().out
    assert "outside generate/judge/train compute" in out
    stages = result["stages"]
    assert {"generate", "judge", "train", "publish_model", "publish_data"} <= set(stages)
    for name in ("generate", "judge", "train"):
        assert 0 < stages[name]["compute"] <= stages[name]["wall"]
    assert stages["publish_model"]["compute"] == 0
    assert 0 < result["compute_seconds"] < result["wall_seconds"]
    assert result["outside_share"] == pytest.approx(1 - result["compute_seconds"] / result["wall_seconds"])
    assert result["repeats"] == 1 and result["outside_share_runs"]["runs"] == [result["outside_share"]]
    assert (tmp_path / "result.json").is_file()


def test_loop_overhead_summary_picks_the_median_run():
    spec = importlib.util.spec_from_file_location("loop_overhead", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    runs = [{"outside_share": x, "wall_seconds": w} for x, w in ((0.05, 400.0), (0.02, 380.0), (0.09, 450.0))]
    summary = bench.summarise_runs(runs, [1.0, 1.2, 0.9])
    assert summary["outside_share"] == 0.05 and summary["wall_seconds"] == 400.0  # the median run's own table
    assert summary["outside_share_runs"] == {"median": 0.05, "min": 0.02, "max": 0.09, "runs": [0.05, 0.02, 0.09]}
    assert summary["repeats"] == 3 and summary["load_after_each"] == [1.0, 1.2, 0.9]
