"""General Preference Model judge (Zhang et al., "Beyond Bradley-Terry Models: A General Preference Model").

An encoder maps each (prompt, response) to an embedding v in R^{2k}; the preference score follows the paper and
its official code (general-preference/general-preference-model):

    s(i, j) = <R v_i, v_j> / tau,    P(y_i > y_j | x) = sigmoid(s(i, j)),

R block-diagonal and skew-symmetric, block b = lambda_b [[0, -1], [1, 0]]. Per block this is
lambda_b (v_i[2b] v_j[2b+1] - v_i[2b+1] v_j[2b]). Since R^T = -R, s(i, j) = -s(j, i): the model can express
intransitive (cyclic) preferences, which a Bradley-Terry reward cannot, with only K encoder passes per prompt.
The official models use tau = 0.1, the hidden state of the last token (EOS), a value head without bias, and an
L2-normalised v; those are this format's defaults.

On-disk checkpoint format accepted here (sppo-hub's own; to use a released GPM checkpoint, save its value head's
weight in this layout and point "encoder" at the base model):

    <dir>/gpm_config.json         {"format": "sppo-hub-gpm", "format_version": 2,
                                   "encoder": ".",          # path (relative to <dir>) or Hub id
                                   "embed_dim": 2k,         # even
                                   "pooling": "last" | "mean" | "cls",
                                   "normalize": true,       # L2-normalise v, as in the paper
                                   "tau": 0.1}              # temperature of the sigmoid
    <dir>/gpm_head.safetensors    "value_head.weight" (2k, hidden), optional "value_head.bias" (2k,),
                                  optional "block_scales" (k,): fixed lambda_b (default all 1), or
                                  optional "prompt_head.weight" (k, hidden): the paper's prompt-dependent
                                  lambda(x) = softmax(prompt_head(h_x)), h_x the hidden state at the prompt's
                                  last token (the official models' `add_prompt_head`)
    encoder files                 anything `AutoModel` / `AutoTokenizer` load, at "encoder"

`convert_official_gpm` writes this format from a released GPM checkpoint (its value and prompt heads; the
checkpoint itself serves as the encoder). format_version 1 (sppo-hub <= 0.1) scored v_i^T R v_j = -<R v_i, v_j>
with no temperature; such files load with tau = 1 and negated block scales, so they keep their preferences.
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
FORMAT_VERSION = 2
OFFICIAL_TAU = 0.1  # general_preference/models/loss.py and the released GPM pipelines


@dataclass
class GPMHeadConfig:
    """Contents of gpm_config.json; the defaults are the official GPM models' settings."""

    embed_dim: int
    pooling: str = "last"
    normalize: bool = True
    encoder: str = "."
    tau: float = OFFICIAL_TAU

    def __post_init__(self):
        if self.embed_dim < 2 or self.embed_dim % 2:
            raise ValueError(f"{CONFIG_FILE}: embed_dim must be a positive even number (2k), got {self.embed_dim}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"{CONFIG_FILE}: pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not self.tau > 0:
            raise ValueError(f"{CONFIG_FILE}: tau must be > 0 (the official models use {OFFICIAL_TAU}), got {self.tau}")


def skew_scores(embeddings: np.ndarray, block_scales: np.ndarray | None = None, tau: float = 1.0) -> np.ndarray:
    """S_ij = <R v_i, v_j> / tau for R = blockdiag(lambda_b [[0, -1], [1, 0]]); exactly antisymmetric.

    Computed as (M - M^T) / tau with M_ij = sum_b lambda_b v_i[2b] v_j[2b+1], which equals <R v_i, v_j> / tau
    and makes S_ij = -S_ji hold bit for bit. `tau` = 1 gives the bare bilinear form.
    """
    v = np.asarray(embeddings, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] % 2:
        raise ValueError(f"embeddings: expected shape (K, 2k), got {v.shape}")
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    k = v.shape[1] // 2
    pairs = v.reshape(v.shape[0], k, 2)
    lam = np.ones(k) if block_scales is None else np.asarray(block_scales, dtype=np.float64)
    if lam.shape != (k,):
        raise ValueError(f"block_scales: expected shape ({k},), got {lam.shape}")
    M = np.einsum("ib,jb,b->ij", pairs[:, :, 0], pairs[:, :, 1], lam)
    return (M - M.T) / tau


def save_gpm_head(out_dir: str | Path, weight, bias, head_config: GPMHeadConfig, block_scales=None,
                  prompt_head=None) -> Path:
    """Write gpm_config.json + gpm_head.safetensors into `out_dir` (the encoder is referenced, not copied).

    `bias=None` stores a head without bias, as the official models have.
    """
    import torch
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {"value_head.weight": torch.as_tensor(weight, dtype=torch.float32).contiguous()}
    if bias is not None:
        tensors["value_head.bias"] = torch.as_tensor(bias, dtype=torch.float32).contiguous()
    if tensors["value_head.weight"].shape[0] != head_config.embed_dim:
        raise ValueError(f"weight: first dimension must be embed_dim={head_config.embed_dim}")
    if block_scales is not None:
        tensors["block_scales"] = torch.as_tensor(block_scales, dtype=torch.float32).contiguous()
    if prompt_head is not None:
        tensors["prompt_head.weight"] = torch.as_tensor(prompt_head, dtype=torch.float32).contiguous()
    save_file(tensors, str(out_dir / HEAD_FILE))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **head_config.__dict__}
    (out_dir / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def create_random_gpm(encoder: str | Path, out_dir: str | Path, embed_dim: int = 8, pooling: str = "last",
                      seed: int = 0, block_scales=None, bias: bool = False, tau: float = OFFICIAL_TAU) -> Path:
    """A GPM checkpoint with a randomly initialised value head over an existing encoder (tests, demos)."""
    import torch
    from transformers import AutoConfig

    hidden = AutoConfig.from_pretrained(str(encoder)).hidden_size
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(embed_dim, hidden, generator=gen) / hidden**0.5
    head_bias = torch.randn(embed_dim, generator=gen) * 0.1 if bias else None
    cfg = GPMHeadConfig(embed_dim=embed_dim, pooling=pooling, encoder=str(Path(encoder).resolve()), tau=tau)
    return save_gpm_head(out_dir, weight, head_bias, cfg, block_scales)


def _read_head(path: Path) -> tuple[GPMHeadConfig, dict]:
    """The head config and tensors of a checkpoint folder, format 1 mapped onto format 2 (see module docstring)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"judge.model: {cfg_path} not found; a GPM checkpoint needs {CONFIG_FILE} and {HEAD_FILE}")
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{cfg_path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{cfg_path}: format must be {FORMAT!r}, got {meta.get('format')!r}")
    version = meta.get("format_version", 1)
    if version not in (1, FORMAT_VERSION):
        raise ValueError(f"{cfg_path}: format_version {version} is not supported (this sppo-hub reads 1 and 2)")
    keys = ("embed_dim", "pooling", "normalize", "encoder") + (("tau",) if version >= 2 else ())
    defaults = {"pooling": "mean"} if version == 1 else {}  # format 1's default pooling
    head_cfg = GPMHeadConfig(**{**defaults, **{k: meta[k] for k in keys if k in meta}},
                             **({"tau": 1.0} if version == 1 else {}))
    try:
        tensors = load_file(str(path / HEAD_FILE))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path / HEAD_FILE}: cannot be read as safetensors ({err}); re-save the head with "
                         "sppo_hub.judges.gpm.save_gpm_head") from None
    if "value_head.weight" not in tensors:
        raise ValueError(f"{path / HEAD_FILE}: missing tensor 'value_head.weight'")
    if "prompt_head.weight" in tensors and "block_scales" in tensors:
        raise ValueError(f"{path / HEAD_FILE}: holds both 'prompt_head.weight' and 'block_scales'; keep one")
    if version == 1:  # v_i^T R v_j = <(-R) v_i, v_j>: negating lambda keeps the old preferences
        k = head_cfg.embed_dim // 2
        tensors["block_scales"] = -tensors.get("block_scales", torch.ones(k))
    return head_cfg, tensors


def _pool(hidden, attention_mask, pooling: str):
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":  # right padding: the last attended position (the EOS the chat template ends with)
        last = attention_mask.sum(dim=1) - 1
        return hidden[range(hidden.shape[0]), last]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


class GPMJudge(PairwiseJudge):
    """Skew-symmetric general preference model over any `AutoModel` encoder."""

    output_kind = "probs"

    def __init__(self, encoder, tokenizer, weight, bias, head_config: GPMHeadConfig, block_scales=None,
                 batch_size: int = 16, max_length: int | None = None, name: str = "gpm", prompt_head=None):
        import torch

        self.encoder = encoder.eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.head_config = head_config
        dev = next(encoder.parameters()).device
        self.weight = torch.as_tensor(weight, dtype=torch.float32, device=dev)
        self.bias = None if bias is None else torch.as_tensor(bias, dtype=torch.float32, device=dev)
        hidden = encoder.config.hidden_size
        bias_ok = self.bias is None or tuple(self.bias.shape) == (head_config.embed_dim,)
        if tuple(self.weight.shape) != (head_config.embed_dim, hidden) or not bias_ok:
            raise ValueError(
                f"{HEAD_FILE}: value_head must map hidden={hidden} to embed_dim={head_config.embed_dim}, "
                f"got weight {tuple(self.weight.shape)}"
                + ("" if self.bias is None else f" and bias {tuple(self.bias.shape)}")
            )
        self.block_scales = None if block_scales is None else np.asarray(block_scales, dtype=np.float64)
        self.prompt_head = None if prompt_head is None else torch.as_tensor(prompt_head, dtype=torch.float32, device=dev)
        if self.prompt_head is not None and tuple(self.prompt_head.shape) != (head_config.embed_dim // 2, hidden):
            raise ValueError(f"{HEAD_FILE}: prompt_head must map hidden={hidden} to k={head_config.embed_dim // 2}, "
                             f"got {tuple(self.prompt_head.shape)}")
        self.batch_size = int(batch_size)
        limit = max_length or getattr(tokenizer, "model_max_length", None)
        self.max_length = None if limit is None or limit > 1_000_000 else int(limit)
        self.name = name
        self._warned = False

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, dtype: str = "auto",
                        revision: str | None = None, trust_remote_code: bool = False, **kwargs) -> "GPMJudge":
        """Load a checkpoint in the format of the module docstring: a local folder, or a Hub repo at `revision`."""
        from transformers import AutoModel, AutoTokenizer

        if not Path(path).is_dir():
            from huggingface_hub import snapshot_download

            path = snapshot_download(str(path), revision=revision)
        path = Path(path)
        head_cfg, tensors = _read_head(path)
        encoder_ref = head_cfg.encoder
        local = (path / encoder_ref) if not Path(encoder_ref).is_absolute() else Path(encoder_ref)
        encoder_src = str(local) if local.exists() else encoder_ref  # else a Hub repo id
        dev, torch_dtype = resolve_device_and_dtype(device, dtype)
        tokenizer = AutoTokenizer.from_pretrained(encoder_src, trust_remote_code=trust_remote_code)
        encoder = AutoModel.from_pretrained(encoder_src, dtype=torch_dtype, trust_remote_code=trust_remote_code).to(dev)
        scales = tensors.get("block_scales")
        return cls(encoder, tokenizer, tensors["value_head.weight"], tensors.get("value_head.bias"), head_cfg,
                   block_scales=None if scales is None else scales.numpy(), name=f"gpm:{path.name}",
                   prompt_head=tensors.get("prompt_head.weight"), **kwargs)

    @classmethod
    def from_config(cls, config: JudgeConfig) -> "GPMJudge":
        return cls.from_pretrained(config.model, device=config.device, dtype=config.dtype, revision=config.revision,
                                   trust_remote_code=config.trust_remote_code, batch_size=config.batch_size,
                                   max_length=config.max_length, **config.extra)

    def _forward(self, model, **batch):
        import torch

        prompt_end = batch.pop("prompt_end_mask", None)
        hidden = model(**batch).last_hidden_state.float()
        v = _pool(hidden, batch["attention_mask"], self.head_config.pooling) @ self.weight.T
        if self.bias is not None:
            v = v + self.bias
        if self.head_config.normalize:
            v = torch.nn.functional.normalize(v, dim=-1)
        if prompt_end is None:
            return v
        lam = torch.softmax(hidden[prompt_end.bool()] @ self.prompt_head.T, dim=-1)  # one prompt end per row
        return torch.cat([v, lam], dim=-1)

    def _prompt_lengths(self, prompts: list[str]) -> list[int]:
        """Tokens of each prompt rendered alone, as the official code measures them (user turn, no reply)."""
        if getattr(self.tokenizer, "chat_template", None):
            texts = [self.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False)
                     for p in prompts]
            return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        return [len(ids) for ids in self.tokenizer(list(prompts))["input_ids"]]

    def embed_with_scales(self, prompts: list[str], responses: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """(embedding v of each (prompt, response), shape (N, 2k); lambda(x) per row, shape (N, k), or None)."""
        enc, n_trunc = encode_prompt_response(self.tokenizer, prompts, responses, self.max_length)
        if n_trunc and not self._warned:
            logger.warning("%d of %d inputs exceed max_length=%d tokens and were truncated", n_trunc, len(prompts), self.max_length)
            self._warned = True
        if self.prompt_head is not None:
            ends = [min(n, len(ids)) - 1 for n, ids in zip(self._prompt_lengths(prompts), enc["input_ids"])]
            enc["prompt_end_mask"] = [[int(i == end) for i in range(len(ids))] for end, ids in zip(ends, enc["input_ids"])]
        device = next(self.encoder.parameters()).device
        out = run_batched(self.encoder, self.tokenizer, enc, self.batch_size, device, f"embedding ({self.name})",
                          self._forward)
        d = self.head_config.embed_dim
        return out[:, :d], (out[:, d:] if self.prompt_head is not None else None)

    def embed(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """The 2k-dimensional preference embedding of each (prompt, response), shape (N, 2k)."""
        return self.embed_with_scales(prompts, responses)[0]

    def pairwise_tables(self, prompts: list[str], responses: list[list[str]]) -> list[np.ndarray]:
        validate_judge_inputs(prompts, responses)
        flat_p = [p for p, cands in zip(prompts, responses) for _ in cands]
        flat_r = [r for cands in responses for r in cands]
        emb, lam = self.embed_with_scales(flat_p, flat_r)
        tables, start = [], 0
        for cands in responses:
            v = emb[start : start + len(cands)]
            scales = self.block_scales if lam is None else lam[start]  # the prompt's lambda(x), same on every row
            start += len(cands)
            tables.append(complementary_sigmoid_table(skew_scores(v, scales, self.head_config.tau)))
        return tables


def convert_official_gpm(checkpoint: str | Path, out_dir: str | Path, tau: float = OFFICIAL_TAU,
                         encoder: str | None = None) -> Path:
    """A sppo-hub GPM folder from a released GPM checkpoint (e.g. general-preference/GPM-Llama-3.1-8B).

    Copies its `value_head.weight` (and `prompt_head.weight` when it has one) out of the safetensors files; the
    checkpoint itself, a causal LM whose base `AutoModel` loads, stays the encoder (`encoder` overrides where it
    is read from). Official settings: last-token pooling, L2-normalised v, no head bias, `tau` = 0.1.
    """
    from huggingface_hub import hf_hub_download
    from safetensors import safe_open

    src = Path(checkpoint)

    def fetch(name: str) -> str:
        return str(src / name) if src.is_dir() else hf_hub_download(str(checkpoint), name)

    try:
        index = json.loads(Path(fetch("model.safetensors.index.json")).read_text())["weight_map"]
    except Exception:  # noqa: BLE001 - a single-file checkpoint has no index
        index = {}
    wanted = {"value_head.weight": None, "prompt_head.weight": None}
    for key in wanted:
        shard = index.get(key, "model.safetensors" if not index else None)
        if shard is None:
            continue
        with safe_open(fetch(shard), framework="pt") as f:
            if key in f.keys():
                wanted[key] = f.get_tensor(key)
    if wanted["value_head.weight"] is None:
        raise ValueError(f"{checkpoint}: no 'value_head.weight' tensor; is it a GPM checkpoint?")
    head = GPMHeadConfig(embed_dim=int(wanted["value_head.weight"].shape[0]), pooling="last", normalize=True,
                         encoder=encoder or str(src.resolve() if src.is_dir() else checkpoint), tau=tau)
    return save_gpm_head(out_dir, wanted["value_head.weight"], None, head, prompt_head=wanted["prompt_head.weight"])
