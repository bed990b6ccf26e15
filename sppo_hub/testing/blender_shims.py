"""llm-blender's own PairRM code, runnable on transformers 5: the reference for parity tests and speed anchors.

llm-blender 0.0.2 does not import on transformers 5 as installed (--no-deps). Three shims, each the
smallest that lets its own code run unchanged:
- `transformers.utils.hub.TRANSFORMERS_CACHE` (removed in transformers 5) is set to the Hub cache path;
- the `dataclasses_json` decorator on its config dataclasses (JSON helpers only) is the identity when
  that package is absent;
- its collator calls the removed `tokenizer.batch_encode_plus`, which is the tokenizer's own `__call__`.
`Blender.loadranker` cannot read a local folder without `dataclasses_json.from_dict`, so `load_blender`
builds the ranker exactly as `load_ranker` does (CrossCompareReranker over a DebertaV2Model, strict
state-dict load) and attaches it to a `Blender`, whose `rank` then runs as uclaml/SPPO's scripts/rank.py runs it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import types
from pathlib import Path


def patch_llm_blender_imports() -> None:
    """Make `import llm_blender...` work on transformers 5 (idempotent)."""
    if "dataclasses_json" not in sys.modules and importlib.util.find_spec("dataclasses_json") is None:
        shim = types.ModuleType("dataclasses_json")
        shim.dataclass_json = lambda cls: cls
        sys.modules["dataclasses_json"] = shim
    import huggingface_hub.constants
    import transformers.utils.hub

    if not hasattr(transformers.utils.hub, "TRANSFORMERS_CACHE"):
        transformers.utils.hub.TRANSFORMERS_CACHE = huggingface_hub.constants.HF_HUB_CACHE


def load_blender_ranker(pairrm_dir: str | Path):
    """(CrossCompareReranker in eval mode, CrossCompareCollator, tokenizer, ranker config dict) for a PairRM folder
    in the published layout whose backbone config sits in a subfolder (as `build_tiny_pairrm` writes it)."""
    import torch
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2Model

    patch_llm_blender_imports()
    from llm_blender.pair_ranker.collator import CrossCompareCollator
    from llm_blender.pair_ranker.ranker import CrossCompareReranker

    pairrm_dir = Path(pairrm_dir)
    cfg = json.loads((pairrm_dir / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(pairrm_dir)
    tokenizer.batch_encode_plus = lambda texts, **kw: tokenizer(texts, **kw)
    collator = CrossCompareCollator(cfg["source_maxlength"], tokenizer, cfg["candidate_maxlength"])
    backbone_config = DebertaV2Config.from_pretrained(pairrm_dir / cfg["model_name"])
    backbone_config.out_hidden_state_size = backbone_config.hidden_size
    args = types.SimpleNamespace(**{k: cfg[k] for k in (
        "n_tasks", "num_pos", "num_neg", "sub_sampling_mode", "sub_sampling_ratio", "loss_type", "drop_out",
        "inference_mode")})
    ranker = CrossCompareReranker(DebertaV2Model(backbone_config), args, tokenizer)
    state = torch.load(pairrm_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    ranker.load_state_dict(state)  # strict: the published key layout is shared with PairRMJudge
    return ranker.float().eval(), collator, tokenizer, cfg


def load_blender(pairrm_dir: str | Path, device: str = "cpu", fp16: bool = True):
    """An `llm_blender.Blender` with this folder's ranker loaded, tqdm off: call its own `rank`.

    As `Blender.loadranker` does, the ranker runs in half precision on cuda when `fp16` (its RankerConfig
    default, so uclaml/SPPO's rank.py on a GPU) and in fp32 otherwise.
    """
    patch_llm_blender_imports()
    from llm_blender.blender.blender import Blender
    from llm_blender.blender.config import BlenderConfig
    from llm_blender.pair_ranker.config import RankerConfig

    ranker, collator, tokenizer, cfg = load_blender_ranker(pairrm_dir)
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # "no ranker config provided": we attach one below
    try:
        blender = Blender(BlenderConfig(device=device, use_tqdm=False))
    finally:
        logging.getLogger().setLevel(level)
    blender.ranker_config = RankerConfig(
        ranker_type="pairranker", model_type="deberta", model_name=str(pairrm_dir), load_checkpoint=str(pairrm_dir),
        source_maxlength=cfg["source_maxlength"], candidate_maxlength=cfg["candidate_maxlength"],
        n_tasks=cfg["n_tasks"], fp16=fp16, device=device,
    )
    if device.startswith(("cuda", "mps")) and fp16:
        ranker = ranker.half()
    ranker = ranker.to(device)
    blender.ranker, blender.ranker_tokenizer, blender.ranker_collator = ranker, tokenizer, collator
    return blender


def record_blender_logits(blender):
    """Wrap the ranker's `_full_predict` so each call's (batch, K, K) logit tables are kept; returns the list."""
    seen: list = []
    inner = blender.ranker._full_predict

    def full_predict(*args, **kwargs):
        out = inner(*args, **kwargs)
        seen.append(out["logits"].detach().cpu().numpy())
        return out

    blender.ranker._full_predict = full_predict
    return seen
