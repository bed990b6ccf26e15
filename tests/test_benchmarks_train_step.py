"""benchmarks/train_step.py at its smallest size: both trainers run and the ratios are the ones printed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"


def test_train_step_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_step", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--smoke", "--steps", "3", "--json", str(tmp_path / "result.json")])
    out = capsys.readouterr().out
    assert "median step, live reference" in out and "TRL DPOTrainer" in out
    step = result["step_seconds"]
    assert step["trl"] > 0 and step["sppo"] > 0
    assert result["step_ratio_sppo_over_trl"] == pytest.approx(step["sppo"] / step["trl"])
    whole = result["iteration_seconds"]
    assert result["iteration_ratio_precomputed_over_live"] == pytest.approx(
        whole["sppo_precomputed_ref"] / whole["trl_live_ref"])
    assert (tmp_path / "result.json").is_file()
