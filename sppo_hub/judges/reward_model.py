"""Bradley-Terry reward-model judge: P(y_i > y_j | x) = sigmoid(r(x, y_i) - r(x, y_j)).

Any `AutoModelForSequenceClassification` with a single output (num_labels=1) works: each
(prompt, response) is scored once, so a prompt with K responses costs K forward passes instead of
a pairwise judge's K(K-1). Inputs are built with the tokenizer's chat template when it has one
(user turn + assistant turn, the way reward models such as Skywork/ArmoRM are trained), else as a
text pair `tokenizer(prompt, response)` (encoder reward models such as OpenAssistant's DeBERTa).
The table is reported as probabilities and is exactly complementary (P_ij + P_ji = 1).
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm.auto import tqdm

from ..core.preference import sigmoid
from .base import JudgeConfig, PairwiseJudge, resolve_device_and_dtype, validate_judge_inputs

logger = logging.getLogger(__name__)


def encode_prompt_response(tokenizer, prompts: list[str], responses: list[str], max_length: int | None):
    """Tokenise (prompt, response) pairs: chat template when present, else text pairs.

    Returns ({"input_ids": [...], maybe "token_type_ids": [...]}, number truncated), unpadded:
    `run_batched` sorts, batches and pads.
    """
    if getattr(tokenizer, "chat_template", None):
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False
            )
            for p, r in zip(prompts, responses)
        ]
        # the template already holds any BOS/special tokens
        enc = tokenizer(texts, add_special_tokens=False)
    else:
        enc = tokenizer(list(prompts), list(responses))
    keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
    full = {k: list(enc[k]) for k in keys}
    if max_length is None:
        return full, 0
    n_trunc = sum(len(x) > max_length for x in full["input_ids"])
    cut = (lambda x: x[-max_length:]) if tokenizer.truncation_side == "left" else (lambda x: x[:max_length])
    return {k: [cut(x) for x in v] for k, v in full.items()}, n_trunc


def run_batched(model, tokenizer, enc: dict, batch_size: int, device, desc: str, forward):
    """Run `forward(model, **batch) -> (B, ...) tensor` over the encoded sequences, batched.

    Sequences are sorted by length so each batch pads little (right padding); results come
    back in input order as a numpy array.
    """
    import torch

    ids = enc["input_ids"]
    order = sorted(range(len(ids)), key=lambda k: len(ids[k]), reverse=True)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = [None] * len(ids)
    with torch.inference_mode(), tqdm(total=len(ids), desc=desc, unit="seq") as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(ids[k]) for k in idx)
            batch = {key: torch.full((len(idx), width), pad_id if key == "input_ids" else 0, dtype=torch.long) for key in enc}
            batch["attention_mask"] = torch.zeros((len(idx), width), dtype=torch.long)
            for row, k in enumerate(idx):
                n = len(ids[k])
                for key in enc:
                    batch[key][row, :n] = torch.tensor(enc[key][k])
                batch["attention_mask"][row, :n] = 1
            values = forward(model, **{key: v.to(device) for key, v in batch.items()}).float().cpu().numpy()
            for row, k in enumerate(idx):
                out[k] = values[row]
            bar.update(len(idx))
    return np.stack(out)


class RewardModelJudge(PairwiseJudge):
    """Scores responses with a sequence-classification reward model, table = sigmoid(r_i - r_j)."""

    output_kind = "probs"

    def __init__(self, model, tokenizer, batch_size: int = 16, max_length: int | None = None, name: str | None = None):
        if getattr(model.config, "num_labels", 1) != 1:
            raise ValueError(
                f"judge.model: a Bradley-Terry reward model has one output (num_labels=1), "
                f"this one has {model.config.num_labels}"
            )
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.max_length = max_length or getattr(tokenizer, "model_max_length", None)
        if self.max_length is not None and self.max_length > 1_000_000:  # tokenizer's "no limit" sentinel
            self.max_length = None
        self.name = name or f"reward_model:{getattr(model.config, '_name_or_path', '') or type(model).__name__}"
        self._warned = False

    @classmethod
    def from_config(cls, config: JudgeConfig) -> "RewardModelJudge":
        from pathlib import Path

        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        device, dtype = resolve_device_and_dtype(config.device, config.dtype)
        kw = dict(revision=config.revision, trust_remote_code=config.trust_remote_code)
        if not Path(config.model).exists() and config.model.startswith((".", "/")):
            raise FileNotFoundError(f"judge.model: {config.model} does not exist")
        tokenizer = AutoTokenizer.from_pretrained(config.model, **kw)
        model = AutoModelForSequenceClassification.from_pretrained(config.model, dtype=dtype, **kw).to(device)
        return cls(model, tokenizer, batch_size=config.batch_size, max_length=config.max_length,
                   name=f"reward_model:{config.model}", **config.extra)

    @staticmethod
    def _forward(model, **batch):
        return model(**batch).logits[:, 0]

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Reward r(x, y) of each (prompt, response) pair, shape (N,)."""
        enc, n_trunc = encode_prompt_response(self.tokenizer, prompts, responses, self.max_length)
        if n_trunc and not self._warned:
            logger.warning("%d of %d inputs exceed max_length=%d tokens and were truncated", n_trunc, len(prompts), self.max_length)
            self._warned = True
        device = next(self.model.parameters()).device
        return run_batched(self.model, self.tokenizer, enc, self.batch_size, device, f"scoring ({self.name})", self._forward)

    def pairwise_tables(self, prompts: list[str], responses: list[list[str]]) -> list[np.ndarray]:
        validate_judge_inputs(prompts, responses)
        flat_p = [p for p, cands in zip(prompts, responses) for _ in cands]
        flat_r = [r for cands in responses for r in cands]
        rewards = self.score(flat_p, flat_r).astype(np.float64)
        tables, start = [], 0
        for cands in responses:
            r = rewards[start : start + len(cands)]
            start += len(cands)
            tables.append(bt_table(r))
        return tables


def bt_table(rewards: np.ndarray) -> np.ndarray:
    """sigmoid(r_i - r_j) as a probability table."""
    return complementary_sigmoid_table(rewards[:, None] - rewards[None, :])


def complementary_sigmoid_table(scores: np.ndarray) -> np.ndarray:
    """sigmoid of an antisymmetric score matrix, upper triangle kept and 1 - upper mirrored below,
    so that P_ij + P_ji = 1 holds exactly in floating point; 0.5 on the diagonal."""
    upper = np.triu(sigmoid(np.asarray(scores, dtype=np.float64)), k=1)
    table = upper + np.tril(1.0 - upper.T, k=-1)
    np.fill_diagonal(table, 0.5)
    return table
