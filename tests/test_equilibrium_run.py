"""The `equilibrium:` recipe section through the real run on the tiny Llama (2 iterations, no Hub): exploration
candidates judged with pi_{t-1}'s samples, win rates against those samples only, all responses trained on their
own targets, pi_0 mixed into the reference, and the averaged policy's record, sampled by MixtureGenerator."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from sppo_hub.loop.recipe import load_recipe

pytestmark = pytest.mark.slow
PROMPTS = ["Say hi.", "Name a color.", "Count to three.", "What is 2+2?", "Name a fruit.", "Greet me."]
K, E = 2, 2


def prefer_longer(prompt: str, a: str, b: str) -> float:
    return 1.0 / (1.0 + math.exp(-(len(a) - len(b)) / 4.0))


def _recipe(tmp_path: Path, model_dir: Path, **equilibrium) -> dict:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": p}) + "\n" for p in PROMPTS))
    return {
        "run_name": "eq", "model": str(model_dir), "prompts": {"path": str(prompts), "column": "text"},
        "iterations": 2,
        "sampling": {"num_samples": K, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 5, "batch_size": 8},
        "judge": {"type": "callable", "callable": f"{Path(__file__).resolve()}:prefer_longer"},
        "training": {"loss": "sppo", "eta": 10.0, "learning_rate": 1e-3, "optim": "adamw_torch",
                     "per_device_train_batch_size": 4, "max_length": 64, "warmup_ratio": 0.0},
        "publish": {"enabled": False}, "equilibrium": equilibrium, "output_dir": str(tmp_path / "eq"),
    }


def test_recipe_section_defaults_and_errors(tmp_path, tiny_model_dir):
    cfg = load_recipe(overrides=[f"prompts.path={tmp_path}/p.jsonl"])
    assert not cfg.equilibrium.enabled and cfg.equilibrium.average == "uniform"
    cfg = load_recipe(overrides=[f"prompts.path={tmp_path}/p.jsonl", "equilibrium.exploration.candidates=3",
                                 "equilibrium.reference_mix=0.05"])
    assert cfg.equilibrium.exploration.candidates == 3 and cfg.equilibrium.reference_mix == 0.05
    with pytest.raises(ValueError, match="equilibrium.exploration.source"):
        load_recipe(overrides=[f"prompts.path={tmp_path}/p.jsonl", "equilibrium.exploration.source=nope"])
    with pytest.raises(ValueError, match="training.loss=sppo"):
        load_recipe(overrides=[f"prompts.path={tmp_path}/p.jsonl", "equilibrium.all_responses=true",
                               "training.loss=dpo"])
    with pytest.raises(ValueError, match="did you mean 'equilibrium.reference_mix'"):
        load_recipe(overrides=[f"prompts.path={tmp_path}/p.jsonl", "equilibrium.reference_mx=0.1"])


def test_run_with_every_option(tmp_path, tiny_model_dir):
    from datasets import load_from_disk

    from sppo_hub.equilibrium import options as equilibrium
    from sppo_hub.core.data import load_iteration_datasets
    from sppo_hub.generation import SamplingConfig
    from sppo_hub.generation.factory import MixtureGenerator
    from sppo_hub.generation.mixture import load_mixture
    from sppo_hub.loop.run import run_from_config
    from sppo_hub.loop.stages.equilibrium import prepare_training
    from sppo_hub.train.config import SPPOConfig

    recipe = _recipe(tmp_path, tiny_model_dir, exploration={"candidates": E, "source": "iterates"},
                     reference_mix=0.1, magnet_every=2, optimistic=True, all_responses=True, average="linear")
    (tmp_path / "eq.yaml").write_text(yaml.safe_dump(recipe))
    config = load_recipe(tmp_path / "eq.yaml")
    manifest = run_from_config(config)
    run_dir = Path(config.run_dir)
    per_iter = len(PROMPTS) // 2
    for t in (1, 2):
        # exploration: K policy samples + E extra candidates per prompt, all judged against each other
        gen = load_from_disk(str(run_dir / f"iter{t}" / "generations"))
        assert len(gen) == per_iter and all(len(r) == K + E for r in gen["responses"])
        table = load_iteration_datasets(run_dir / f"iter{t}" / "data")["table"]
        for row in table:
            assert np.shape(row["raw_table"]) == (K + E, K + E)
            # win rates are P(y > pi_{t-1}) estimated on pi_{t-1}'s own K samples only
            assert row["win_rates"] == pytest.approx(equilibrium.candidate_win_rates(row["prob_matrix"], K).tolist())
        assert manifest.stage(t, "train") is not None
    # the reference: pi_0 alone at t = 1 (no anchor, eta); at t = 2 the optimistic average pi_1^(1/2) pi_0^(1/2)
    # takes 0.9 and the magnet pi_0 0.1, so 0.55 of pi_0 is mixed into the reference, with the step 2 eta
    train1, train2 = (manifest.stage(t, "train")["artifacts"] for t in (1, 2))
    assert train1["reference_anchors"] == {} and train1["eta"] == pytest.approx(10.0)
    assert train2["reference_anchors"] == pytest.approx({"0": 0.55}) and train2["eta"] == pytest.approx(20.0)
    # the averaged policy's record: linear weights over pi_1, pi_2 with their local folders
    mix = load_mixture(run_dir)
    assert [c.iteration for c in mix.components] == [1, 2]
    assert mix.probabilities == pytest.approx([1 / 3, 2 / 3])
    assert all((Path(c.model) / "config.json").is_file() for c in mix.components)
    out = MixtureGenerator(mix, SamplingConfig(num_samples=2, max_new_tokens=4, temperature=1.0),
                           device="cpu", dtype="float32", show_progress=False).generate(["Say hi."])
    assert len(out[0]) == 2
    # the train stage's dataset at t = 3: every response with its own target; optimistic weights pi_2^(1/2)
    # pi_1^(1/4) pi_0^(1/4) times 0.9 plus the magnet pi_2 (magnet_every=2) 0.1, so the anchor is (pi_1 pi_0)^(1/2)
    # with weight 0.45 beside pi_2 (one forward pass of pi_1 and of pi_0), and the step 2 eta
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sppo_hub.train.trainer import add_initial_logps

    paths = {0: str(tiny_model_dir), 1: str(run_dir / "iter1" / "model"), 2: str(run_dir / "iter2" / "model")}
    datasets = load_iteration_datasets(run_dir / "iter2" / "data")
    ctx = SimpleNamespace(config=config, policy_path=paths.__getitem__)
    args = SPPOConfig(output_dir=str(tmp_path / "tr"), loss_type="sppo", eta=10.0, max_length=64, use_cpu=True,
                      report_to="none")
    train, args = prepare_training(ctx, datasets, args, t=3)
    assert args.reference_mix == pytest.approx(0.45) and args.eta == pytest.approx(20.0)
    assert args.beta == pytest.approx(1 / 20.0)
    assert len(train) == per_iter * len(equilibrium.response_pairing(K + E))
    plain = equilibrium.all_response_pairs(datasets["table"])
    logps = {i: add_initial_logps(AutoModelForCausalLM.from_pretrained(paths[i]), plain, args,
                                  processing_class=AutoTokenizer.from_pretrained(paths[i])) for i in (0, 1)}
    for col in ("init_chosen_logps", "init_rejected_logps"):
        want = (np.asarray(logps[0][col]) + np.asarray(logps[1][col])) / 2
        assert np.allclose(train[col], want, atol=1e-5)
        assert not np.allclose(logps[0][col], logps[1][col], atol=1e-4)  # two different models were read
    # t = 1: pi_0 is the current policy, nothing to mix in
    train1_ds, args1 = prepare_training(ctx, datasets, SPPOConfig(output_dir=str(tmp_path / "tr1"), loss_type="sppo",
                                                                  eta=10.0, use_cpu=True, report_to="none"), t=1)
    assert args1.reference_mix == 0 and args1.eta == 10.0 and "init_chosen_logps" not in train1_ds.column_names


def test_trainer_reference_mix_uses_pi0_log_probs(tmp_path, tiny_model_dir):
    """At step 0 the policy is pi_t, so the logged log-ratio is a (log pi_t - log pi_0) under the mixed reference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sppo_hub.core.data import build_pairs_dataset, build_table_dataset
    from sppo_hub.train.config import SPPOConfig
    from sppo_hub.train.trainer import SPPOTrainer, add_initial_logps

    table = build_table_dataset(["Say hi.", "Greet me."], [["hi", "hello there"], ["hey", "good day"]],
                                [[[0.5, 0.3], [0.7, 0.5]], [[0.5, 0.6], [0.4, 0.5]]], kind="probs")
    pairs = build_pairs_dataset(table)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    common = dict(output_dir=str(tmp_path / "t"), loss_type="sppo", eta=10.0, max_length=64, use_cpu=True,
                  report_to="none", per_device_train_batch_size=2, max_steps=1, learning_rate=0.0, logging_steps=1,
                  precompute_ref_log_probs=True, save_strategy="no")
    scored = add_initial_logps(model, pairs, SPPOConfig(**common), processing_class=tok)  # = log pi_t here
    shifted = scored.map(lambda r: {"init_chosen_logps": r["init_chosen_logps"] - 5.0,
                                    "init_rejected_logps": r["init_rejected_logps"] - 5.0})
    with pytest.raises(ValueError, match="init_chosen_logps"):
        SPPOTrainer(model, args=SPPOConfig(**common, reference_mix=0.1), train_dataset=pairs, processing_class=tok)
    with pytest.raises(ValueError, match="reference_mix"):
        SPPOConfig(**common, reference_mix=1.0)
    trainer = SPPOTrainer(model, args=SPPOConfig(**common, reference_mix=0.1), train_dataset=shifted,
                          processing_class=tok)
    trainer.train()
    logged = next(r for r in trainer.state.log_history if "logratios/chosen" in r)
    assert logged["logratios/chosen"] == pytest.approx(0.5, abs=1e-3)  # 0.1 * (log pi_t - (log pi_t - 5))
    assert logged["logratios/rejected"] == pytest.approx(0.5, abs=1e-3)
