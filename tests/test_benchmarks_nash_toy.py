"""benchmarks/nash_game.py, toy_lm.py and memory.py at their --smoke sizes: they run, print their table and give
sane numbers. The benchmarks' findings themselves live in benchmarks/README.md, not in assertions here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_nash_game_smoke(tmp_path, capsys):
    bench = load("nash_game")
    result = bench.main(["--smoke", "--seeds", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "exploitability" in out and "sppo_exact" in out and "nash (LP)" in out
    assert "sppo_fit+all+explore+reg" in out and "mean (range) over 2 seed(s)" in out
    assert (tmp_path / "plot.png").stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["config"]["prompts"] == 4
    nash = result["nash"]
    assert nash["exploitability"] == pytest.approx(0.0, abs=1e-6)  # the LP's solution is an equilibrium
    assert nash["support"] >= 2  # the cycles make it mixed: no pure response is unbeatable
    assert 0 < nash["pi0_exploitability"] <= 0.5
    assert set(result["results"]) == set(bench.METHODS)
    for method, rows in result["results"].items():
        assert [r["iteration"] for r in rows] == list(range(9)), method
        assert rows[0]["exploit_last"] == pytest.approx(nash["pi0_exploitability"])
        assert rows[0]["winrate_vs_pi0"] == pytest.approx(0.5)
        for r in rows:
            assert 0.0 <= r["exploit_last"] <= 0.5 and 0.0 <= r["exploit_avg"] <= 0.5, method
            assert 0.0 <= r["winrate_vs_pi0"] <= 1.0, method
            assert 0.0 <= r["exploit_tail"] <= 0.5, method
    summary = result["summary"]
    assert set(summary) == set(bench.METHODS)
    k, e = result["config"]["samples"], result["config"]["explore"]
    assert summary["sppo_fit+explore"]["judge_calls_per_prompt"] == (k + e) * (k + e - 1)
    assert summary["sppo_fit"]["judge_calls_per_prompt"] == k * (k - 1)
    for s in summary.values():
        assert s["exploit_avg"]["min"] <= s["exploit_avg"]["mean"] <= s["exploit_avg"]["max"]


def test_nash_game_options_parse():
    bench = load("nash_game")
    assert bench.parse_fit("sppo_fit+reg+all") == {"all", "reg"}
    assert len(bench.FITTED) == 8 and bench.FITTED[0] == "sppo_fit" and bench.FITTED[-1] == "sppo_fit+all+explore+reg"
    with pytest.raises(ValueError):
        bench.parse_fit("sppo_fit+nope")


def test_nash_game_math():
    bench = load("nash_game")
    import numpy as np

    # rock-paper-scissors: the equilibrium is uniform, a pure strategy is exploitable by 1/2 * (P_win - 1/2) * 2
    P = np.full((3, 3), 0.5) + 0.4 * bench.CYCLE
    pi = bench.nash_policy(P)
    assert np.allclose(pi, 1 / 3, atol=1e-6)
    assert bench.exploitability(P[None], pi[None]) == pytest.approx(0.0, abs=1e-9)
    assert bench.exploitability(P[None], np.array([[1.0, 0.0, 0.0]])) == pytest.approx(0.4)
    # exact SPPO keeps the uniform equilibrium fixed
    assert np.allclose(bench.sppo_exact_step(P[None], pi[None], eta=1.0), pi)


def test_nash_game_bad_method(tmp_path):
    with pytest.raises(SystemExit):
        load("nash_game").main(["--smoke", "--methods", "sppo,nope", "--out", str(tmp_path)])


def test_toy_lm_smoke(tmp_path, capsys):
    bench = load("toy_lm")
    methods = ("sppo", "dpo", "sppo+all+explore+reg")
    result = bench.main(["--smoke", "--methods", ",".join(methods), "--iterations", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "win vs pi_0" in out and "exploitability" in out and "sppo+all+explore+reg" in out
    assert (tmp_path / "plot.png").is_file()
    for method in methods:
        rows = result["results"][method]
        assert [r["iteration"] for r in rows] == [0, 1]
        assert rows[0]["winrate_vs_pi0"] == pytest.approx(0.5, abs=0.25)  # pi_0 against its own (other) samples
        assert rows[1]["pairs"] > 0 and rows[1]["loss_first"] >= 0
        for r in rows:
            assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["winrate_vs_pi0"] <= 1.0
            assert 0.0 <= r["exploitability"] <= 0.5 and 0.0 <= r["avg_exploitability"] <= 0.5
            assert r["length"] > 0
    cfg = result["config"]
    k, e, n = cfg["samples"], cfg["explore"], cfg["prompts"]
    assert result["results"]["sppo"][1]["judge_calls"] == n * k * (k - 1)
    assert result["results"]["sppo+all+explore+reg"][1]["judge_calls"] == n * (k + e) * (k + e - 1)
    assert result["results"]["sppo+all+explore+reg"][1]["pairs"] == n * (k + e) // 2  # every response, paired up
    # the averaged policy (MixtureGenerator over pi_1..pi_t) is measured beside the last iterate
    assert 0.0 <= result["results"]["sppo"][1]["avg_winrate_vs_pi0"] <= 1.0


def test_toy_lm_oracle():
    bench = load("toy_lm")
    assert bench.oracle("echo 7", "Sure, 7.", "blah") == 0.95
    assert bench.oracle("echo 7", "Well, 3.", "Okay, 7.") == pytest.approx(0.1)
    assert bench.oracle("echo 7", "Sure, 7.", "Okay, 7.") == 0.8
    assert bench.oracle("echo 7", "Sure, 7.", "Well, 7.") == pytest.approx(0.3)  # the cycle: Well beats Sure
    assert bench.oracle("echo 7", "Okay, 7.", "Okay, 7.") == 0.5
    for a, b in [("Sure, 7.", "Well, 7."), ("x", "Okay, 1.")]:
        assert bench.oracle("echo 7", a, b) + bench.oracle("echo 7", b, a) == pytest.approx(1.0)


def test_memory_smoke(capsys):
    bench = load("memory")
    rows = bench.main(["--smoke", "--steps", "1", "--pairs", "4"])
    out = capsys.readouterr().out
    assert "Peak RSS" in out and "LoRA" in out
    assert [r["config"] for r in rows] == ["full, live ref", "LoRA r=8"]
    full, lora = rows
    assert 0 < lora["trainable_params"] < full["trainable_params"]
    for r in rows:
        assert r["peak_mib"] >= r["baseline_mib"] > 0


def test_nash_game_readme_tables_are_what_the_kept_results_render():
    """benchmarks/README.md shows, character for character, the tables the kept results files render (no rerun:
    `python benchmarks/nash_game.py --preset <name>` rewrites the file and prints the same table)."""
    nash_tables = load("nash_tables")
    readme = (BENCH / "README.md").read_text()
    for name in nash_tables.PRESETS:
        payload = json.loads((nash_tables.RESULTS / f"nash_game_{name}.json").read_text())
        assert payload["preset"] == name and payload["seeds"] == nash_tables.PRESETS[name]["seeds"]
        assert [e["label"] for e in payload["methods"]] == [m[0] for m in nash_tables.PRESETS[name]["methods"]]
        assert nash_tables.render(payload) in readme, f"benchmarks/README.md lacks the {name} table; rerun the preset"


def test_nash_game_preset_prints_what_it_keeps(tmp_path, monkeypatch, capsys):
    bench, nash_tables = load("nash_game"), load("nash_tables")
    tiny = {"seeds": [0, 1], "methods": [("exact", "sppo_exact", {"iterations": 10}),
                                          ("fit", "sppo_fit+all+explore+mag+opt", {"iterations": 10, "eta": 2.0})]}
    monkeypatch.setitem(nash_tables.PRESETS, "heldout", tiny)
    payload = nash_tables.run_preset(bench, "heldout", results_dir=tmp_path)
    kept = json.loads((tmp_path / "nash_game_heldout.json").read_text())
    assert kept == json.loads(json.dumps(payload))
    assert nash_tables.render(kept) in capsys.readouterr().out
    assert set(kept["methods"][1]["by_seed"]["1"]) == {"10"}  # T = 10 only: the checkpoints the run reached
    assert kept["methods"][1]["judge_calls"] == 16 * 15 and kept["methods"][0]["judge_calls"] == 0
    assert nash_tables.render(kept).count("\n") == 3  # header, rule, two methods
