"""PairRM (llm-blender/PairRM) as a pairwise judge: `PairRMJudge`, on the model of `pairrm_model`.

Speed: every (prompt, i, j) presentation of a call, both orders, across all prompts, goes into one
list sorted by length and cut into batches of `batch_size` (on CPU also capped so one attention tensor
stays ~18 MB: larger batches were slower there), so padding is minimal; inference runs
under `torch.inference_mode`, in fp32 on every device unless `dtype` asks for bf16. The encoder's attention runs through SDPA
(`attn_implementation="sdpa"`, the default; `deberta_attention`), equal to transformers' eager module
to ~1e-6, with the relative-position projections computed once at load. On CPU the linear layers run
through oneDNN with prepacked weights (`linear_backend="auto"`; `cpu_linear`): the same fp32 arithmetic,
2.6x torch's default MKL path on the AMD CPU measured. Two CPU options trade exactness for speed, each
measured in benchmarks/README.md (ranking): `fp32_precision="bf16"` runs the linear layers in bf16
(weights rounded once, fp32 accumulation; attention, softmax, norms and residuals stay fp32), and
`quantize="int8"` swaps the encoder's linear layers for torch's dynamic int8 ones. With either (or a bf16 model),
`recheck_margin` keeps an exact fp32 copy of the weights and re-judges with it the pairs that decide a near tie
for best or worst (`near_ties`), so the chosen / rejected responses are the exact judge's.
"""

from __future__ import annotations

import copy
import logging
import warnings

import numpy as np
import torch
from torch import nn

from ..core.preference import RULES
from .base import PairwiseJudge, resolve_device_and_dtype, validate_judge_inputs
from .cpu_linear import onednn_available, quantize_linear_int8, use_onednn_linears
from .pairrm_model import CAND1_PREFIX, CAND2_PREFIX, CAND_PREFIX, SOURCE_PREFIX, load_pairrm

logger = logging.getLogger(__name__)

QUANTIZE_MODES = (None, "int8")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
# Largest (rows x heads x L x L) attention tensor per forward on CPU, in elements (~18 MB of fp32): see _batches.
CPU_SCORE_BUDGET = 4_500_000
FP32_PRECISIONS = ("ieee", "bf16")
LINEAR_BACKENDS = ("auto", "onednn", "torch")


class PairRMJudge(PairwiseJudge):
    """Pairwise judge running PairRM; `table[i, j]` is PairRM's logit that i (shown first) beats j."""

    output_kind = "logits"
    name = "PairRM"

    def __init__(
        self,
        model: str = "llm-blender/PairRM",
        revision: str | None = None,
        batch_size: int = 16,
        max_length: int | None = None,
        device: str | None = None,
        dtype: str = "auto",
        source_max_length: int | None = None,
        candidate_max_length: int | None = None,
        show_progress: bool = True,
        quantize: str | None = None,
        attn_implementation: str = "sdpa",
        fp32_precision: str = "ieee",
        linear_backend: str = "auto",
        recheck_margin: float | None = None,
        recheck_rule: str = "pairwise",
    ):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize: must be one of {QUANTIZE_MODES}, got {quantize!r}")
        if attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation: must be one of {ATTN_IMPLEMENTATIONS}, got {attn_implementation!r}")
        if fp32_precision not in FP32_PRECISIONS:
            raise ValueError(f"fp32_precision: must be one of {FP32_PRECISIONS}, got {fp32_precision!r}")
        if linear_backend not in LINEAR_BACKENDS:
            raise ValueError(f"linear_backend: must be one of {LINEAR_BACKENDS}, got {linear_backend!r}")
        # fp32 unless asked: the default is exact (llm-blender's logits) on GPU as on CPU; bf16 is an option.
        self.device, self.dtype = resolve_device_and_dtype(device, dtype, gpu_auto="float32")
        cpu_fp32_options = {"quantize": quantize, "fp32_precision": None if fp32_precision == "ieee" else fp32_precision}
        for field, value in cpu_fp32_options.items():
            if value is not None and (self.device.type != "cpu" or self.dtype != torch.float32):
                raise ValueError(
                    f"{field}: {value} runs on CPU in float32 only (got device {self.device}, dtype {self.dtype}); "
                    "on GPU use dtype bfloat16 instead"
                )
        self.linear_backend = self._choose_linear_backend(linear_backend, quantize, fp32_precision)
        exact = fp32_precision == "ieee" and quantize is None and self.dtype == torch.float32
        if recheck_margin is not None:
            if not recheck_margin > 0:
                raise ValueError(f"recheck_margin: must be > 0 (a win-rate difference), got {recheck_margin}")
            if exact:
                raise ValueError("recheck_margin: this judge already computes in exact fp32; it re-checks near ties of "
                                 "an inexact one (fp32_precision bf16, quantize int8 or dtype bfloat16 / float16)")
        if recheck_rule not in RULES:
            raise ValueError(f"recheck_rule: must be one of {RULES}, got {recheck_rule!r}")
        self.recheck_margin, self.recheck_rule = recheck_margin, recheck_rule
        self.model, self.tokenizer, cfg = load_pairrm(model, revision)
        # near ties are re-judged by an exact fp32 copy (a second set of weights in memory)
        self.exact_model = None if recheck_margin is None else self._prepare(
            copy.deepcopy(self.model), torch.float32, "ieee", None, attn_implementation,
            self._choose_linear_backend("auto", None, "ieee"))
        self.model = self._prepare(self.model, self.dtype, fp32_precision, quantize, attn_implementation,
                                   self.linear_backend)
        self.attn_implementation = attn_implementation
        self.fp32_precision = fp32_precision
        self.quantize = quantize
        self.last_recheck = {"prompts": 0, "pairs": 0}  # what the latest pairwise_tables call re-judged exactly
        self.name = f"PairRM ({model})"
        self.batch_size = int(batch_size)
        self.show_progress = show_progress
        self.source_max_length = int(source_max_length or cfg.get("source_maxlength") or 1224)
        self.candidate_max_length = int(candidate_max_length or cfg.get("candidate_maxlength") or 412)
        if max_length is not None:  # one total budget, split like PairRM's source:candidate ratio
            total = self.source_max_length + 2 * self.candidate_max_length
            if max_length < total:
                self.source_max_length = max(4, max_length * self.source_max_length // total)
                self.candidate_max_length = max(4, (max_length - self.source_max_length) // 2)
        tok = self.tokenizer
        self.sep_token = tok.sep_token or tok.eos_token
        self.sep_id = tok.convert_tokens_to_ids(self.sep_token)
        self.source_id = tok.convert_tokens_to_ids(SOURCE_PREFIX)
        self.cand_id = tok.convert_tokens_to_ids(CAND_PREFIX)
        self.cand1_id = tok.convert_tokens_to_ids(CAND1_PREFIX)
        self.cand2_id = tok.convert_tokens_to_ids(CAND2_PREFIX)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self._warned_truncation = False

    @classmethod
    def from_pretrained(cls, model: str = "llm-blender/PairRM", **kwargs) -> "PairRMJudge":
        """Load from a Hub repo id (snapshot_download) or a local folder in PairRM's published layout."""
        return cls(model=model, **kwargs)

    def _choose_linear_backend(self, requested: str, quantize: str | None, fp32_precision: str) -> str:
        """oneDNN (prepacked weights) for every CPU run that is not int8; torch's nn.Linear otherwise."""
        usable = self.device.type == "cpu" and quantize is None and onednn_available()
        if requested == "onednn" and not usable:
            raise ValueError(
                f"linear_backend: onednn needs a CPU device, quantize None and torch built with oneDNN (got device "
                f"{self.device}, quantize {quantize}); use linear_backend auto"
            )
        if fp32_precision == "bf16" and (requested == "torch" or not usable):
            raise ValueError("fp32_precision: bf16 runs the linear layers through oneDNN (CPU, torch built with "
                             "oneDNN, no quantize); use linear_backend auto, or fp32_precision ieee")
        if requested == "auto":
            return "onednn" if usable else "torch"
        return requested

    def _prepare(self, model, dtype, fp32_precision: str, quantize: str | None, attn_implementation: str,
                 linear_backend: str):
        """`model` on the judge's device in `dtype`, with the requested attention, quantization and linear layers."""
        model.to(device=self.device, dtype=dtype)
        if attn_implementation == "sdpa":
            from .deberta_attention import cache_position_projections, use_sdpa_attention

            use_sdpa_attention(model)
            cache_position_projections(model)  # in fp32 before any bf16 linear: the weights stay fixed here
        if quantize == "int8":  # the small pairwise head stays fp32: negligible compute, it sets the logits
            model.pretrained_model = quantize_linear_int8(model.pretrained_model)
        if linear_backend == "onednn":
            bf16 = fp32_precision == "bf16" or dtype == torch.bfloat16
            use_onednn_linears(model.pretrained_model, torch.bfloat16 if bf16 else torch.float32)
            use_onednn_linears(model.head_layer, dtype)  # the head sets the logits: kept in the model's dtype
        return model

    # -- input construction (PairRM's format and truncation) --
    def _encode(self, texts: list[str], prefix: str) -> list[list[int]]:
        texts = [prefix + t.replace(self.sep_token, " ") for t in texts]
        return self.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]

    def _truncate(self, ids: list[int], limit: int) -> list[int]:
        # Same result as the tokenizer's truncation: keep the head, end with [SEP].
        if len(ids) <= limit:
            return ids
        if not self._warned_truncation:
            self._warned_truncation = True
            warnings.warn(
                f"PairRM input truncated (source limit {self.source_max_length} tokens, candidate limit "
                f"{self.candidate_max_length} + unused source room / 2), as llm-blender's PairRM does; "
                "pass source_max_length / candidate_max_length to change it",
                stacklevel=3,
            )
        return ids[: limit - 1] + [self.sep_id]

    def build_inputs(self, prompt: str, responses: list[str]) -> tuple[list[int], list[list[int]]]:
        """(source ids, per-response candidate ids with the <|candidate|> prefix), truncated like PairRM."""
        source = self._truncate(self._encode([prompt], SOURCE_PREFIX)[0], self.source_max_length)
        limit = self.candidate_max_length + (self.source_max_length - len(source)) // 2
        cands = [self._truncate(ids, limit) for ids in self._encode(responses, CAND_PREFIX)]
        return source, cands

    def pair_ids(self, source: list[int], cand_a: list[int], cand_b: list[int]) -> list[int]:
        """One presentation's token ids: source, then a as candidate 1, then b as candidate 2."""
        first = [self.cand1_id if t == self.cand_id else t for t in cand_a]
        second = [self.cand2_id if t == self.cand_id else t for t in cand_b]
        return source + first + second

    def _item(self, source: list[int], cand_a: list[int], cand_b: list[int]) -> tuple:
        """(ids, source prefix position, candidate 1 prefix position, candidate 2 prefix position)."""
        c1 = len(source) + cand_a.index(self.cand_id)
        c2 = len(source) + len(cand_a) + cand_b.index(self.cand_id)
        return self.pair_ids(source, cand_a, cand_b), source.index(self.source_id), c1, c2

    # -- scoring --
    def _batches(self, order: list[int], lengths: list[int]) -> list[list[int]]:
        """Consecutive runs of `order` (sorted longest first) of at most `batch_size` items; on CPU also at most
        CPU_SCORE_BUDGET elements in one (rows, heads, L, L) attention tensor. Measured: at L = 512 with 16 heads,
        batches of 2-16 rows ran 1.1-1.5x slower than one row, with ~10^5-10^6 page faults per call (tensors
        past glibc's mmap threshold are mapped fresh and zeroed on every allocation); one row had almost none."""
        heads = self.model.config.num_attention_heads
        budget = CPU_SCORE_BUDGET if self.device.type == "cpu" else float("inf")
        batches: list[list[int]] = []
        current_width = 0
        for k, length in zip(order, lengths):
            current = batches[-1] if batches else None
            # sorted longest first: the batch's first item sets its padded width
            if current and len(current) < self.batch_size and (len(current) + 1) * heads * current_width**2 <= budget:
                current.append(k)
            else:
                batches.append([k])
                current_width = length
        return batches

    @torch.inference_mode()
    def score_pairs(self, items: list[tuple[list[int], int, int]], model: nn.Module | None = None) -> np.ndarray:
        """Logits for `_item` tuples (ids, source / cand1 / cand2 prefix positions), batched by sorted length, by
        `model` (default: the judge's own)."""
        model = self.model if model is None else model
        from tqdm.auto import tqdm

        out = np.zeros(len(items), dtype=np.float64)
        order = sorted(range(len(items)), key=lambda k: len(items[k][0]), reverse=True)
        batches = self._batches(order, [len(items[k][0]) for k in order])
        for batch in tqdm(batches, desc="PairRM", unit="batch", disable=not self.show_progress or len(batches) < 2):
            width = max(len(items[k][0]) for k in batch)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, k in enumerate(batch):
                seq = items[k][0]
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            pos = torch.tensor([items[k][1:] for k in batch], dtype=torch.long)
            logits = model(
                ids.to(self.device), mask.to(self.device),
                pos[:, 0].to(self.device), pos[:, 1].to(self.device), pos[:, 2].to(self.device),
            )
            out[batch] = logits.float().cpu().numpy()
        return out

    def pairwise_tables(self, prompts: list[str], responses: list[list[str]]) -> list[np.ndarray]:
        """K x K logit tables, both presentation orders, all prompts' pairs batched together."""
        validate_judge_inputs(prompts, responses)
        items, where = [], []
        for p, (prompt, cands) in enumerate(zip(prompts, responses)):
            source, cand_ids = self.build_inputs(prompt, list(cands))
            for i in range(len(cands)):
                for j in range(len(cands)):
                    if i != j:
                        items.append(self._item(source, cand_ids[i], cand_ids[j]))
                        where.append((p, i, j))
        logits = self.score_pairs(items)
        tables = [np.full((len(c), len(c)), self.diagonal_value, dtype=np.float64) for c in responses]
        for (p, i, j), value in zip(where, logits):
            tables[p][i, j] = value
        if self.exact_model is not None:
            self._recheck_near_ties(tables, items, where)
        return tables

    def _recheck_near_ties(self, tables: list[np.ndarray], items: list[tuple], where: list[tuple[int, int, int]]) -> None:
        """Re-judge with the exact fp32 model every pair that decides a near tie for best or worst (`near_ties`)."""
        from .near_ties import near_tie_responses, pairs_touching

        item_of = {key: n for n, key in enumerate(where)}
        redo: list[tuple[int, int, int]] = []
        for p, table in enumerate(tables):
            near = near_tie_responses(table, self.recheck_margin, "logits", self.recheck_rule)
            redo += [(p, i, j) for i, j in pairs_touching(near, len(table))]
        self.last_recheck = {"prompts": len({p for p, _, _ in redo}), "pairs": len(redo)}
        if redo:
            exact = self.score_pairs([items[item_of[key]] for key in redo], model=self.exact_model)
            for (p, i, j), value in zip(redo, exact):
                tables[p][i, j] = value

    def compare(self, prompt: str, response_a: str, response_b: str) -> float:
        """PairRM's logit that `response_a`, shown first, beats `response_b` (one pair, one order)."""
        source, (a, b) = self.build_inputs(prompt, [response_a, response_b])
        return float(self.score_pairs([self._item(source, a, b)])[0])
