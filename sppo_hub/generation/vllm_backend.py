"""Generation with vLLM (GPU): `LLM(...).chat(...)` with `SamplingParams(n=K, seed=...)`.

The argument mapping is a pair of pure functions (`vllm_llm_kwargs`, `vllm_sampling_kwargs`) so it can
be checked without a GPU. vLLM applies the model's own chat template (`add_generation_prompt=True`)
and stops on the end-of-turn ids read from the tokenizer / generation config.

Data parallelism: one process per GPU group, each running `--shard i/n` with its own
`CUDA_VISIBLE_DEVICES` (`data_parallel_plan` computes them; `sppo-hub generate --data-parallel n`
launches them and merges), and `tensor_parallel_size` GPUs inside each process.
"""

from __future__ import annotations

from .base import Generator, SamplingConfig, resolve_model_source, to_messages

INSTALL_HINT = "the vllm backend needs vLLM (GPU only): pip install 'sppo-hub[vllm]'"


def import_vllm():
    """`vllm` module, or an ImportError naming the extra to install."""
    try:
        import vllm
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} (import failed: {err})") from None
    return vllm


def vllm_llm_kwargs(model: str, sampling: SamplingConfig, tensor_parallel_size: int = 1, dtype: str = "auto",
                    revision: str | None = None, gpu_memory_utilization: float = 0.9,
                    max_model_len: int | None = None, trust_remote_code: bool = False, **extra) -> dict:
    """Keyword arguments of `vllm.LLM` for this run."""
    if int(tensor_parallel_size) < 1:
        raise ValueError(f"tensor_parallel_size: must be >= 1, got {tensor_parallel_size}")
    if not 0 < float(gpu_memory_utilization) <= 1:
        raise ValueError(f"gpu_memory_utilization: must be in (0, 1], got {gpu_memory_utilization}")
    kwargs = dict(model=str(model), tensor_parallel_size=int(tensor_parallel_size), dtype=dtype,
                  seed=int(sampling.seed), gpu_memory_utilization=float(gpu_memory_utilization),
                  trust_remote_code=bool(trust_remote_code))
    if revision is not None:
        kwargs["revision"] = revision
    if max_model_len is not None:
        kwargs["max_model_len"] = int(max_model_len)
    kwargs.update(extra)
    return kwargs


def vllm_sampling_kwargs(sampling: SamplingConfig, stop_token_ids: list[int] | None = None) -> list[dict]:
    """Keyword arguments of each `vllm.SamplingParams` per prompt.

    One dict with n=K and the base seed, or (per_sample_seeds) K dicts with n=1 and seeds
    seed + k * seed_stride, the paper's 0, 50, ..., 200 scheme.
    """
    common = dict(temperature=float(sampling.temperature), max_tokens=int(sampling.max_new_tokens))
    if sampling.do_sample:
        common["top_p"] = float(sampling.top_p)
    if stop_token_ids:
        common["stop_token_ids"] = [int(t) for t in stop_token_ids]
    if sampling.per_sample_seeds:
        return [dict(n=1, seed=seed, **common) for seed in sampling.sample_seeds]
    return [dict(n=int(sampling.num_samples), seed=int(sampling.seed), **common)]


def data_parallel_plan(num_processes: int, tensor_parallel_size: int = 1,
                       visible_devices: list[str] | None = None) -> list[tuple[str, str]]:
    """[(shard "i/n", CUDA_VISIBLE_DEVICES), ...]: process i gets GPUs i*tp .. (i+1)*tp-1."""
    n, tp = int(num_processes), int(tensor_parallel_size)
    if n < 1 or tp < 1:
        raise ValueError(f"data_parallel: need num_processes >= 1 and tensor_parallel_size >= 1, got {n}, {tp}")
    devices = visible_devices if visible_devices is not None else [str(i) for i in range(n * tp)]
    if len(devices) < n * tp:
        raise ValueError(
            f"data_parallel: {n} processes x tensor_parallel_size {tp} need {n * tp} GPUs, "
            f"only {len(devices)} visible; lower --data-parallel or --tensor-parallel-size"
        )
    return [(f"{i}/{n}", ",".join(devices[i * tp : (i + 1) * tp])) for i in range(n)]


class VLLMGenerator(Generator):
    """K samples per prompt with vLLM's offline `LLM.chat`."""

    def __init__(self, model: str, sampling: SamplingConfig, tensor_parallel_size: int = 1, dtype: str = "auto",
                 revision: str | None = None, trust_remote_code: bool = False, show_progress: bool = True,
                 **llm_kwargs):
        super().__init__(sampling)
        vllm = import_vllm()
        self.model_id = self.name = str(model)
        kwargs = vllm_llm_kwargs(resolve_model_source(model), sampling, tensor_parallel_size, dtype, revision,
                                 trust_remote_code=trust_remote_code, **llm_kwargs)
        self.llm = vllm.LLM(**kwargs)
        tokenizer = self.llm.get_tokenizer()
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"model: the tokenizer of {model!r} has no chat template; use a chat/instruct model")
        from .transformers_backend import stop_token_ids

        try:
            from transformers import GenerationConfig

            gen_config = GenerationConfig.from_pretrained(kwargs["model"], revision=revision)
        except OSError:
            gen_config = None
        self.params = [vllm.SamplingParams(**kw) for kw in
                       vllm_sampling_kwargs(sampling, stop_token_ids(tokenizer, gen_config))]
        self.show_progress = show_progress

    def generate(self, prompts: list, seed_offset: int = 0) -> list[list[str]]:
        conversations = [to_messages(p) for p in prompts]
        # One request per (prompt, seed pass): K requests of n=1 with per-sample seeds, or one of n=K.
        requests = [c for c in conversations for _ in self.params]
        params = [p for _ in conversations for p in self.params]
        outputs = self.llm.chat(requests, sampling_params=params, add_generation_prompt=True,
                                use_tqdm=self.show_progress)
        results: list[list[str]] = [[] for _ in prompts]
        for r, out in enumerate(outputs):
            results[r // len(self.params)].extend(o.text for o in out.outputs)
        return results
