"""PairRM's speed options: the SDPA DeBERTa-v2 attention equals transformers' eager module; fp32_precision."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sppo_hub.judges import JudgeConfig, load_judge
from sppo_hub.judges.deberta_attention import use_sdpa_attention
from sppo_hub.judges.pairrm import PairRMJudge

PROMPTS = ["What is the capital of France?", "Write a short poem about the sea, please."]
RESPONSES = [
    ["The capital of France is Paris.", "Rome.", "I do not know, maybe it is Paris or Rome, or neither of them."],
    ["The waves are blue and the wind is cold.", "Sea sea sea."],
]


def _deberta(position_buckets: int, max_relative_positions: int):
    from transformers import DebertaV2Config, DebertaV2Model

    torch.manual_seed(0)
    config = DebertaV2Config(
        vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
        relative_attention=True, position_buckets=position_buckets, max_relative_positions=max_relative_positions,
        pos_att_type=["p2c", "c2p"], share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
        max_position_embeddings=128, type_vocab_size=0,
    )
    model = DebertaV2Model(config).eval()
    with torch.no_grad():  # random init leaves the relative embeddings small; make the position terms matter
        model.encoder.rel_embeddings.weight.normal_(0, 1.0)
    return model


@pytest.mark.parametrize("buckets,max_rel", [(8, 64), (-1, 16), (256, -1)])
def test_sdpa_attention_equals_eager(buckets, max_rel):
    """Log-bucketed, clipped and exact relative positions; padded rows of different lengths in one batch."""
    eager = _deberta(buckets, max_rel)
    fused = copy.deepcopy(eager)
    assert use_sdpa_attention(fused) == 2
    assert type(fused.encoder.layer[0].attention.self).__name__ == "SDPADisentangledSelfAttention"
    assert fused.state_dict().keys() == eager.state_dict().keys()
    lengths = [40, 23, 7]  # 40 > the buckets' exact range (4) and > max_rel 16: every position regime is used
    ids = torch.randint(5, 100, (3, 40))
    mask = torch.zeros(3, 40, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    with torch.inference_mode():
        want = eager(input_ids=ids, attention_mask=mask).last_hidden_state
        got = fused(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.isfinite(got).all()
    for row, n in enumerate(lengths):  # real tokens equal; padded positions are never read downstream
        torch.testing.assert_close(got[row, :n], want[row, :n], atol=2e-5, rtol=1e-5)
    # training mode and attention outputs use transformers' own forward (dropout, probabilities)
    fused.train()
    torch.manual_seed(1)
    out = fused(input_ids=ids, attention_mask=mask, output_attentions=True)
    assert out.attentions is not None and out.attentions[0].shape == (3, 4, 40, 40)


def test_judge_sdpa_default_equals_eager_judge(tiny_pairrm_dir):
    fast = PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", batch_size=3, show_progress=False)
    eager = PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", batch_size=3, show_progress=False,
                                        attn_implementation="eager")
    assert fast.attn_implementation == "sdpa"
    assert type(eager.model.pretrained_model.encoder.layer[0].attention.self).__name__ == "DisentangledSelfAttention"
    for a, b in zip(fast.pairwise_tables(PROMPTS, RESPONSES), eager.pairwise_tables(PROMPTS, RESPONSES)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="attn_implementation"):
        PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", attn_implementation="flash")


def test_fp32_precision_bf16_option(tiny_pairrm_dir):
    matmul = torch.backends.mkldnn.matmul
    before = matmul.fp32_precision
    ref = PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", batch_size=3, show_progress=False)
    fast = load_judge(JudgeConfig(type="pairrm", model=str(tiny_pairrm_dir), device="cpu", batch_size=3,
                                  extra={"fp32_precision": "bf16", "show_progress": False}))
    assert fast.fp32_precision == "bf16"
    seen = []
    fast.model.register_forward_hook(lambda *_: seen.append(matmul.fp32_precision))
    got = fast.pairwise_tables(PROMPTS, RESPONSES)
    assert seen and set(seen) == {"bf16"}  # set while the judge runs ...
    assert matmul.fp32_precision == before  # ... and restored after
    for a, b in zip(ref.pairwise_tables(PROMPTS, RESPONSES), got):
        # how close depends on the CPU's oneDNN kernels (near fp32 with bf16x3-style kernels, bf16 rounding on
        # others); at hidden 32 a whole-bf16 judge moved logits by 1-2% of the largest. benchmarks/ranking.py
        # measures the realistic-size error; here: the same verdicts' scale, not garbage.
        assert np.abs(a - b).max() <= 0.1 * np.abs(a).max() + 1e-6
    with pytest.raises(ValueError, match="fp32_precision: must be one of"):
        PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", fp32_precision="tf32")
    with pytest.raises(ValueError, match="fp32_precision: bf16 runs on CPU in float32 only"):
        PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", dtype="bfloat16", fp32_precision="bf16")


def test_cpu_batches_cap_the_attention_tensor(tiny_pairrm_dir):
    from sppo_hub.judges import pairrm

    judge = PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", batch_size=4, show_progress=False)
    heads = judge.model.config.num_attention_heads
    lengths = [2000, 1800, 300, 300, 300, 300, 300, 10]  # sorted longest first, as score_pairs passes them
    batches = judge._batches(list(range(8)), lengths)
    assert [k for b in batches for k in b] == list(range(8))  # every item once, order kept
    for batch in batches:
        width = lengths[batch[0]]
        assert len(batch) <= 4 and (len(batch) == 1 or len(batch) * heads * width**2 <= pairrm.CPU_SCORE_BUDGET)
    assert [0] in batches and [1] in batches  # the long ones go alone
    short = judge._batches(list(range(6)), [20] * 6)
    assert [len(b) for b in short] == [4, 2]  # short sequences: batch_size is the limit
