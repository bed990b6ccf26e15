"""PairRM's speed options: the SDPA DeBERTa-v2 attention (with cached position projections) equals transformers'
eager module; oneDNN linears; fp32_precision."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sppo_hub.judges import JudgeConfig, load_judge
from sppo_hub.judges.cpu_linear import OneDNNLinear
from sppo_hub.judges.deberta_attention import cache_position_projections, use_sdpa_attention
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


@pytest.mark.parametrize("cached,per_head", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("buckets,max_rel", [(8, 64), (-1, 16), (256, -1)])
def test_sdpa_attention_equals_eager(buckets, max_rel, cached, per_head):
    """Log-bucketed, clipped and exact relative positions; padded rows of different lengths in one batch; the
    SDPA kernel (GPU's path) and the per-head oneDNN one (CPU's), with and without cached position projections."""
    eager = _deberta(buckets, max_rel)
    fused = copy.deepcopy(eager)
    assert use_sdpa_attention(fused) == 2
    for layer in fused.encoder.layer:
        layer.attention.self.cpu_per_head = per_head
    if cached:
        assert cache_position_projections(fused) == 2
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
    with torch.inference_mode():  # one unpadded row: the path that skips the mask
        torch.testing.assert_close(fused(input_ids=ids[:1]).last_hidden_state,
                                   eager(input_ids=ids[:1]).last_hidden_state, atol=2e-5, rtol=1e-5)
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


def test_position_cache_is_used_only_for_the_embeddings_it_was_built_from():
    model = _deberta(8, 64)
    use_sdpa_attention(model)
    cache_position_projections(model)
    attention = model.encoder.layer[0].attention.self
    rel = model.encoder.get_rel_embedding().detach()
    cached_key, cached_query = attention.position_projections(rel)
    assert cached_key is attention._position_cache[1]  # served from the cache ...
    attention._position_cache = None
    fresh_key, fresh_query = attention.position_projections(rel)
    torch.testing.assert_close(cached_key, fresh_key)  # ... and equal to computing it
    torch.testing.assert_close(cached_query, fresh_query)
    cache_position_projections(model)
    changed = rel + 1.0  # other embeddings (e.g. weights changed without re-caching): recomputed, not served stale
    other_key, _ = attention.position_projections(changed)
    assert other_key is not attention._position_cache[1] and not torch.allclose(other_key, cached_key)


def test_onednn_linear_equals_nn_linear():
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 80)
    x = torch.randn(3, 7, 48)
    with torch.inference_mode():
        fp32 = OneDNNLinear(linear)
        torch.testing.assert_close(fp32(x), linear(x), atol=1e-5, rtol=1e-5)  # same fp32 arithmetic
        bf16 = OneDNNLinear(linear, torch.bfloat16)
        got = bf16(x)
        assert got.dtype == torch.float32  # returned in the layer's dtype
        # bf16 inputs and weights, fp32 accumulation, bf16 output: what torch's bf16 linear computes
        want = torch.nn.functional.linear(x.bfloat16(), linear.weight.bfloat16(), linear.bias.bfloat16()).float()
        torch.testing.assert_close(got, want, atol=2e-2, rtol=1e-2)
        assert (got - linear(x)).abs().max() > 1e-5  # really rounded, not fp32 under another name
    assert torch.equal(fp32.state_dict()["weight"], linear.weight) and torch.equal(fp32.state_dict()["bias"], linear.bias)
    assert bf16.state_dict()["weight"].dtype == torch.bfloat16 and "compute_dtype=torch.bfloat16" in repr(bf16)


def test_onednn_linear_folds_gelu():
    from transformers import DebertaV2Config
    from transformers.models.deberta_v2.modeling_deberta_v2 import DebertaV2Layer

    from sppo_hub.judges.cpu_linear import use_onednn_linears

    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 80)
    x = torch.randn(3, 7, 48)
    with torch.inference_mode():
        fused = OneDNNLinear(linear, activation="gelu")
        torch.testing.assert_close(fused(x), torch.nn.functional.gelu(linear(x)), atol=1e-5, rtol=1e-5)
        fused_bf16 = OneDNNLinear(linear, torch.bfloat16, activation="gelu", output_dtype=torch.bfloat16)
        got = fused_bf16(x)
        assert got.dtype == torch.bfloat16  # left in bf16 for the next linear layer
        # GELU applied to the fp32 accumulator, the output rounded once, after it
        acc = torch.nn.functional.linear(x.bfloat16().float(), linear.weight.bfloat16().float(), linear.bias.bfloat16().float())
        torch.testing.assert_close(got.float(), torch.nn.functional.gelu(acc).bfloat16().float(), atol=2e-2, rtol=1e-2)
    with pytest.raises(ValueError, match="activation: must be one of"):
        OneDNNLinear(linear, activation="relu6")

    config = DebertaV2Config(hidden_size=64, num_attention_heads=4, intermediate_size=96, hidden_dropout_prob=0.0)
    layer = DebertaV2Layer(config).eval()
    reference = copy.deepcopy(layer)
    keys = set(layer.state_dict())
    assert use_onednn_linears(layer) == 6
    assert isinstance(layer.intermediate.dense, OneDNNLinear) and layer.intermediate.dense.activation == "gelu"
    assert isinstance(layer.intermediate.intermediate_act_fn, torch.nn.Identity)
    assert layer.attention.output.dense.activation == "none" and set(layer.state_dict()) == keys
    hidden, mask = torch.randn(2, 9, 64), torch.ones(2, 1, 9, 9, dtype=torch.bool)
    with torch.inference_mode():
        torch.testing.assert_close(layer(hidden, mask)[0], reference(hidden, mask)[0], atol=1e-5, rtol=1e-5)


def test_position_index_tables_are_built_once_per_relative_pos():
    from sppo_hub.judges.deberta_attention import _position_index_tables

    rel = torch.arange(16).view(1, 4, 4) - 8
    c2p, p2c = _position_index_tables(rel, 4, 4, torch.device("cpu"))
    assert torch.equal(c2p, torch.clamp(rel[0] + 4, 0, 7)) and torch.equal(p2c, torch.clamp(4 - rel[0], 0, 7))
    again = _position_index_tables(rel, 4, 4, torch.device("cpu"))
    assert again[0] is c2p and again[1] is p2c  # the next layer, same tensor: served from the cache
    other = rel.clone() + 1  # another forward's tensor (even of the same shape): built anew
    c2p_other, _ = _position_index_tables(other, 4, 4, torch.device("cpu"))
    assert torch.equal(c2p_other, torch.clamp(other[0] + 4, 0, 7))
    assert not torch.equal(_position_index_tables(rel, 2, 4, torch.device("cpu"))[0], c2p)  # another span: anew


def test_judge_linear_backends(tiny_pairrm_dir):
    kwargs = dict(device="cpu", batch_size=3, show_progress=False)
    default = PairRMJudge.from_pretrained(str(tiny_pairrm_dir), **kwargs)
    plain = PairRMJudge.from_pretrained(str(tiny_pairrm_dir), linear_backend="torch", **kwargs)
    assert default.linear_backend == "onednn" and plain.linear_backend == "torch"
    layer = default.model.pretrained_model.encoder.layer[0]
    assert isinstance(layer.attention.self.query_proj, OneDNNLinear) and layer.attention.self.query_proj.compute_dtype == torch.float32
    assert type(plain.model.pretrained_model.encoder.layer[0].attention.self.query_proj) is torch.nn.Linear
    for a, b in zip(default.pairwise_tables(PROMPTS, RESPONSES), plain.pairwise_tables(PROMPTS, RESPONSES)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    int8 = PairRMJudge.from_pretrained(str(tiny_pairrm_dir), quantize="int8", **kwargs)
    assert int8.linear_backend == "torch"  # int8 keeps torch's quantized linears
    with pytest.raises(ValueError, match="linear_backend: must be one of"):
        PairRMJudge.from_pretrained(str(tiny_pairrm_dir), linear_backend="mkl", **kwargs)
    with pytest.raises(ValueError, match="linear_backend: onednn needs a CPU device, quantize None"):
        PairRMJudge.from_pretrained(str(tiny_pairrm_dir), linear_backend="onednn", quantize="int8", **kwargs)


def test_fp32_precision_bf16_option(tiny_pairrm_dir):
    ref = PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", batch_size=3, show_progress=False)
    fast = load_judge(JudgeConfig(type="pairrm", model=str(tiny_pairrm_dir), device="cpu", batch_size=3,
                                  extra={"fp32_precision": "bf16", "show_progress": False}))
    assert fast.fp32_precision == "bf16"
    attention = fast.model.pretrained_model.encoder.layer[0].attention.self
    assert attention.query_proj.compute_dtype == torch.bfloat16  # the encoder's linears in bf16 ...
    assert fast.model.head_layer[1].compute_dtype == torch.float32  # ... the head that sets the logits in fp32
    assert attention._position_cache[1].dtype == torch.float32  # position projections: computed once, in fp32
    got = fast.pairwise_tables(PROMPTS, RESPONSES)
    for a, b in zip(ref.pairwise_tables(PROMPTS, RESPONSES), got):
        # at hidden 32 bf16 linears move logits by ~1% of the largest; benchmarks/ranking.py measures the error
        # and the best / worst agreement at a realistic size. Here: the same verdicts' scale, and not exact.
        assert np.abs(a - b).max() <= 0.1 * np.abs(a).max() + 1e-6
    assert max(np.abs(a - b).max() for a, b in zip(ref.pairwise_tables(PROMPTS, RESPONSES), got)) > 1e-6
    with pytest.raises(ValueError, match="fp32_precision: must be one of"):
        PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", fp32_precision="tf32")
    with pytest.raises(ValueError, match="fp32_precision: bf16 runs on CPU in float32 only"):
        PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", dtype="bfloat16", fp32_precision="bf16")
    with pytest.raises(ValueError, match="fp32_precision: bf16 runs the linear layers through oneDNN"):
        PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", fp32_precision="bf16", linear_backend="torch")


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
