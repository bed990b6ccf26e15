"""benchmarks/split_stages.py at smoke size: both launches give the same data and the report covers both stages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "split_stages.py"


def _bench():
    spec = importlib.util.spec_from_file_location("split_stages", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_split_stages_smoke(tmp_path, capsys):
    result = _bench().main(["--smoke", "--json", str(tmp_path / "result.json")])
    out = capsys.readouterr().out
    assert "speed-up" in out and "work per rank" in out
    (round_,) = result["rounds"]
    assert round_["1"]["sha"] == round_["2"]["sha"]  # the split launch merged the 1-process data
    for stage in ("generate", "judge"):
        assert [w["shard"] for w in round_["2"]["work"][stage]] == ["0/2", "1/2"]  # both ranks worked
        assert [w["shard"] for w in round_["1"]["work"][stage]] == ["0/1"]
        row = result["stages"][stage]
        assert row["speedup"]["median"] == pytest.approx(row["one_process"]["median"] / row["two_processes"]["median"])
    assert (tmp_path / "result.json").is_file()


def test_split_stages_refuses_one_process(capsys):
    with pytest.raises(SystemExit):
        _bench().main(["--processes", "1"])
    assert "--processes >= 2" in capsys.readouterr().err
