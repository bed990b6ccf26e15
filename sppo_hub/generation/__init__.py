"""Generation: K responses per prompt from the current policy (transformers or vLLM backend).

`generate_responses(model, prompts, SamplingConfig(...), backend=..., shard=..., out_dir=...)` returns a
`datasets.Dataset` with rows {prompt_id, prompt, responses, generator}. Backends import lazily.
"""

from .base import BACKENDS, GENERATED_FILE, Generator, SamplingConfig
from .factory import make_generator
from .responses import generate_responses, generations_dataset, merge_generations

__all__ = [
    "BACKENDS",
    "GENERATED_FILE",
    "Generator",
    "SamplingConfig",
    "generate_responses",
    "generations_dataset",
    "make_generator",
    "merge_generations",
]
