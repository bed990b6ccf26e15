"""LLM-as-judge: any chat model compares two responses; P comes from its verdict-token log-probs.

The judge is shown "response A" and "response B" and asked to answer with one letter. Its raw
verdict for "i first, j second" is the log-odds log p("A") - log p("B") of the next token, so the
table holds logits (`output_kind = "logits"`); both orders are scored, and
`preference.pairwise_probabilities` cancels the position bias.

Two ways to run the judge model:
- local (`model=` folder or Hub repo id): one forward pass per ordered pair, batched with left
  padding, reading only the last position's logits (no generation);
- an OpenAI-compatible endpoint (`base_url=`): one chat completion with `max_tokens=1` and
  `top_logprobs` per pair, concurrent requests; the `openai` client's own retries (exponential
  backoff with jitter, honouring Retry-After) and timeout, then one clear error.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm.auto import tqdm

from .base import JudgeConfig, PairwiseJudge, resolve_device_and_dtype, validate_judge_inputs

DEFAULT_TEMPLATE = (
    "Which response answers the user's instruction better? Judge helpfulness, correctness and clarity.\n\n"
    "[Instruction]\n{prompt}\n\n[Response A]\n{response_a}\n\n[Response B]\n{response_b}\n\n"
    "Answer with a single letter, A or B."
)
VERDICTS = ("A", "B")
_MISSING_LOGPROB = -30.0  # a verdict absent from the endpoint's top log-probs


def load_template(template: str | None) -> str:
    """The judge prompt: None -> built-in; a file path -> its text; else the string itself."""
    if template is None:
        return DEFAULT_TEMPLATE
    if os.path.isfile(template):
        with open(template, encoding="utf-8") as f:
            template = f.read()
    for key in ("{prompt}", "{response_a}", "{response_b}"):
        if key not in template:
            raise ValueError(f"judge.judge_template: the template must contain {key}")
    return template


def _common_prefix_length(sequences: list[list[int]]) -> int:
    """Tokens every sequence starts with, leaving each at least one token of its own."""
    limit = min(len(s) for s in sequences) - 1
    n = 0
    while n < limit and all(s[n] == sequences[0][n] for s in sequences):
        n += 1
    return n


class LLMJudge(PairwiseJudge):
    """Pairwise verdicts of a chat model, local (transformers) or behind an OpenAI-compatible API."""

    output_kind = "logits"

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key_env: str | None = None,
                 template: str | None = None, batch_size: int = 8, max_length: int | None = 1024,
                 device: str | None = None, dtype: str = "auto", revision: str | None = None,
                 max_retries: int = 5, timeout: float = 60.0, name: str | None = None,
                 show_progress: bool = True, trust_remote_code: bool = False, share_prefix: bool = True):
        if not model:
            raise ValueError("judge.model: the LLM judge needs a model (local folder, Hub id, or the endpoint's model name)")
        self.model_id = str(model)
        self.template = load_template(template)
        self.batch_size = int(batch_size)
        self.max_length = max_length
        self.base_url = base_url
        self.max_retries, self.timeout = int(max_retries), float(timeout)
        if self.max_retries < 0 or self.timeout <= 0:
            raise ValueError(f"judge: max_retries={max_retries} must be >= 0 and timeout={timeout} > 0 seconds")
        self.name = name or f"llm:{self.model_id}"
        self.show_progress = show_progress
        self.share_prefix = share_prefix
        self._warned_truncation = False
        if base_url:
            self._client = self._make_client(base_url, api_key_env)
        else:
            self._load_local(device, dtype, revision, trust_remote_code)

    @classmethod
    def from_config(cls, config: JudgeConfig) -> "LLMJudge":
        return cls(model=config.model, base_url=config.base_url, api_key_env=config.api_key_env,
                   template=config.judge_template, batch_size=config.batch_size,
                   max_length=config.max_length or 1024, device=config.device, dtype=config.dtype,
                   revision=config.revision, trust_remote_code=config.trust_remote_code, **config.extra)

    # -- building the judge prompt ----------------------------------------------------------
    def messages(self, prompt: str, response_a: str, response_b: str) -> list[dict]:
        return [{"role": "user", "content": self.template.format(prompt=prompt, response_a=response_a,
                                                                  response_b=response_b)}]

    # -- local model ------------------------------------------------------------------------
    def _load_local(self, device, dtype, revision, trust_remote_code) -> None:
        from transformers import AutoModelForCausalLM

        from ..generation.transformers_backend import load_tokenizer

        self.tokenizer = load_tokenizer(self.model_id, revision, trust_remote_code)
        dev, torch_dtype = resolve_device_and_dtype(device, dtype)
        try:
            self.model = AutoModelForCausalLM.from_pretrained(self.model_id, revision=revision, dtype=torch_dtype,
                                                              trust_remote_code=trust_remote_code).to(dev).eval()
        except OSError as err:
            raise FileNotFoundError(f"judge.model: cannot load {self.model_id!r} ({err})") from None
        self.verdict_ids = [self._verdict_token_ids(v) for v in VERDICTS]

    def _verdict_token_ids(self, letter: str) -> list[int]:
        """Single-token spellings of a verdict ("A", " A"); their probabilities are summed."""
        ids = []
        for text in (letter, " " + letter):
            tokens = self.tokenizer.encode(text, add_special_tokens=False)
            if len(tokens) == 1 and tokens[0] not in ids:
                ids.append(tokens[0])
        if not ids:
            raise ValueError(f"judge.model: the tokenizer of {self.model_id!r} has no single token for {letter!r}")
        return ids

    def _truncate(self, text: str, limit: int) -> str:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) <= limit:
            return text
        if not self._warned_truncation:
            warnings.warn(f"{self.name}: inputs longer than max_length={self.max_length} tokens are truncated "
                          "(the prompt first, then each response at its end)", stacklevel=3)
            self._warned_truncation = True
        return self.tokenizer.decode(ids[:limit])

    def _encode_local(self, prompt: str, a: str, b: str) -> list[int]:
        if self.max_length:
            # Budget like PairRM: the prompt is cut first (keeping room for 16 tokens per response), then
            # the responses share what is left of max_length after the chat and judge templates.
            fixed = len(self._render("", "", "")) + 4
            room = int(self.max_length) - fixed - 32
            if room < 1:
                raise ValueError(f"judge.max_length: {self.max_length} tokens cannot hold the judge template "
                                 f"({fixed} tokens) and two responses; raise max_length")
            prompt = self._truncate(prompt, room)
            limit = max((int(self.max_length) - len(self._render(prompt, "", "")) - 4) // 2, 1)
            a, b = self._truncate(a, limit), self._truncate(b, limit)
        return self._render(prompt, a, b)

    def _render(self, prompt: str, a: str, b: str) -> list[int]:
        text = self.tokenizer.apply_chat_template(self.messages(prompt, a, b), add_generation_prompt=True,
                                                  tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _local_scores(self, jobs: list[tuple[str, str, str]], bar) -> list[float]:
        """One forward pass per pair; with `share_prefix`, a prompt's pairs reuse the KV cache of the
        tokens they all start with (chat header, judge instructions, the prompt) instead of recomputing it."""
        encoded = [self._encode_local(*job) for job in jobs]
        scores = [0.0] * len(jobs)
        plain: list[int] = []
        groups: dict[str, list[int]] = {}
        for n, job in enumerate(jobs):
            groups.setdefault(job[0], []).append(n)
        for members in groups.values():
            prefix = _common_prefix_length([encoded[n] for n in members]) if self.share_prefix else 0
            if len(members) < 2 or prefix < 8:
                plain.extend(members)
                continue
            for n, value in zip(members, self._prefix_scores(encoded[members[0]][:prefix],
                                                             [encoded[n][prefix:] for n in members])):
                scores[n] = value
            bar.update(len(members))
        order = sorted(plain, key=lambda i: -len(encoded[i]))  # similar lengths share a batch
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            for n, value in zip(batch, self._batch_scores([encoded[i] for i in batch])):
                scores[n] = value
            bar.update(len(batch))
        return scores

    def _batch_scores(self, ids: list[list[int]], prefix_cache=None, prefix_len: int = 0) -> list[float]:
        """log p(A) - log p(B) after each (left-padded) sequence, optionally continuing a cached prefix."""
        import torch

        enc = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        device = self.model.device
        mask = enc["attention_mask"].to(device)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0) + prefix_len  # left padding: count real tokens only
        kwargs = {}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(ids))
            mask = torch.cat([torch.ones(len(ids), prefix_len, dtype=mask.dtype, device=device), mask], dim=1)
            kwargs["past_key_values"] = cache
        with torch.inference_mode():
            logits = self.model(input_ids=enc["input_ids"].to(device), attention_mask=mask,
                                position_ids=position_ids, logits_to_keep=1, **kwargs).logits[:, -1, :].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        a = torch.logsumexp(logprobs[:, self.verdict_ids[0]], dim=-1)
        b = torch.logsumexp(logprobs[:, self.verdict_ids[1]], dim=-1)
        return (a - b).tolist()

    def _prefix_scores(self, prefix: list[int], suffixes: list[list[int]]) -> list[float]:
        import torch

        with torch.inference_mode():
            cache = self.model(input_ids=torch.tensor([prefix], device=self.model.device),
                               use_cache=True).past_key_values
        order = sorted(range(len(suffixes)), key=lambda i: -len(suffixes[i]))
        scores = [0.0] * len(suffixes)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            for n, value in zip(batch, self._batch_scores([suffixes[i] for i in batch], cache, len(prefix))):
                scores[n] = value
        return scores

    # -- OpenAI-compatible endpoint ---------------------------------------------------------
    def _make_client(self, base_url: str, api_key_env: str | None):
        try:
            from openai import OpenAI
        except ImportError as err:
            raise ImportError(f"the endpoint LLM judge needs openai: pip install 'sppo-hub[eval]' ({err})") from None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise ValueError(f"judge.api_key_env: environment variable {api_key_env} is not set; export it first")
        else:
            key = "EMPTY"  # local servers (vLLM, llama.cpp) accept any key
        # The client retries connection errors, timeouts, 408/409/429 and 5xx itself (exponential
        # backoff with jitter, Retry-After honoured); other 4xx answers are not retried.
        return OpenAI(base_url=base_url, api_key=key, max_retries=self.max_retries, timeout=self.timeout)

    def _endpoint_score(self, job: tuple[str, str, str]) -> float:
        import openai

        try:
            reply = self._client.chat.completions.create(
                model=self.model_id, messages=self.messages(*job), max_tokens=1, temperature=0.0,
                logprobs=True, top_logprobs=20)
        except openai.APIStatusError as err:
            if err.status_code in (408, 409, 429) or err.status_code >= 500:  # still failing after the retries
                raise self._unavailable(err) from None
            raise RuntimeError(f"{self.name}: the endpoint {self.base_url} refused the request "
                               f"({type(err).__name__}: {err})") from None
        except (openai.APIConnectionError, openai.APITimeoutError) as err:
            raise self._unavailable(err) from None
        return self._score_from_logprobs(reply.choices[0].logprobs.content[0].top_logprobs)

    def _unavailable(self, err: Exception) -> RuntimeError:
        return RuntimeError(
            f"{self.name}: the endpoint {self.base_url} failed {self.max_retries + 1} times "
            f"({type(err).__name__}: {err}); check that the server is running and serves model {self.model_id!r}"
        )

    @staticmethod
    def _score_from_logprobs(top_logprobs) -> float:
        """log p(A) - log p(B) from the first token's top log-probs (variants like " A" summed)."""
        mass = {v: [] for v in VERDICTS}
        for entry in top_logprobs:
            token = entry.token.strip()
            if token in mass:
                mass[token].append(entry.logprob)
        a, b = (np.logaddexp.reduce(mass[v]) if mass[v] else _MISSING_LOGPROB for v in VERDICTS)
        return float(a - b)

    # -- the interface ----------------------------------------------------------------------
    def pairwise_tables(self, prompts: list[str], responses: list[list[str]]) -> list[np.ndarray]:
        validate_judge_inputs(prompts, responses)
        index = [(p, i, j) for p, cands in enumerate(responses) for i in range(len(cands))
                 for j in range(len(cands)) if i != j]
        jobs = [(prompts[p], responses[p][i], responses[p][j]) for p, i, j in index]
        with tqdm(total=len(jobs), desc=f"judging ({self.name})", unit="pair", disable=not self.show_progress,
                  leave=False) as bar:
            if self.base_url:
                with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
                    scores = []
                    for score in pool.map(self._endpoint_score, jobs):
                        scores.append(score)
                        bar.update(1)
            else:
                scores = self._local_scores(jobs, bar)
        tables = [np.zeros((len(c), len(c)), dtype=np.float64) for c in responses]
        for (p, i, j), score in zip(index, scores):
            if not math.isfinite(score):
                raise RuntimeError(f"{self.name}: non-finite verdict for prompt {p}, pair ({i}, {j})")
            tables[p][i, j] = score
        return tables
