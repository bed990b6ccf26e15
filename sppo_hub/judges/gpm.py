"""General Preference Model judge (Zhang et al., "Beyond Bradley-Terry: General Preference Model").

An encoder maps each (prompt, response) to an embedding v in R^{2k}; the preference score is
``s(i, j) = v_i^T R v_j`` with R block-diagonal and skew-symmetric, block b being
``lambda_b * [[0, -1], [1, 0]]``; ``P(y_i > y_j | x) = sigmoid(s(i, j))``. Since R^T = -R,
s(i, j) = -s(j, i): the model can express intransitive (cyclic) preferences, which a
Bradley-Terry reward cannot, while needing only K encoder passes per prompt.

On-disk checkpoint format accepted here (sppo-hub's own; the paper's released checkpoints keep the
head inside a custom modeling file, convert them by saving their value head in this layout):

    <dir>/gpm_config.json         {"format": "sppo-hub-gpm", "format_version": 1,
                                   "encoder": ".",          # path (relative to <dir>) or Hub id
                                   "embed_dim": 2k,         # even
                                   "pooling": "mean" | "cls" | "last",
                                   "normalize": true}       # L2-normalise v, as in the paper
    <dir>/gpm_head.safetensors    "value_head.weight" (2k, hidden), "value_head.bias" (2k,),
                                  optional "block_scales" (k,): the lambda_b (default all 1)
    encoder files                 anything `AutoModel` / `AutoTokenizer` load, at "encoder"

The paper makes lambda depend on the prompt through a small gate; this judge uses fixed
per-block scales (a prompt-independent special case), which keeps R exactly skew-symmetric.
Inputs are formatted like the reward-model judge's (chat template, else a text pair).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import JudgeConfig, PairwiseJudge, resolve_device_and_dtype, validate_judge_inputs
from .reward_model import complementary_sigmoid_table, encode_prompt_response, run_batched

logger = logging.getLogger(__name__)

CONFIG_FILE = "gpm_config.json"
HEAD_FILE = "gpm_head.safetensors"
FORMAT = "sppo-hub-gpm"
POOLINGS = ("mean", "cls", "last")


@dataclass
class GPMHeadConfig:
    """Contents of gpm_config.json."""

    embed_dim: int
    pooling: str = "mean"
    normalize: bool = True
    encoder: str = "."

    def __post_init__(self):
        if self.embed_dim < 2 or self.embed_dim % 2:
            raise ValueError(f"{CONFIG_FILE}: embed_dim must be a positive even number (2k), got {self.embed_dim}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"{CONFIG_FILE}: pooling must be one of {POOLINGS}, got {self.pooling!r}")


def skew_scores(embeddings: np.ndarray, block_scales: np.ndarray | None = None) -> np.ndarray:
    """S_ij = v_i^T R v_j for R = blockdiag(lambda_b [[0, -1], [1, 0]]); exactly antisymmetric.

    Computed as M - M^T with M_ij = sum_b lambda_b v_i[2b+1] v_j[2b], which equals v_i^T R v_j
    and makes S_ij = -S_ji hold bit for bit.
    """
    v = np.asarray(embeddings, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] % 2:
        raise ValueError(f"embeddings: expected shape (K, 2k), got {v.shape}")
    k = v.shape[1] // 2
    pairs = v.reshape(v.shape[0], k, 2)
    lam = np.ones(k) if block_scales is None else np.asarray(block_scales, dtype=np.float64)
    if lam.shape != (k,):
        raise ValueError(f"block_scales: expected shape ({k},), got {lam.shape}")
    M = np.einsum("ib,jb,b->ij", pairs[:, :, 1], pairs[:, :, 0], lam)
    return M - M.T


def save_gpm_head(out_dir: str | Path, weight, bias, head_config: GPMHeadConfig, block_scales=None) -> Path:
    """Write gpm_config.json + gpm_head.safetensors into `out_dir` (the encoder is referenced, not copied)."""
    import torch
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {
        "value_head.weight": torch.as_tensor(weight, dtype=torch.float32).contiguous(),
        "value_head.bias": torch.as_tensor(bias, dtype=torch.float32).contiguous(),
    }
    if tensors["value_head.weight"].shape[0] != head_config.embed_dim:
        raise ValueError(f"weight: first dimension must be embed_dim={head_config.embed_dim}")
    if block_scales is not None:
        tensors["block_scales"] = torch.as_tensor(block_scales, dtype=torch.float32).contiguous()
    save_file(tensors, str(out_dir / HEAD_FILE))
    meta = {"format": FORMAT, "format_version": 1, **head_config.__dict__}
    (out_dir / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def create_random_gpm(encoder: str | Path, out_dir: str | Path, embed_dim: int = 8, pooling: str = "mean",
                      seed: int = 0, block_scales=None) -> Path:
    """A GPM checkpoint with a randomly initialised value head over an existing encoder (tests, demos)."""
    import torch
    from transformers import AutoConfig

    hidden = AutoConfig.from_pretrained(str(encoder)).hidden_size
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(embed_dim, hidden, generator=gen) / hidden**0.5
    bias = torch.zeros(embed_dim)
    cfg = GPMHeadConfig(embed_dim=embed_dim, pooling=pooling, encoder=str(Path(encoder).resolve()))
    return save_gpm_head(out_dir, weight, bias, cfg, block_scales)


def _pool(hidden, attention_mask, pooling: str):
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":  # right padding: last attended position
        last = attention_mask.sum(dim=1) - 1
        return hidden[range(hidden.shape[0]), last]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


class GPMJudge(PairwiseJudge):
    """Skew-symmetric general preference model over any `AutoModel` encoder."""

    output_kind = "probs"

    def __init__(self, encoder, tokenizer, weight, bias, head_config: GPMHeadConfig, block_scales=None,
                 batch_size: int = 16, max_length: int | None = None, name: str = "gpm"):
        import torch

        self.encoder = encoder.eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.head_config = head_config
        dev = next(encoder.parameters()).device
        self.weight = torch.as_tensor(weight, dtype=torch.float32, device=dev)
        self.bias = torch.as_tensor(bias, dtype=torch.float32, device=dev)
        hidden = encoder.config.hidden_size
        if tuple(self.weight.shape) != (head_config.embed_dim, hidden) or tuple(self.bias.shape) != (head_config.embed_dim,):
            raise ValueError(
                f"{HEAD_FILE}: value_head must map hidden={hidden} to embed_dim={head_config.embed_dim}, "
                f"got weight {tuple(self.weight.shape)} and bias {tuple(self.bias.shape)}"
            )
        self.block_scales = None if block_scales is None else np.asarray(block_scales, dtype=np.float64)
        self.batch_size = int(batch_size)
        limit = max_length or getattr(tokenizer, "model_max_length", None)
        self.max_length = None if limit is None or limit > 1_000_000 else int(limit)
        self.name = name
        self._warned = False

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, dtype: str = "auto", **kwargs) -> "GPMJudge":
        """Load a checkpoint in the format of the module docstring."""
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        cfg_path = path / CONFIG_FILE
        if not cfg_path.is_file():
            raise FileNotFoundError(f"judge.model: {cfg_path} not found; a GPM checkpoint needs {CONFIG_FILE} and {HEAD_FILE}")
        meta = json.loads(cfg_path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{cfg_path}: format must be {FORMAT!r}, got {meta.get('format')!r}")
        head_cfg = GPMHeadConfig(**{k: meta[k] for k in ("embed_dim", "pooling", "normalize", "encoder") if k in meta})
        tensors = load_file(str(path / HEAD_FILE))
        for key in ("value_head.weight", "value_head.bias"):
            if key not in tensors:
                raise ValueError(f"{path / HEAD_FILE}: missing tensor {key!r}")
        encoder_ref = head_cfg.encoder
        local = (path / encoder_ref) if not Path(encoder_ref).is_absolute() else Path(encoder_ref)
        encoder_src = str(local) if local.exists() else encoder_ref  # else a Hub repo id
        dev, torch_dtype = resolve_device_and_dtype(device, dtype)
        tokenizer = AutoTokenizer.from_pretrained(encoder_src)
        encoder = AutoModel.from_pretrained(encoder_src, dtype=torch_dtype).to(dev)
        scales = tensors.get("block_scales")
        return cls(encoder, tokenizer, tensors["value_head.weight"], tensors["value_head.bias"], head_cfg,
                   block_scales=None if scales is None else scales.numpy(), name=f"gpm:{path.name}", **kwargs)

    @classmethod
    def from_config(cls, config: JudgeConfig) -> "GPMJudge":
        return cls.from_pretrained(config.model, device=config.device, dtype=config.dtype,
                                   batch_size=config.batch_size, max_length=config.max_length, **config.extra)

    def _forward(self, model, **batch):
        import torch

        hidden = model(**batch).last_hidden_state.float()
        v = _pool(hidden, batch["attention_mask"], self.head_config.pooling) @ self.weight.T + self.bias
        if self.head_config.normalize:
            v = torch.nn.functional.normalize(v, dim=-1)
        return v

    def embed(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """The 2k-dimensional preference embedding of each (prompt, response), shape (N, 2k)."""
        enc, n_trunc = encode_prompt_response(self.tokenizer, prompts, responses, self.max_length)
        if n_trunc and not self._warned:
            logger.warning("%d of %d inputs exceed max_length=%d tokens and were truncated", n_trunc, len(prompts), self.max_length)
            self._warned = True
        device = next(self.encoder.parameters()).device
        return run_batched(self.encoder, self.tokenizer, enc, self.batch_size, device, f"embedding ({self.name})", self._forward)

    def pairwise_tables(self, prompts: list[str], responses: list[list[str]]) -> list[np.ndarray]:
        validate_judge_inputs(prompts, responses)
        flat_p = [p for p, cands in zip(prompts, responses) for _ in cands]
        flat_r = [r for cands in responses for r in cands]
        emb = self.embed(flat_p, flat_r)
        tables, start = [], 0
        for cands in responses:
            v = emb[start : start + len(cands)]
            start += len(cands)
            tables.append(complementary_sigmoid_table(skew_scores(v, self.block_scales)))
        return tables
