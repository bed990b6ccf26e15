"""benchmarks/ranking.py at its smallest size: both methods run and the printed ratio is the measured one."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ranking.py"


def test_ranking_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("ranking_bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--smoke", "--prompts", "2", "--k", "3", "--json", str(tmp_path / "result.json")])
    out = capsys.readouterr().out
    assert "one pair at a time" in out and "PairRMJudge" in out and "speedup" in out
    assert result["pairs"] == 2 * 3 * 2
    seconds = result["seconds"]
    assert seconds["loop"] > 0 and seconds["judge"] > 0
    assert result["speedup_judge_over_loop"] == pytest.approx(seconds["loop"] / seconds["judge"])
    assert (tmp_path / "result.json").is_file()
