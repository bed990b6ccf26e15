"""`make_generator`: the generator of a backend (transformers, vLLM) for a model, or of a run's averaged policy.

A run folder or a `mixture.json` (`mixture.MixturePolicy`) gives a `MixtureGenerator`: each response is drawn
from one iterate, picked with its weight, whose own generator `make_generator` builds on demand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from .base import BACKENDS, Generator, SamplingConfig
from .mixture import MixtureComponent, MixturePolicy


def make_generator(model: str, sampling: SamplingConfig, backend: str = "transformers", **kwargs) -> Generator:
    """Build the generator of `backend` for `model` (local folder or Hub repo id).

    `sampling.device` / `sampling.dtype` are the defaults of the backend's `device` / `dtype` options;
    a keyword argument given here wins.
    """
    kwargs.setdefault("dtype", sampling.dtype)
    if sampling.device is not None:
        kwargs.setdefault("device", sampling.device)
    from .mixture import is_mixture, load_mixture

    if is_mixture(model):  # a run's averaged policy (mixture.json): each response drawn from one iterate
        return MixtureGenerator(load_mixture(model), sampling, backend=backend, **kwargs)
    if backend == "transformers":
        from .transformers_backend import TransformersGenerator

        return TransformersGenerator(model, sampling, **kwargs)
    if backend == "vllm":
        from .vllm_backend import VLLMGenerator

        return VLLMGenerator(model, sampling, **kwargs)
    raise ValueError(f"backend: unknown generation backend {backend!r}; use one of {', '.join(BACKENDS)}")


class MixtureGenerator(Generator):
    """K responses per prompt from the averaged policy: each response from an iterate drawn with its weight.

    `make_component(component, sampling)` returns a generator for one iterate (default: `make_generator` on its
    model with `backend` and `generator_kwargs`); it is asked for one sample per (repeated) prompt.
    """

    name = "mixture"

    def __init__(self, mixture: MixturePolicy, sampling: SamplingConfig, backend: str = "transformers",
                 make_component: Callable[[MixtureComponent, SamplingConfig], Generator] | None = None,
                 **generator_kwargs):
        super().__init__(sampling)
        self.mixture = mixture
        self.backend = backend
        self.generator_kwargs = generator_kwargs
        self.make_component = make_component or self._default_component
        self.last_assignment: list[list[int]] = []  # iteration that drew each response, per prompt

    def _default_component(self, component: MixtureComponent, sampling: SamplingConfig) -> Generator:
        kwargs = dict(self.generator_kwargs)
        if component.revision is not None and self.backend == "transformers":
            kwargs.setdefault("revision", component.revision)
        return make_generator(component.model, sampling, backend=self.backend, **kwargs)

    def generate(self, prompts: list, seed_offset: int = 0) -> list[list[str]]:
        k = int(self.sampling.num_samples)
        rng = np.random.default_rng([int(self.sampling.seed), int(seed_offset)])
        assign = self.mixture.sample_components(len(prompts) * k, rng).reshape(len(prompts), k)
        out: list[list[str | None]] = [[None] * k for _ in prompts]
        one = SamplingConfig(**{**asdict(self.sampling), "num_samples": 1})
        for c_idx, comp in enumerate(self.mixture.components):
            slots = np.argwhere(assign == c_idx)
            if len(slots) == 0:
                continue
            gen = self.make_component(comp, one)
            texts = gen.generate([prompts[i] for i, _ in slots], seed_offset=seed_offset + 7919 * comp.iteration)
            for (i, j), resp in zip(slots, texts):
                out[i][j] = resp[0]
            del gen
        self.last_assignment = [[self.mixture.components[c].iteration for c in row] for row in assign]
        return out  # type: ignore[return-value]
