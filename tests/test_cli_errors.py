"""Malformed input to every command: a clear one-line error naming the field, the right exit code, no
traceback, and nothing half-written that would block the corrected rerun.

Each row: (case id, argv with {placeholders}, expected exit code, text the message must contain, paths that
must not exist afterwards). Rows run in process through `sppo_hub.cli.main` (fast); a few run through the
console entry point in a subprocess to show the same holds there.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sppo_hub.cli import main

PAIR = {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "a"}],
        "rejected": [{"role": "assistant", "content": "b"}], "chosen_probs": 0.7, "chosen_probs_win": 0.6,
        "chosen_probs_lose": 0.4}


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model_dir) -> dict[str, str]:
    """Inputs, good and bad, written once for the module: {name: path}."""
    root = tmp_path_factory.mktemp("cli-errors")
    corrupt = root / "corrupt-model"
    shutil.copytree(tiny_model_dir, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00garbage, not a safetensors header")
    paths = {"root": root, "model": tiny_model_dir, "corrupt": corrupt}

    def write(name: str, text: str) -> None:
        (root / name).write_text(text)
        paths[name.replace(".", "_")] = root / name

    write("empty.jsonl", "")
    write("broken.jsonl", '{"prompt": "fine"}\n{"prompt": \n')
    write("prompts.jsonl", "".join(json.dumps({"prompt": f"say {i}"}) + "\n" for i in range(4)))
    write("nan_pairs.jsonl", json.dumps({**PAIR, "chosen_probs": math.nan}) + "\n")
    write("null_pairs.jsonl", json.dumps({**PAIR, "chosen_probs_win": None}) + "\n")
    write("no_table.jsonl", json.dumps({"prompt": "p", "responses": ["a", "b"]}) + "\n")
    write("bad.json", "{not json")
    write("list.yaml", "- a\n- list\n")
    write("train_typo.yaml", "learning_rat: 1.0e-5\n")
    write("judge_fn.py", "def prefer_first(prompt, a, b):\n    return 0.75\n")
    recipe = {"run_name": "bad", "model": str(tiny_model_dir), "prompts": {"path": str(root / "prompts.jsonl")},
              "iterations": 2, "judge": {"type": "callable", "callable": f"{root / 'judge_fn.py'}:prefer_first"},
              "training": {"optim": "adamw_torch"}, "publish": {"enabled": False}, "output_dir": str(root / "run")}
    write("recipe.yaml", yaml.safe_dump(recipe))
    return {k: str(v) for k, v in paths.items()}


NO_VLLM = "no_vllm"  # marker: run with vllm made unimportable (sys.modules["vllm"] = None)

GEN = ["generate", "--model", "{model}", "--prompts", "{prompts_jsonl}", "--out", "{root}/gen-out", "-k", "2",
       "--max-new-tokens", "2"]
TRAIN = ["train", "--model", "{model}", "--data", "{nan_pairs_jsonl}", "--out", "{root}/train-out"]
RUN = ["run", "{recipe_yaml}"]

CASES = [
    # generate
    ("gen-empty-prompts", [*GEN[:3], "--prompts", "{empty_jsonl}", *GEN[5:]], 2, "is empty", ["{root}/gen-out"]),
    ("gen-broken-jsonl", [*GEN[:3], "--prompts", "{broken_jsonl}", *GEN[5:]], 2, "line 2", ["{root}/gen-out"]),
    ("gen-missing-prompts", [*GEN[:3], "--prompts", "{root}/nope.jsonl", *GEN[5:]], 2, "does not exist",
     ["{root}/gen-out"]),
    ("gen-corrupt-safetensors", ["generate", "--model", "{corrupt}", *GEN[3:]], 2, "corrupt", ["{root}/gen-out"]),
    ("gen-missing-model", ["generate", "--model", "{root}/no-model", *GEN[3:]], 2, "--model", ["{root}/gen-out"]),
    ("gen-vllm-missing", [*GEN, "--backend", "vllm"], 1, "sppo-hub[vllm]", ["{root}/gen-out"], NO_VLLM),
    ("gen-k-zero", [*GEN[:-4], "-k", "0"], 2, "--num-samples", ["{root}/gen-out"]),
    ("gen-negative-temperature", [*GEN, "--temperature", "-1"], 2, "temperature", ["{root}/gen-out"]),
    ("gen-limit-zero", [*GEN, "--limit", "0"], 2, "--limit", ["{root}/gen-out"]),
    ("gen-no-model", ["generate", "--prompts", "{prompts_jsonl}", "--out", "{root}/gen-out"], 2, "--model",
     ["{root}/gen-out"]),
    ("gen-bad-shard", [*GEN, "--shard", "3/2"], 2, "shard", ["{root}/gen-out"]),
    # judge
    ("judge-missing-generated", ["judge", "--generated", "{root}/nope.jsonl", "--out", "{root}/j-out"], 2,
     "--generated", ["{root}/j-out"]),
    ("judge-broken-jsonl", ["judge", "--generated", "{broken_jsonl}", "--out", "{root}/j-out"], 2, "--generated",
     ["{root}/j-out"]),
    ("judge-empty-generated", ["judge", "--generated", "{empty_jsonl}", "--out", "{root}/j-out"], 2, "--generated",
     ["{root}/j-out"]),
    ("judge-bad-extra", ["judge", "--generated", "{no_table_jsonl}", "--out", "{root}/j-out", "--extra", "{{x"], 2,
     "--extra", ["{root}/j-out"]),
    ("judge-callable-missing-file", ["judge", "--generated", "{no_table_jsonl}", "--out", "{root}/j-out", "--judge",
                                     "callable", "--judge-callable", "{root}/nope.py:f"], 2, "--judge-callable",
     ["{root}/j-out"]),
    ("judge-unknown-type", ["judge", "--generated", "{no_table_jsonl}", "--out", "{root}/j-out", "--judge", "oracle"],
     2, "--judge", ["{root}/j-out"]),
    # build-data
    ("data-missing-judged", ["build-data", "--judged", "{root}/nope.jsonl", "--out", "{root}/d-out"], 2, "--judged",
     ["{root}/d-out"]),
    ("data-broken-jsonl", ["build-data", "--judged", "{broken_jsonl}", "--out", "{root}/d-out"], 2, "--judged",
     ["{root}/d-out"]),
    ("data-no-raw-table", ["build-data", "--judged", "{no_table_jsonl}", "--out", "{root}/d-out"], 2, "output_kind",
     ["{root}/d-out"]),
    # train
    ("train-lr-zero", [*TRAIN, "--lr", "0"], 2, "--lr", ["{root}/train-out"]),
    ("train-batch-zero", [*TRAIN, "--batch-size", "0"], 2, "--batch-size", ["{root}/train-out"]),
    ("train-epochs-zero", [*TRAIN, "--epochs", "0"], 2, "--epochs", ["{root}/train-out"]),
    ("train-missing-data", ["train", "--model", "{model}", "--data", "{root}/nope.parquet", "--out",
                            "{root}/train-out"], 2, "--data", ["{root}/train-out"]),
    ("train-nan-pairs", TRAIN, 2, "chosen_probs", ["{root}/train-out"]),
    ("train-null-pairs", [*TRAIN[:4], "{null_pairs_jsonl}", *TRAIN[5:]], 2, "chosen_probs_win", ["{root}/train-out"]),
    ("train-unknown-optim", [*TRAIN, "--optim", "adamw_fast"], 2, "--optim", ["{root}/train-out"]),
    ("train-missing-model", ["train", "--model", "{root}/no-model", *TRAIN[3:]], 2, "--model", ["{root}/train-out"]),
    ("train-merge-without-lora", [*TRAIN, "--merge"], 2, "--merge", ["{root}/train-out"]),
    ("train-unknown-flag", [*TRAIN, "--no_such_field", "1"], 2, "--no_such_field", ["{root}/train-out"]),
    ("train-unknown-config-key", [*TRAIN, "--config", "{train_typo_yaml}"], 2, "did you mean --learning_rate",
     ["{root}/train-out"]),
    ("train-missing-config", [*TRAIN, "--config", "{root}/nope.yaml"], 2, "--config", ["{root}/train-out"]),
    # hub
    ("hub-serve-file-as-data-dir", ["hub", "serve", "--data-dir", "{prompts_jsonl}"], 2, "data", []),
    ("hub-serve-port-70000", ["hub", "serve", "--data-dir", "{root}/hub-data", "--port", "70000"], 2, "--port",
     ["{root}/hub-data"]),
    ("hub-publish-missing-path", ["hub", "publish-data", "{root}/no-data", "--org", "o", "--run", "r", "--iteration",
                                  "1", "--endpoint", "http://127.0.0.1:9"], 2, "no-data", []),
    ("hub-publish-bad-card-info", ["hub", "publish-model", "{model}", "--org", "o", "--run", "r", "--iteration", "1",
                                   "--card-info", "{bad_json}", "--endpoint", "http://127.0.0.1:9"], 2, "--card-info",
     []),
    ("hub-publish-unreachable", ["hub", "publish-model", "{model}", "--org", "o", "--run", "r", "--iteration", "1",
                                 "--base-model", "o/r-iter0", "--endpoint", "http://127.0.0.1:9"], 2, "127.0.0.1:9",
     []),
    # run
    ("run-iterations-fraction", [*RUN, "iterations=1.5"], 2, "iterations", ["{root}/run"]),
    ("run-lr-alias", [*RUN, "training.lr=1e-4"], 2, "training.learning_rate", ["{root}/run"]),
    ("run-bad-dtype", [*RUN, "model.dtype=float64x"], 2, "model.dtype", ["{root}/run"]),
    ("run-trust-remote-code-maybe", [*RUN, "model.trust_remote_code=maybe"], 2, "model.trust_remote_code",
     ["{root}/run"]),
    ("run-revision-of-local-folder", [*RUN, "model.revision=no-such-rev"], 2, "model.revision", ["{root}/run"]),
    ("run-lr-zero", [*RUN, "training.learning_rate=0"], 2, "training.learning_rate", ["{root}/run"]),
    ("run-batch-zero", [*RUN, "training.per_device_train_batch_size=0"], 2, "training.per_device_train_batch_size",
     ["{root}/run"]),
    ("run-unknown-optim", [*RUN, "training.optim=adamw_fast"], 2, "training.optim", ["{root}/run"]),
    ("run-epochs-zero", [*RUN, "training.num_train_epochs=0"], 2, "training.num_train_epochs", ["{root}/run"]),
    ("run-lora-target-missing", [*RUN, "training.use_lora=true", "training.lora_target_modules=[query_key_value]"], 2,
     "training.lora_target_modules", ["{root}/run"]),
    ("run-judge-file-missing", [*RUN, "judge.callable={root}/nope.py:f"], 2, "judge.callable", ["{root}/run"]),
    ("run-empty-prompts", [*RUN, "prompts.path={empty_jsonl}"], 2, "prompts.path", ["{root}/run"]),
    ("run-broken-prompts", [*RUN, "prompts.path={broken_jsonl}"], 2, "prompts.path", ["{root}/run"]),
    ("run-more-iterations-than-prompts", [*RUN, "iterations=9"], 2, "iterations", ["{root}/run"]),
    ("run-missing-recipe", ["run", "{root}/nope.yaml"], 2, "recipe", ["{root}/run"]),
    ("run-recipe-not-mapping", ["run", "{list_yaml}"], 2, "mapping", ["{root}/run"]),
    ("run-hub-port", [*RUN, "--hub-port", "70000"], 2, "--hub-port", ["{root}/run"]),
    ("run-no-recipe", ["run"], 2, "recipe", ["{root}/run"]),
    ("run-missing-model", [*RUN, "model={root}/no-model"], 2, "model.name_or_path", ["{root}/run"]),
    ("run-bad-override", [*RUN, "iterations"], 2, "iterations", ["{root}/run"]),
    # eval
    ("eval-alpaca-nothing", ["eval", "alpaca-eval", "--out", "{root}/e-out"], 2, "--model", ["{root}/e-out"]),
    ("eval-alpaca-missing-outputs", ["eval", "alpaca-eval", "--outputs", "{root}/nope.json", "--out",
                                     "{root}/e-out"], 2, "--outputs", ["{root}/e-out"]),
    ("eval-mt-bench-broken-answers", ["eval", "mt-bench", "--answers", "{broken_jsonl}", "--out", "{root}/m-out",
                                      "--base-url", "http://127.0.0.1:9/v1"], 2, "--answers", ["{root}/m-out"]),
    ("eval-leaderboard-no-model", ["eval", "leaderboard", "--out", "{root}/l-out"], 2, "--model", ["{root}/l-out"]),
    # space
    ("space-run-missing-model", ["space", "run", "--model", "{root}/no-model"], 2, "--model", []),
    ("space-run-bad-port", ["space", "run", "--model", "{model}", "--port", "70000"], 2, "--port", []),
]


def _fill(items: list[str], files: dict[str, str]) -> list[str]:
    return [item.format(**files) for item in items]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_input(case, files, capsys, monkeypatch):
    name, argv, code, needle, absent = case[:5]
    if NO_VLLM in case[5:]:
        monkeypatch.setitem(sys.modules, "vllm", None)  # an import of vllm now fails as if it were not installed
    monkeypatch.delenv("SPPO_HUB_DEBUG", raising=False)
    rc = main(_fill(argv, files))
    err = capsys.readouterr().err
    assert rc == code, (name, rc, err)
    assert "Traceback" not in err, (name, err)
    assert needle.format(**files) in err, (name, err)
    lines = [line for line in err.splitlines() if "error" in line]
    assert lines and len(lines[-1]) < 1200, (name, err)  # one line, not a dump
    for path in _fill(absent, files):
        assert not Path(path).exists(), f"{name}: {path} was left behind"


def test_at_least_40_cases_across_every_command():
    commands = {c[1][0] for c in CASES}
    assert len(CASES) >= 40 and commands >= {"generate", "judge", "build-data", "train", "hub", "run", "eval", "space"}


def test_debug_shows_the_traceback(files, capsys):
    with pytest.raises(ValueError, match="model.dtype"):
        main(["run", files["recipe_yaml"], "model.dtype=float64x", "--debug"])


def test_unknown_errors_are_one_line_with_a_hint():
    from sppo_hub.commands.errors import describe

    code, message = describe(RuntimeError("something odd\nmore detail"))
    assert code == 1 and message.startswith("RuntimeError: something odd") and "--debug" in message
    code, message = describe(ModuleNotFoundError("No module named 'gradio'", name="gradio"))
    assert code == 1 and "sppo-hub[space]" in message


def _console() -> list[str]:
    script = Path(sys.executable).with_name("sppo-hub")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sppo_hub"]


@pytest.mark.parametrize("case_id", ["run-iterations-fraction", "gen-empty-prompts", "train-nan-pairs"])
def test_console_entry_point(case_id, files):
    """The installed `sppo-hub` script: same exit code and message, no traceback."""
    name, argv, code, needle, absent = next(c for c in CASES if c[0] == case_id)[:5]
    env = {k: v for k, v in os.environ.items() if k != "SPPO_HUB_DEBUG"}
    out = subprocess.run([*_console(), *_fill(argv, files)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == code, out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr


def test_overrides_after_flags_and_config_flag(files, capsys):
    """`run RECIPE --check key=value` and `run --config RECIPE key=value` read the overrides."""
    assert main(["run", files["recipe_yaml"], "--check", "iterations=1"]) == 0
    out = capsys.readouterr().out
    assert "iterations : 1" in out and "check passed" in out
    assert main(["run", "--config", files["recipe_yaml"], "--dry-run", "sampling.num_samples=3"]) == 0
    assert "prompts    : 4 (2, 2 per iteration)" in capsys.readouterr().out
    assert not Path(files["root"], "run").exists()
