"""A tiny random ranker of PairRM's architecture, saved in PairRM's published on-disk layout.

Why hand-built: the real llm-blender/PairRM (DeBERTa-v3-large, 1.7 GB) cannot be downloaded in CI.
The folder mirrors the published repo: `config.json` (llm-blender's ranker config), the weights as
`pytorch_model.bin` with `pretrained_model.*` / `head_layer.*` keys, and the tokenizer files with
PairRM's four prefix tokens added. The small DeBERTa-v2 backbone config lives in `backbone/`
(named by `model_name`), since the published repo relies on microsoft/deberta-v3-large's.
"""

from __future__ import annotations

from pathlib import Path

_CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Write a short poem about the sea. The waves are blue and the wind is cold.",
    "Explain how a neural network learns from data with gradient descent.",
    "Sure, here is an answer. Okay, let me explain step by step. Well, it depends.",
    "Python is a programming language. Rust is fast. Numbers: 0 1 2 3 4 5 6 7 8 9 10",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"()[]{}-+=*/#@%&",
]


def build_tiny_pairrm_tokenizer(vocab_size: int = 600):
    """A WordPiece tokenizer ([CLS] x [SEP]) trained offline, with PairRM's prefix tokens added."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from sppo_hub.judges.pairrm_model import PAIRRM_SPECIAL_TOKENS

    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    backend.train_from_iterator(_CORPUS * 4, trainer=trainer)
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        unk_token="[UNK]", mask_token="[MASK]", model_max_length=512,
    )
    tokenizer.add_tokens(PAIRRM_SPECIAL_TOKENS)
    return tokenizer


def load_base_tokenizer(path: str | Path):
    """A local BERT-style tokenizer ([CLS] x [SEP], a [SEP] and [PAD] token) with PairRM's prefix tokens added."""
    from transformers import AutoTokenizer

    from sppo_hub.judges.pairrm_model import PAIRRM_SPECIAL_TOKENS

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.sep_token is None or tokenizer.pad_token is None or tokenizer.cls_token is None:
        raise ValueError(f"base_tokenizer: {path} has no [CLS] / [SEP] / [PAD] token; PairRM's input format needs all three")
    tokenizer.model_max_length = 1_000_000  # PairRM truncates by its own limits; no length notices
    tokenizer.add_tokens(PAIRRM_SPECIAL_TOKENS)
    return tokenizer


def build_tiny_pairrm(
    out_dir: str | Path,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    source_maxlength: int = 128,
    candidate_maxlength: int = 64,
    weight_std: float | None = None,
    position_buckets: int = 64,
    base_tokenizer: str | Path | None = None,
) -> Path:
    """Build and save a random PairRM-architecture ranker (seconds); returns `out_dir`.

    Weight matrices are drawn N(0, weight_std); the default 0.2 * sqrt(32 / hidden_size) keeps each
    layer's gain near one at any width (0.2 at hidden 32, 0.035 at DeBERTa-v3-large's 1024), so larger
    random rankers are as well-conditioned as trained ones rather than chaotic. `position_buckets` is
    DeBERTa's relative-position bucket count (PairRM's backbone: 256). `base_tokenizer` (a local tokenizer
    folder, e.g. a BERT WordPiece one) replaces the tiny trained tokenizer, whose 600-piece vocabulary splits
    real text into ~3x more tokens than a full one: with it, sequence lengths on real text are realistic.
    """
    import json

    import torch
    from transformers import DebertaV2Config

    from sppo_hub.judges.pairrm_model import PairRMModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_pairrm_tokenizer() if base_tokenizer is None else load_base_tokenizer(base_tokenizer)
    config = DebertaV2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=4 * hidden_size, max_position_embeddings=512,
        type_vocab_size=0, relative_attention=True, max_relative_positions=-1, position_buckets=position_buckets,
        norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
        position_biased_input=False, layer_norm_eps=1e-7, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = PairRMModel(config, n_tasks=1, drop_out=0.05)
    std = weight_std if weight_std is not None else 0.2 * (32 / hidden_size) ** 0.5
    with torch.no_grad():  # DeBERTa's default init is near-constant at this size: spread the weights
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, std)
    config.save_pretrained(out / "backbone")
    tokenizer.save_pretrained(out)
    ranker_config = {
        "ranker_type": "pairranker", "model_type": "deberta", "model_name": "backbone",
        "load_checkpoint": None, "cache_dir": None, "source_maxlength": source_maxlength,
        "candidate_maxlength": candidate_maxlength, "n_tasks": 1, "num_pos": 5, "num_neg": 5,
        "sub_sampling_mode": "all_pair", "sub_sampling_ratio": 0.4, "max_grad_norm": 10e10,
        "loss_type": "instructgpt", "reduce_type": "linear", "inference_mode": "bubble", "drop_out": 0.05,
        "fp16": False, "device": None,
    }
    tmp = out / "config.json.tmp"
    tmp.write_text(json.dumps(ranker_config, indent=2))
    tmp.replace(out / "config.json")
    tmp = out / "pytorch_model.bin.tmp"
    torch.save(model.state_dict(), tmp)
    tmp.replace(out / "pytorch_model.bin")
    return out
