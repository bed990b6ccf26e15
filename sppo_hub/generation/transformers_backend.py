"""Generation with `transformers`: batched `generate` (left padding, length-sorted batches, KV cache).

Prompts are rendered with the model's own chat template (`add_generation_prompt=True`) and decoding
stops on the end-of-turn token(s): the generation config's and the tokenizer's eos (e.g. `<|im_end|>`).
Each batch is seeded from (seed, first prompt id of the chunk, batch position, sample index), so
results do not depend on which chunks ran before (sharding and resume draw the same samples).
"""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from .base import Generator, SamplingConfig, resolve_model_source, to_messages


def load_tokenizer(model: str, revision: str | None = None, trust_remote_code: bool = False):
    """The model's tokenizer with left padding; an error naming the fix if it has no chat template."""
    from transformers import AutoTokenizer

    source = resolve_model_source(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as err:
        raise FileNotFoundError(f"model: cannot load a tokenizer from {source!r} ({err})") from None
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"model: the tokenizer of {source!r} has no chat template; use a chat/instruct model or set "
            "tokenizer.chat_template (and save it) before generating"
        )
    tokenizer.padding_side = "left"  # decoder-only batched generation needs the prompt flush right
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """End-of-turn ids: the generation config's eos (int or list) plus the tokenizer's eos."""
    ids: list[int] = []
    eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    for value in ([eos] if isinstance(eos, int) else list(eos or [])) + [tokenizer.eos_token_id]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    if not ids:
        raise ValueError("model: neither the tokenizer nor the generation config defines an eos token to stop on")
    return ids


def render_prompts(tokenizer, prompts: list) -> list[list[int]]:
    """Token ids of each prompt rendered with the chat template and the assistant header."""
    texts = [tokenizer.apply_chat_template(to_messages(p), add_generation_prompt=True, tokenize=False)
             for p in prompts]
    # The template already wrote any special tokens (bos, headers): add none twice.
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


class TransformersGenerator(Generator):
    """K samples per prompt with `model.generate`, on CPU or GPU."""

    def __init__(self, model, sampling: SamplingConfig, device: str | None = None, dtype: str = "auto",
                 revision: str | None = None, trust_remote_code: bool = False, show_progress: bool = True):
        super().__init__(sampling)
        import torch
        from transformers import AutoModelForCausalLM

        self.model_id = self.name = str(model)
        self.tokenizer = load_tokenizer(self.model_id, revision, trust_remote_code)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch_dtype = {"auto": torch.bfloat16 if dev.type == "cuda" else torch.float32, "float32": torch.float32,
                       "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
        if torch_dtype is None:
            raise ValueError(f"dtype: must be auto, float32, bfloat16 or float16, got {dtype!r}")
        try:
            self.model = AutoModelForCausalLM.from_pretrained(
                resolve_model_source(self.model_id), revision=revision, dtype=torch_dtype,
                trust_remote_code=trust_remote_code).to(dev)
        except OSError as err:
            raise FileNotFoundError(f"model: cannot load {self.model_id!r} ({err})") from None
        self.model.eval()
        self.device = self.model.device
        self.stop_ids = stop_token_ids(self.tokenizer, self.model.generation_config)
        self.show_progress = show_progress

    def _generation_kwargs(self) -> dict:
        s = self.sampling
        kwargs = dict(max_new_tokens=int(s.max_new_tokens), do_sample=s.do_sample, eos_token_id=self.stop_ids,
                      pad_token_id=self.tokenizer.pad_token_id, use_cache=True)
        if s.do_sample:
            kwargs.update(temperature=float(s.temperature), top_p=float(s.top_p), top_k=0)
        else:  # greedy: clear sampling knobs a model's generation_config may set
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    def generate(self, prompts: list, seed_offset: int = 0) -> list[list[str]]:
        import torch

        s = self.sampling
        ids = render_prompts(self.tokenizer, prompts)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # long first: little padding per batch
        results: list[list[str]] = [[] for _ in prompts]
        passes = [(k, seed) for k, seed in enumerate(s.sample_seeds)] if s.per_sample_seeds else [(0, int(s.seed))]
        per_pass = 1 if s.per_sample_seeds else int(s.num_samples)
        new_tokens, started = 0, time.perf_counter()
        from ..io.console import short_name

        bar = tqdm(total=len(prompts) * len(passes), desc=f"generate ({short_name(self.name)})", unit="prompt",
                   disable=not self.show_progress, leave=False)
        for k, seed in passes:
            for b, start in enumerate(range(0, len(order), int(s.batch_size))):
                batch = order[start : start + int(s.batch_size)]
                enc = self.tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt").to(self.device)
                # A seed per (base seed, chunk, batch, sample): reproducible and independent of run history.
                torch.manual_seed((seed * 1_000_003 + seed_offset * 7919 + b * 104_729 + k) % (2**63))
                with torch.inference_mode():
                    out = self.model.generate(**enc, num_return_sequences=per_pass, **self._generation_kwargs())
                gen = out[:, enc["input_ids"].shape[1]:].cpu()
                texts = self.tokenizer.batch_decode(gen, skip_special_tokens=True)
                new_tokens += int(sum(self._length(row) for row in gen))
                for n, i in enumerate(batch):
                    results[i].extend(texts[n * per_pass : (n + 1) * per_pass])
                bar.update(len(batch))
                bar.set_postfix(tokens_per_s=f"{new_tokens / max(time.perf_counter() - started, 1e-9):.1f}")
        bar.close()
        return results

    def _length(self, row) -> int:
        """Generated tokens up to and including the first stop token (padding after it excluded)."""
        for n, token in enumerate(row.tolist()):
            if token in self.stop_ids:
                return n + 1
        return len(row)
