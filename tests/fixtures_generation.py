"""Fixtures for generation and judging tests: tiny models whose greedy output depends on the prompt, and one
whose head size vLLM's CPU attention accepts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def _rebuild(src: Path, dst: Path, seed: int, init_range: float, tie: bool = True):
    import torch
    from transformers import AutoConfig, GenerationConfig, LlamaForCausalLM

    shutil.copytree(src, dst, dirs_exist_ok=True)
    config = AutoConfig.from_pretrained(src)
    config.initializer_range = init_range
    config.tie_word_embeddings = tie
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig.from_pretrained(src)
    return model


@pytest.fixture(scope="session")
def sharp_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny chat model re-initialised with larger weights (init range 0.3): its greedy continuations
    differ from prompt to prompt, so batching and padding bugs show up (the 0.02 default emits one token)."""
    dst = tmp_path_factory.mktemp("models") / "sharp-llama"
    _rebuild(tiny_model_dir, dst, seed=1, init_range=0.3).save_pretrained(dst)
    return dst


@pytest.fixture(scope="session")
def im_end_model_dir(tiny_model_dir, tmp_path_factory) -> tuple[Path, str]:
    """(model dir, prompt): untied head whose <|im_end|> row is a scaled copy of the row of the token the
    greedy answer to `prompt` emits at step 3, so greedy decoding reaches <|im_end|> within 3 steps."""
    import torch
    from transformers import AutoTokenizer

    dst = tmp_path_factory.mktemp("models") / "im-end-llama"
    model = _rebuild(tiny_model_dir, dst, seed=1, init_range=0.3, tie=False)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = "Write a poem about the sea"
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id)
        target = int(out[0, ids.shape[1] + 2])
        im_end = tok.convert_tokens_to_ids("<|im_end|>")
        model.lm_head.weight[im_end] = model.lm_head.weight[target] * 4.0
    model.save_pretrained(dst)
    return dst, prompt


@pytest.fixture(scope="session")
def vllm_tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny chat model with hidden size 128 (4 heads of 32): vLLM's CPU attention supports head sizes
    32, 64, 80, ... only (the default tiny model's 16 is refused) and max_model_len <= its 512 positions."""
    from sppo_hub.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama-128", seed=0, hidden_size=128)
