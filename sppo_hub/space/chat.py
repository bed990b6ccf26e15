"""The Space's chat side: a chat model sampling n answers (and saying which a limit cut), the judge's view of a
conversation, and the ranking of candidates by win rate. Used by `sppo_hub.space.app`.
"""

from __future__ import annotations

import numpy as np

from ..judges import PairwiseJudge
from ..core.preference import pairwise_probabilities, win_rates


def _reason(err: BaseException, limit: int = 600) -> str:
    """An exception as one whole line for the user: type and message, shortened at a word boundary if long."""
    text = " ".join(str(err).split()) or "no details"
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(err).__name__}: {text}"


def _message_text(content) -> str:
    """Gradio 6 chat messages carry a list of parts; models want plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("value") or "")
    return "".join(_message_text(part) for part in content or [])


def judge_prompt(messages: list[dict]) -> str:
    """The judge's view of a conversation: the last user message, prefixed by earlier turns if any."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def rank_candidates(judge: PairwiseJudge, prompt: str, candidates: list[str]) -> np.ndarray:
    """Win rate of each candidate against the others (P(y_i > pi | x) over the n samples)."""
    if len(candidates) == 1:
        return np.ones(1)
    table = judge.pairwise_tables([prompt], [candidates])[0]
    return win_rates(pairwise_probabilities(table, kind=judge.output_kind))


class ChatModel:
    """A chat model loaded once (through `sppo_hub.generation`), sampling n answers to a conversation.

    Each request samples with its own `SamplingConfig` on a shallow copy of the generator (model and
    tokenizer shared), so concurrent requests never change each other's settings. The wall-clock limit
    is the model's `generation_config.max_time` (transformers' MaxTimeCriteria), the same for every request.
    """

    def __init__(self, name: str, revision: str | None = None, device: str | None = None,
                 max_time: float | None = None):
        from ..generation import SamplingConfig
        from ..generation.transformers_backend import TransformersGenerator

        self.name = name
        self.generator = TransformersGenerator(name, SamplingConfig(num_samples=1), device=device, revision=revision,
                                               show_progress=False)
        self.tokenizer = self.generator.tokenizer
        self.generator.model.generation_config.max_time = max_time

    def fit_history(self, messages: list[dict], max_tokens: int) -> tuple[list[dict], int]:
        """Drop the oldest turns until the prompt fits `max_tokens`; (kept messages, turns dropped)."""
        dropped = 0
        while True:
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                     return_dict=True)["input_ids"]
            if len(ids) <= max_tokens or len(messages) <= 1:
                return messages, dropped
            messages, dropped = messages[2:] if len(messages) > 2 else messages[1:], dropped + 1

    def sample(self, messages: list[dict], n: int, temperature: float, max_new_tokens: int,
               top_p: float = 0.9) -> list[str]:
        return self.sample_with_cuts(messages, n, temperature, max_new_tokens, top_p)[0]

    def sample_with_cuts(self, messages: list[dict], n: int, temperature: float, max_new_tokens: int,
                         top_p: float = 0.9) -> tuple[list[str], list[str]]:
        """n answers and, per answer, why it may be cut: "time limit", "max new tokens" or "" (ended by itself)."""
        import copy
        import random
        import time

        from ..generation import SamplingConfig

        generator = copy.copy(self.generator)
        generator.sampling = SamplingConfig(num_samples=n, temperature=temperature, top_p=top_p,
                                            max_new_tokens=max_new_tokens, seed=random.randrange(2**31))
        started = time.perf_counter()
        texts = [text.strip() for text in generator.generate([messages])[0]]
        elapsed = time.perf_counter() - started
        max_time = self.generator.model.generation_config.max_time
        cuts = []
        for text in texts:
            # an answer that stopped on its own ended with the (skipped) end-of-turn token before the cap
            n_tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if n_tokens >= max_new_tokens - 1:
                cuts.append("max new tokens")
            elif max_time and elapsed >= max_time:
                cuts.append("time limit")
            else:
                cuts.append("")
        return texts, cuts
