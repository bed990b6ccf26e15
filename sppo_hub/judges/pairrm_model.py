"""PairRM (llm-blender/PairRM) natively on transformers 5.

PairRM reads one prompt and two responses as a single DeBERTa-v2 sequence
``[CLS] <|source|> x [SEP] [CLS] <|candidate1|> a [SEP] [CLS] <|candidate2|> b [SEP]`` and scores
the hidden states of the three prefix tokens with a small head; its logit that ``a`` beats ``b`` is
``head(s, a) - head(s, b)``. llm-blender itself no longer imports on transformers 5 and TRL dropped
its PairRM judge, so the model and its input construction are rewritten here (hand-written because
no library ships them); the parameter names match the published checkpoint so its state dict loads
unchanged, and `tests/test_pairrm.py` checks parity against llm-blender's own classes.

The judge that scores with it is `pairrm.PairRMJudge`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

SOURCE_PREFIX = "<|source|>"
CAND1_PREFIX = "<|candidate1|>"
CAND2_PREFIX = "<|candidate2|>"
CAND_PREFIX = "<|candidate|>"
PAIRRM_SPECIAL_TOKENS = [SOURCE_PREFIX, CAND1_PREFIX, CAND2_PREFIX, CAND_PREFIX]

# microsoft/deberta-v3-large, the backbone named by llm-blender/PairRM's config.json. The published
# repo holds no backbone config, so it is written out here (vocab size is read from the weights).
DEBERTA_V3_LARGE = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    max_position_embeddings=512, type_vocab_size=0, initializer_range=0.02, layer_norm_eps=1e-7,
    relative_attention=True, max_relative_positions=-1, position_buckets=256, norm_rel_ebd="layer_norm",
    share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False, pad_token_id=0,
    vocab_size=128100,
)
WEIGHT_FILES = ("pytorch_model.bin", "model.safetensors")


class PairRMModel(nn.Module):
    """DeBERTa-v2 encoder + PairRM's pairwise head (same parameter names as the published weights)."""

    def __init__(self, backbone_config, n_tasks: int = 1, drop_out: float = 0.05):
        super().__init__()
        from transformers import DebertaV2Model

        self.config = backbone_config
        self.pretrained_model = DebertaV2Model(backbone_config)
        hidden = backbone_config.hidden_size
        # Indices 1 and 4 are the published `head_layer.1.*` / `head_layer.4.*` linear layers.
        self.head_layer = nn.Sequential(
            nn.Dropout(drop_out), nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Dropout(drop_out),
            nn.Linear(hidden, n_tasks),
        )

    def forward(self, input_ids, attention_mask, source_pos, cand1_pos, cand2_pos) -> torch.Tensor:
        """Logit that candidate 1 beats candidate 2, shape (B,); `*_pos` index each row's prefix token."""
        hidden = self.pretrained_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        src, c1, c2 = hidden[rows, source_pos], hidden[rows, cand1_pos], hidden[rows, cand2_pos]
        left = self.head_layer(torch.cat([src, c1], dim=-1))
        right = self.head_layer(torch.cat([src, c2], dim=-1))
        return (left - right).mean(dim=-1)


def _resolve_dir(model: str, revision: str | None) -> Path:
    path = Path(model)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, revision=revision))


def _backbone_config(model_dir: Path, ranker_cfg: dict, vocab_size: int | None):
    from transformers import DebertaV2Config

    name = ranker_cfg.get("model_name") or "microsoft/deberta-v3-large"
    local = model_dir / name
    if (local / "config.json").is_file():
        config = DebertaV2Config.from_pretrained(local)
    elif name.rstrip("/").endswith("deberta-v3-large"):
        config = DebertaV2Config(**DEBERTA_V3_LARGE)
    else:
        raise ValueError(
            f"model: PairRM backbone {name!r} is not a folder inside {model_dir} and not deberta-v3-large; "
            "save its DebertaV2Config under that folder name"
        )
    if vocab_size is not None:
        config.vocab_size = vocab_size
    return config


def _load_state_dict(model_dir: Path) -> dict:
    if (model_dir / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(model_dir / "model.safetensors")
    if (model_dir / "pytorch_model.bin").is_file():
        return torch.load(model_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ValueError(f"model: no PairRM weights ({' or '.join(WEIGHT_FILES)}) in {model_dir}")


def load_pairrm(model: str, revision: str | None = None):
    """(PairRMModel, tokenizer, ranker config dict) from a local folder or a Hub repo id."""
    from transformers import AutoTokenizer

    model_dir = _resolve_dir(model, revision)
    cfg_file = model_dir / "config.json"
    if not cfg_file.is_file():
        raise ValueError(f"model: {model_dir} has no config.json; point to a PairRM folder or repo id")
    ranker_cfg = json.loads(cfg_file.read_text())
    state = _load_state_dict(model_dir)
    emb = state.get("pretrained_model.embeddings.word_embeddings.weight")
    config = _backbone_config(model_dir, ranker_cfg, None if emb is None else emb.shape[0])
    net = PairRMModel(config, n_tasks=int(ranker_cfg.get("n_tasks", 1)), drop_out=float(ranker_cfg.get("drop_out", 0.05)))
    result = net.load_state_dict(state, strict=False)
    unexpected = [k for k in result.unexpected_keys if not k.endswith("position_ids")]
    if result.missing_keys or unexpected:
        raise ValueError(
            f"model: {model_dir} is not a PairRM checkpoint (missing {result.missing_keys[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    missing = [t for t in PAIRRM_SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing)
    return net.eval(), tokenizer, ranker_cfg
