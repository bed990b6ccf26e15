import subprocess
import sys

from transformers import AutoModelForCausalLM, AutoTokenizer


def test_tiny_model_reloads_with_auto_classes(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "llama"
    assert tokenizer.eos_token == "<|im_end|>"
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "echo 12 345"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt.endswith("<|im_start|>assistant\n")
    # digits survive an encode/decode round trip on reload
    assert tokenizer.decode(tokenizer("echo 12 345")["input_ids"]) == "echo 12 345"
    size = sum(p.stat().st_size for p in tiny_model_dir.iterdir())
    assert size < 1_000_000


def test_cli_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "sppo_hub", "--help"], capture_output=True, text=True, check=True
    )
    assert "Self-Play Preference Optimization" in out.stdout
