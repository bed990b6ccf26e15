"""benchmarks/train_step.py at its smallest size: both trainers in both reference configurations, interleaved,
with token counts, FLOP/s and the share of the matmul peak measured in the same run."""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"


def test_train_step_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_step", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--smoke", "--batch-size", "2", "--steps", "2", "--json", str(tmp_path / "result.json")])
    assert list(result["configs"]) == ["fp32/live", "fp32/precomputed", "bf16/live", "bf16/precomputed"]
    out = capsys.readouterr().out
    assert "matmul peak" in out and "TRL DPOTrainer" in out and "% peak" in out
    assert result["repeats"] == 3 and len(result["load_per_round"]) == 3
    for precision in ("fp32", "bf16"):  # a peak per precision, measured every round
        peak = result["matmul_peak_gflops"][precision]
        assert len(peak["runs"]) == 3 and peak["median"] > 0
    for config, entry in result["configs"].items():
        precision = config.split("/")[0]
        for kind in ("trl", "sppo"):
            e = entry[kind]
            assert len(e["step_seconds"]["runs"]) == 3
            # the same arithmetic for both trainers: autocast as the config says, fp32 master weights
            assert e["bf16_autocast"] == (precision == "bf16") and e["weights_dtype"] == "torch.float32"
            assert e["padded_tokens_per_step"] >= e["real_tokens_per_step"] > 0
            factor = 8 if config.endswith("live") else 6  # the live reference adds one forward (2 N T)
            assert e["gflop_per_step"] == pytest.approx(factor * e["params"] * e["padded_tokens_per_step"] / 1e9)
            assert e["share_of_peak"] == pytest.approx(e["achieved_gflops"] / result["matmul_peak_gflops"][precision]["median"])
        ratios = [s / t for s, t in zip(entry["sppo"]["step_seconds"]["runs"], entry["trl"]["step_seconds"]["runs"])]
        assert entry["step_ratio_sppo_over_trl"]["median"] == pytest.approx(statistics.median(ratios))
    # both trainers saw the same batches: the comparison is like with like
    live = result["configs"]["fp32/live"]
    assert live["trl"]["padded_tokens_per_step"] == live["sppo"]["padded_tokens_per_step"]
    assert (tmp_path / "result.json").is_file()
