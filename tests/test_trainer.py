"""SPPOTrainer on the tiny model: SPPO moves the log-ratios the right way (full and LoRA, live and precomputed
reference), sppo_hard matches TRL's own, bad input fails early, and saved policies reload with Auto classes."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset

from sppo_hub.train.config import SPPOConfig
from sppo_hub.train.trainer import SPPOTrainer, add_initial_logps, loss_history, save_policy, train_policy


def pairs(n: int = 4) -> Dataset:
    return Dataset.from_list([
        dict(prompt=[{"role": "user", "content": f"echo {i}"}],
             chosen=[{"role": "assistant", "content": f"Sure, {i}."}],
             rejected=[{"role": "assistant", "content": f"Well, {i + 1}."}],
             chosen_probs=0.8, chosen_probs_win=0.7, chosen_probs_lose=0.3)
        for i in range(n)
    ])


def config(tmp_path, **kw) -> SPPOConfig:
    base = dict(output_dir=str(tmp_path / "trainer"), loss_type="sppo", eta=5.0, learning_rate=3e-3, max_steps=8,
                per_device_train_batch_size=4, per_device_eval_batch_size=4, report_to="none", save_strategy="no",
                use_cpu=True, disable_tqdm=True, seed=0)
    return SPPOConfig(**{**base, **kw})


def assert_moved_right(trainer, data):
    """Evaluated against the reference, the chosen log-ratio is up and the rejected one down."""
    metrics = trainer.evaluate(data)
    assert metrics["eval_logratios/chosen"] > 0.2, metrics
    assert metrics["eval_logratios/rejected"] < -0.2, metrics
    return metrics


def test_sppo_full_finetune_moves_logratios(tiny_model_dir, tmp_path):
    data = pairs()
    trainer = SPPOTrainer(str(tiny_model_dir), args=config(tmp_path), train_dataset=data)
    trainer.train()
    first = [r for r in trainer.state.log_history if "loss" in r][0]
    # step 1: policy == reference, so the loss is the closed form at zero log-ratios: ((5*0.2)^2 + (5*0.2)^2)/2
    assert first["logratios/chosen"] == pytest.approx(0.0, abs=1e-5)
    assert first["loss"] == pytest.approx(1.0, rel=1e-4)
    assert {"rewards/chosen", "rewards/rejected", "logratios/rejected"} <= set(first)
    history = loss_history(trainer)
    assert len(history) == 8 and history[-1][1] < history[0][1]
    assert_moved_right(trainer, data)


def test_sppo_hard_matches_trl(tiny_model_dir, tmp_path):
    """Same model and batch: our sppo_hard (eta=4) gives TRL DPOTrainer's loss_type='sppo_hard' (beta=0.25)."""
    from trl import DPOConfig, DPOTrainer

    common = dict(learning_rate=0.0, max_steps=1, per_device_train_batch_size=4, report_to="none",
                  save_strategy="no", use_cpu=True, disable_tqdm=True, logging_steps=1)
    ours = SPPOTrainer(str(tiny_model_dir), args=config(tmp_path, loss_type="sppo_hard", eta=4.0, **common),
                       train_dataset=pairs())
    ours.train()
    data = pairs().remove_columns(["chosen_probs", "chosen_probs_win", "chosen_probs_lose"])
    trl = DPOTrainer(str(tiny_model_dir), args=DPOConfig(output_dir=str(tmp_path / "trl"), loss_type="sppo_hard",
                                                         beta=0.25, **common), train_dataset=data)
    trl.train()
    ours_loss, trl_loss = ours.state.log_history[0]["loss"], trl.state.log_history[0]["loss"]
    assert ours_loss == pytest.approx(trl_loss, rel=1e-5)
    assert ours_loss == pytest.approx(2 * 2.0**2)  # zero log-ratios: (0 - 2)^2 + (0 + 2)^2


def test_lora_precomputed_reference_save_and_reload(tiny_model_dir, tmp_path):
    from peft import AutoPeftModelForCausalLM, LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = pairs()
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
    args = config(tmp_path, learning_rate=3e-2, precompute_ref_log_probs=True, max_steps=10)
    trainer = SPPOTrainer(str(tiny_model_dir), args=args, train_dataset=data, peft_config=lora)
    assert "ref_chosen_logps" in trainer.train_dataset.column_names  # reference pass done once, up front
    trainer.train()
    logged = [r for r in trainer.state.log_history if "loss" in r]
    assert logged[0]["logratios/chosen"] == pytest.approx(0.0, abs=1e-4)
    assert logged[-1]["logratios/chosen"] > 0.2 and logged[-1]["logratios/rejected"] < -0.2, logged[-1]

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tok.apply_chat_template([{"role": "user", "content": "echo 3"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    trainer.model.eval()
    with torch.no_grad():
        in_memory = trainer.model(input_ids=ids).logits  # through TRL's fused-LM-head patch
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(input_ids=ids).logits

    adapter = save_policy(trainer, tmp_path / "adapter", merge=False)
    assert (adapter / "adapter_config.json").is_file() and not (adapter / "model.safetensors").exists()
    assert json.loads((adapter / "log_history.json").read_text())[0]["loss"] == pytest.approx(logged[0]["loss"])
    reloaded = AutoPeftModelForCausalLM.from_pretrained(adapter).eval()
    with torch.no_grad():
        expected = reloaded(input_ids=ids).logits
    assert torch.allclose(expected, in_memory, atol=1e-2) and not torch.allclose(expected, base, atol=1e-2)

    merged = save_policy(trainer, tmp_path / "merged", merge=True)
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    assert not (tmp_path / "merged.tmp").exists()
    full = AutoModelForCausalLM.from_pretrained(merged).eval()
    merged_tok = AutoTokenizer.from_pretrained(merged)
    assert merged_tok.chat_template == tok.chat_template and merged_tok.eos_token == "<|im_end|>"
    assert (merged / "generation_config.json").is_file()
    with torch.no_grad():
        assert torch.allclose(full(input_ids=ids).logits, expected, atol=1e-4)


def test_train_policy_with_explicit_reference(tiny_model_dir, tmp_path):
    """The run's entry point: pi_t from a folder, an explicit reference, sppo_single, gradient checkpointing, a saved
    full checkpoint."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / "policy"
    metrics = train_policy(tiny_model_dir, pairs(), config(tmp_path, loss_type="sppo_single", gradient_checkpointing=True),
                           ref_model=tiny_model_dir, output_dir=out, merge=True)
    assert len(metrics["loss_history"]) == 8 and metrics["train_loss"] > 0
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() > 0


def test_bad_input_fails_early(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="disagree"):
        config(tmp_path, eta=10.0, beta=0.5)
    with pytest.raises(ValueError, match="loss_type='kto'"):
        config(tmp_path, loss_type="kto")
    no_win = pairs().remove_columns(["chosen_probs_win"])
    with pytest.raises(ValueError, match="no column 'chosen_probs_win'"):
        SPPOTrainer(str(tiny_model_dir), args=config(tmp_path), train_dataset=no_win)
    bad = pairs().map(lambda r: {"chosen_probs_lose": 1.5})
    with pytest.raises(ValueError, match="chosen_probs_lose.*\\[0, 1\\]"):
        SPPOTrainer(str(tiny_model_dir), args=config(tmp_path), train_dataset=bad)
    with pytest.raises(ValueError, match="no column 'init_chosen_logps'"):
        SPPOTrainer(str(tiny_model_dir), args=config(tmp_path, loss_type="inpo", eta=2.0), train_dataset=pairs())
    with pytest.raises(ValueError, match="does not exist"):
        train_policy(tmp_path / "nope", pairs(), config(tmp_path))
    # dpo/ipo keep DPO's beta; sppo losses turn eta into beta = 1/eta
    assert config(tmp_path, loss_type="dpo").beta == 0.1
    assert config(tmp_path, eta=None, beta=0.001).eta == pytest.approx(1000.0)


@pytest.mark.slow
def test_smollm2_lora_sppo_steps(smollm2_dir, tmp_path):
    """The real SmolLM2-135M-Instruct: two LoRA SPPO steps with the adapter-disabled base as reference, merged save."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    args = config(tmp_path, max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3, max_length=64)
    trainer = SPPOTrainer(str(smollm2_dir), args=args, train_dataset=pairs(2), peft_config=lora)
    trainer.train()
    logged = [r for r in trainer.state.log_history if "loss" in r]
    assert len(logged) == 2 and logged[0]["loss"] == pytest.approx(1.0, rel=1e-3)  # zero log-ratios at step 1
    assert logged[1]["logratios/chosen"] != 0.0
    out = save_policy(trainer, tmp_path / "smollm2-sppo", merge=True)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert tok.eos_token == "<|im_end|>" and tok.chat_template and model.config.model_type == "llama"


def test_cli_train_lora_merge(tiny_model_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from sppo_hub.cli import main

    data = tmp_path / "pairs.parquet"
    pairs().to_parquet(str(data))
    out = tmp_path / "policy"
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out), "--loss", "sppo",
            "--eta", "5", "--lora", "--merge", "--lr", "1e-2", "--max-steps", "3", "--batch-size", "4", "--optim",
            "adamw_torch"]
    assert main(argv) == 0
    assert "over 3 steps" in capsys.readouterr().out
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() > 0
    assert not (tmp_path / "policy.trainer").exists()
    assert main([*argv[:-8], "--beta", "0.5"]) == 2  # eta 5 vs beta 0.5
    assert "disagree" in capsys.readouterr().err
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(tmp_path / "missing.parquet"),
                 "--out", str(out)]) == 2
    assert "--data" in capsys.readouterr().err


def test_inpo_with_initial_logps(tiny_model_dir, tmp_path):
    """INPO: pi_0 log-probs added as columns; with pi_0 = pi_t the loss starts at (0 - eta/2)^2 and the margin grows."""
    data = add_initial_logps(str(tiny_model_dir), pairs(), config(tmp_path))
    assert {"init_chosen_logps", "init_rejected_logps"} <= set(data.column_names)
    assert all(v < 0 for v in data["init_chosen_logps"])
    trainer = SPPOTrainer(str(tiny_model_dir), args=config(tmp_path, loss_type="inpo", eta=2.0, tau=0.25),
                          train_dataset=data)
    trainer.train()
    logged = [r for r in trainer.state.log_history if "loss" in r]
    assert logged[0]["loss"] == pytest.approx(1.0, rel=1e-4)
    assert logged[-1]["rewards/margins"] > 0 and logged[-1]["loss"] < logged[0]["loss"]


def _single_pairs() -> list[Dataset]:
    """One pair per dataset, chosen and rejected of clearly different lengths (so per-token != summed)."""
    rows = [("echo 1", "Sure.", "Well, well, well, that is a long and winding answer to give."),
            ("echo 2", "A reply that goes on and on for quite a few more tokens than the other.", "No.")]
    return [Dataset.from_list([dict(prompt=[{"role": "user", "content": p}],
                                    chosen=[{"role": "assistant", "content": c}],
                                    rejected=[{"role": "assistant", "content": r}])]) for p, c, r in rows]


def test_ipo_both_forms_match_trl(tiny_model_dir, tmp_path):
    """Same policy, reference and pair: ipo_reduction='mean' gives TRL 1.16 DPOTrainer's own ipo loss; 'sum' gives
    eq. 17 on the summed log-ratios TRL reports for that pair (rewards/margins / beta)."""
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from sppo_hub.testing import build_tiny_llama

    ref_dir = build_tiny_llama(tmp_path / "ref", seed=1)  # a reference that differs from the policy
    common = dict(per_device_eval_batch_size=1, report_to="none", use_cpu=True, disable_tqdm=True, beta=0.5)

    def trainer(cls, cfg, data):
        return cls(AutoModelForCausalLM.from_pretrained(tiny_model_dir), ref_model=AutoModelForCausalLM.from_pretrained(
            ref_dir), args=cfg, train_dataset=data)

    for data in _single_pairs():
        # bf16=False: TRL's default would turn CPU bf16 autocast on (the surprise SPPOConfig avoids)
        trl = trainer(DPOTrainer, DPOConfig(output_dir=str(tmp_path / "trl"), loss_type="ipo", bf16=False, **common), data)
        trl_metrics = trl.evaluate(data)
        mean = trainer(SPPOTrainer, config(tmp_path, loss_type="ipo", **common), data).evaluate(data)
        summed = trainer(SPPOTrainer, config(tmp_path, loss_type="ipo", ipo_reduction="sum", **common), data).evaluate(data)
        assert mean["eval_loss"] == pytest.approx(trl_metrics["eval_loss"], rel=1e-5)
        margin = trl_metrics["eval_rewards/margins"] / 0.5  # summed chosen minus rejected log-ratio
        assert summed["eval_loss"] == pytest.approx((margin - 1 / (2 * 0.5)) ** 2, rel=1e-4)
        assert abs(summed["eval_loss"] - mean["eval_loss"]) > 1e-3  # the two forms really differ on this pair
    with pytest.raises(ValueError, match="ipo_reduction"):
        config(tmp_path, loss_type="ipo", ipo_reduction="token")


def test_dtypes_follow_hardware_and_base(tiny_model_dir, tmp_path):
    """CPU: bf16 off (TRL's default would be on), fp32 weights while training, the bf16 base's dtype on disk."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sppo_hub.train.precision import training_dtypes

    assert SPPOConfig(output_dir=str(tmp_path), use_cpu=True).bf16 is False
    assert SPPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=True).bf16 is True  # asked for: kept
    cpu = config(tmp_path)
    assert training_dtypes(cpu, torch.bfloat16) == (torch.float32, torch.bfloat16)
    assert training_dtypes(config(tmp_path, save_dtype="float32"), torch.bfloat16) == (torch.float32, torch.float32)
    gpu_like = config(tmp_path, bf16=True)  # the config a bf16 GPU gets by default
    assert training_dtypes(gpu_like, torch.bfloat16) == (torch.bfloat16, torch.bfloat16)
    assert training_dtypes(gpu_like, torch.float32) == (torch.float32, torch.float32)  # autocast over fp32 weights

    base = tmp_path / "bf16-base"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(base)
    out = tmp_path / "policy"
    metrics = train_policy(base, pairs(), config(tmp_path, max_steps=2), output_dir=out)
    assert metrics["loss_history"]
    saved = AutoModelForCausalLM.from_pretrained(out, dtype="auto")
    assert saved.dtype == torch.bfloat16
    kept = train_policy(base, pairs(), config(tmp_path, max_steps=1, save_dtype="float32"), output_dir=tmp_path / "p32")
    assert kept and AutoModelForCausalLM.from_pretrained(tmp_path / "p32", dtype="auto").dtype == torch.float32


def test_null_nan_and_corrupt_checkpoint_are_clear_errors(tiny_model_dir, tmp_path):
    import shutil

    nan = pairs().map(lambda r, i: {"chosen_probs_win": float("nan") if i == 2 else r["chosen_probs_win"]},
                      with_indices=True)
    with pytest.raises(ValueError, match="column 'chosen_probs_win' is null or NaN in 1 of 4 rows \\(first: row 2\\)"):
        SPPOTrainer(str(tiny_model_dir), args=config(tmp_path), train_dataset=nan)
    rows = pairs().to_list()
    rows[1]["rejected"] = None
    with pytest.raises(ValueError, match="column 'rejected' is null"):
        SPPOTrainer(str(tiny_model_dir), args=config(tmp_path), train_dataset=Dataset.from_list(rows))
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes((broken / "model.safetensors").read_bytes()[:512])
    with pytest.raises(ValueError, match="weights cannot be read.*corrupt"):
        train_policy(broken, pairs(), config(tmp_path))
