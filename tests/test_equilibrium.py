"""sppo_hub.equilibrium.options: exploration win rates, reference mixing, all-response pairs, iterate weights (closed forms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sppo_hub.core import data, losses, preference
from sppo_hub.equilibrium import options as equilibrium


def rps(strength: float = 0.3) -> np.ndarray:
    cycle = np.array([[0, 1, -1], [-1, 0, 1], [1, -1, 0]], dtype=float)
    return 0.5 + strength * cycle


def test_candidate_win_rates_without_extras_is_the_papers_estimate():
    rng = np.random.default_rng(0)
    P = preference.pairwise_probabilities(rng.uniform(size=(5, 5)), kind="probs")
    for diag in (True, False):
        assert np.allclose(equilibrium.candidate_win_rates(P, 5, diag), preference.win_rates(P, diag))


def test_candidate_win_rates_score_extras_against_policy_samples_only():
    # candidates: two policy samples (rock, paper) and one extra (scissors)
    P = rps(0.3)
    wr = equilibrium.candidate_win_rates(P, num_policy=2)
    # rock: (1/2 + P(rock > paper)) / 2 = (0.5 + 0.8) / 2; paper: (0.2 + 0.5) / 2; scissors: (0.2 + 0.8) / 2
    assert wr == pytest.approx([0.65, 0.35, 0.5])
    wr = equilibrium.candidate_win_rates(P, num_policy=2, include_diagonal=False)
    assert wr == pytest.approx([0.8, 0.2, 0.5])
    # the policy samples' advantages still sum to zero (P is a preference matrix)
    assert equilibrium.candidate_win_rates(P, 2)[:2].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [0, 4])
def test_candidate_win_rates_bad_count(bad):
    with pytest.raises(ValueError, match="num_policy"):
        equilibrium.candidate_win_rates(rps(), bad)


def test_tempered_closed_form():
    pi = np.array([0.5, 0.25, 0.25])
    out = equilibrium.tempered(pi, 2.0)
    expected = np.sqrt(pi) / np.sqrt(pi).sum()
    assert np.allclose(out, expected)
    assert np.allclose(equilibrium.tempered(pi, 1.0), pi)
    with pytest.raises(ValueError):
        equilibrium.tempered(pi, 0)


def test_kl_step_equals_geometric_mix_step():
    # argmax <pi, eta w> - KL(pi||pi_t) - eta tau KL(pi||pi_0) in closed form vs the mixed-reference form
    rng = np.random.default_rng(1)
    pi_t, pi_0, w = rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(4)), rng.uniform(size=4)
    eta, tau = 2.0, 0.3
    kl_form = np.exp((np.log(pi_t) + eta * w + eta * tau * np.log(pi_0)) / (1 + eta * tau))
    a, eta2 = equilibrium.kl_to_reference_mix(tau, eta)
    assert a == pytest.approx(0.375) and eta2 == pytest.approx(1.25)
    mix_form = np.exp(equilibrium.mix_log_probs(np.log(pi_t), np.log(pi_0), a) + eta2 * w)
    assert np.allclose(kl_form / kl_form.sum(), mix_form / mix_form.sum())


def test_regularized_targets():
    wr = np.array([0.7, 0.4])
    assert np.allclose(equilibrium.regularized_targets(wr, 2.0), [0.4, -0.2])
    lt, l0 = np.log([0.5, 0.5]), np.log([0.9, 0.1])
    got = equilibrium.regularized_targets(wr, 2.0, lt, l0, 0.25)
    assert np.allclose(got, [0.4 + 0.25 * np.log(1.8), -0.2 + 0.25 * np.log(0.2)])
    with pytest.raises(ValueError, match="logp_current"):
        equilibrium.regularized_targets(wr, 2.0, reference_mix=0.1)
    with pytest.raises(ValueError, match="reference_mix"):
        equilibrium.mix_log_probs(lt, l0, 1.0)
    # tensors work too (the trainer mixes torch reference log-probs)
    t = equilibrium.mix_log_probs(torch.tensor([-1.0]), torch.tensor([-3.0]), 0.5)
    assert t.item() == pytest.approx(-2.0)


def test_fitting_the_mixed_reference_reaches_the_regularised_step():
    # Pick the update pi* first, then win rates whose targets make it exact: log pi* = log ref_mix + eta (p - 1/2).
    # Minimising sppo's loss over softmax logits with the mixed reference must land on pi*, and the same fit with
    # reference pi_t on `regularized_targets` must land on it too.
    pi_t, pi_0, pi_star = np.array([0.6, 0.3, 0.1]), np.array([0.2, 0.3, 0.5]), np.array([0.4, 0.35, 0.25])
    eta, a = 4.0, 0.2
    ref_mix = equilibrium.mix_log_probs(np.log(pi_t), np.log(pi_0), a)
    p = (np.log(pi_star) - ref_mix) / eta + 0.5
    assert ((p >= 0) & (p <= 1)).all()

    def fit(ref, target_probs=None, targets=None):
        theta = torch.tensor(np.log(pi_t), requires_grad=True)
        opt = torch.optim.Adam([theta], lr=0.05)
        for _ in range(1500):
            lr_ = torch.log_softmax(theta, 0) - torch.tensor(ref)
            if targets is None:
                loss = losses.sppo(lr_, lr_, torch.tensor(target_probs), torch.tensor(target_probs), eta=eta).sum()
            else:
                loss = ((lr_ - torch.tensor(targets)) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return torch.softmax(theta, 0).detach().numpy()

    assert np.allclose(fit(ref_mix, target_probs=p), pi_star, atol=2e-3)
    shifted = equilibrium.regularized_targets(p, eta, np.log(pi_t), np.log(pi_0), a)
    assert np.allclose(fit(np.log(pi_t), targets=shifted), pi_star, atol=2e-3)


@pytest.mark.parametrize("k,expected", [(2, [(0, 1)]), (4, [(0, 1), (2, 3)]), (3, [(0, 1), (1, 2), (2, 0)])])
def test_response_pairing_weights_every_response_equally(k, expected):
    pairs = equilibrium.response_pairing(k)
    assert pairs == expected
    counts = np.bincount(np.ravel(pairs), minlength=k)
    assert (counts == counts[0]).all()
    with pytest.raises(ValueError):
        equilibrium.response_pairing(1)


def test_all_response_pairs_give_every_response_its_own_target():
    table = data.build_table_dataset(["q"], [["a", "b", "c"]], [rps(0.3)], kind="probs")
    pairs = equilibrium.all_response_pairs(table)
    assert len(pairs) == 3 and pairs.features == data.PAIRS_FEATURES
    wr = table[0]["win_rates"]
    got = {}
    for row in pairs:
        got.setdefault(row["chosen"][0]["content"], row["chosen_probs_win"])
        got.setdefault(row["rejected"][0]["content"], row["chosen_probs_lose"])
    assert [got[r] for r in "abc"] == pytest.approx(wr)
    assert pairs[0]["chosen_probs"] == pytest.approx(0.8)  # P(a > b)


def test_explored_table_dataset_rescores_against_policy_samples():
    table = data.build_table_dataset(["q"], [["a", "b", "c"]], [rps(0.3)], kind="probs")
    fixed = equilibrium.explored_table_dataset(table, num_policy=2)
    assert fixed[0]["win_rates"] == pytest.approx([0.65, 0.35, 0.5])
    assert fixed[0]["prob_matrix"] == table[0]["prob_matrix"]


def test_iterate_weights():
    assert equilibrium.iterate_weights([1, 2, 3, 4]) == pytest.approx({1: 0.25, 2: 0.25, 3: 0.25, 4: 0.25})
    assert equilibrium.iterate_weights([0, 1, 2, 3], "linear") == pytest.approx({1: 1 / 6, 2: 2 / 6, 3: 3 / 6})
    assert equilibrium.iterate_weights(range(1, 7), "uniform", window=2) == pytest.approx({5: 0.5, 6: 0.5})
    with pytest.raises(ValueError, match="trained iterate"):
        equilibrium.iterate_weights([0])
    with pytest.raises(ValueError, match="scheme"):
        equilibrium.iterate_weights([1], "none")


def test_config_defaults_are_the_paper_and_validation_names_fields():
    cfg = equilibrium.EquilibriumConfig().validate()
    assert not cfg.enabled
    assert equilibrium.EquilibriumConfig(all_responses=True).enabled
    bad = [
        (equilibrium.EquilibriumConfig(reference_mix=1.0), "equilibrium.reference_mix"),
        (equilibrium.EquilibriumConfig(average="mean"), "equilibrium.average"),
        (equilibrium.EquilibriumConfig(exploration=equilibrium.ExplorationConfig(candidates=-1)),
         "equilibrium.exploration.candidates"),
        (equilibrium.EquilibriumConfig(exploration=equilibrium.ExplorationConfig(source="pi0")),
         "equilibrium.exploration.source"),
    ]
    for cfg, name in bad:
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            cfg.validate()


# ----- the last iterate: moving magnet and optimism -----


def test_magnet_iteration_moves_every_n_iterations():
    assert [equilibrium.magnet_iteration(t, 0) for t in (1, 5, 60)] == [0, 0, 0]  # the fixed pi_0
    assert [equilibrium.magnet_iteration(t, 10) for t in (1, 10, 11, 20, 21, 60)] == [0, 0, 10, 10, 20, 50]
    assert [equilibrium.magnet_iteration(t, 1) for t in (1, 2, 3)] == [0, 1, 2]  # pi_{t-1}: no pull at all
    with pytest.raises(ValueError):
        equilibrium.magnet_iteration(0, 10)


def test_optimistic_weights_are_the_cut_geometric_average():
    assert equilibrium.optimistic_weights(1) == {0: 1.0}
    assert equilibrium.optimistic_weights(2) == {1: 0.5, 0: 0.5}
    assert equilibrium.optimistic_weights(5) == {4: 0.5, 3: 0.25, 2: 0.25}
    assert equilibrium.optimistic_weights(5, depth=4) == {4: 0.5, 3: 0.25, 2: 0.125, 1: 0.125}
    for t in (1, 2, 3, 9):
        assert sum(equilibrium.optimistic_weights(t).values()) == 1


def test_reference_and_anchor_weights():
    rw, am = equilibrium.reference_weights, equilibrium.anchor_models
    assert rw(3) == {2: 1.0} and am(3) == {}  # the paper: pi_{t-1} alone
    assert rw(3, 0.2) == pytest.approx({2: 0.8, 0: 0.2}) and am(3, 0.2) == {0: 0.2}
    assert am(1, 0.2) == {}  # pi_0 is the current policy at t = 1: nothing to mix in
    assert am(12, 0.2, magnet_every=10) == {10: 0.2}
    assert am(11, 0.2, magnet_every=10) == {}  # the magnet just moved to pi_10 = pi_{t-1}
    assert rw(5, 0.2, 10, optimistic=True) == pytest.approx({4: 0.4, 3: 0.2, 2: 0.2, 0: 0.2})
    assert am(5, 0.2, 10, optimistic=True) == pytest.approx({3: 0.2, 2: 0.2, 0: 0.2})
    assert am(2, 0.0, 0, optimistic=True) == {0: 0.5}
    assert am(1, 0.0, 0, optimistic=True) == {}
    for t in range(1, 25):
        assert sum(rw(t, 0.15, 4, True).values()) == pytest.approx(1.0)


def test_combined_anchor_is_the_multi_anchor_mix():
    rng = np.random.default_rng(2)
    lt, lm, lp = (np.log(rng.dirichlet(np.ones(5))) for _ in range(3))
    c, anchor = equilibrium.combined_anchor([0.2, 0.5], [lm, lp])
    assert c == pytest.approx(0.7)
    assert np.allclose(equilibrium.mix_log_probs(lt, anchor, c), 0.3 * lt + 0.2 * lm + 0.5 * lp)
    for weights in ([0.5, 0.5], [0.2, -0.1], [0.0, 0.0], [0.2]):
        with pytest.raises(ValueError, match="anchor weights"):
            equilibrium.combined_anchor(weights, [lm, lp])


def _run_reference_form(P, eta, steps, optimistic, full=False):
    """Exact updates in the run's form: log pi_t = sum_i w_i log pi_i + step (P(. > pi_{t-1}) - 1/2), with the run's
    `reference_weights` or (full) the uncut optimistic average."""
    hist = [np.log(np.array([0.5, 0.3, 0.2]))]
    for t in range(1, steps + 1):
        w = P @ np.exp(hist[-1])
        weights = equilibrium.optimistic_weights(t, t) if optimistic and t >= 2 and full else \
            equilibrium.reference_weights(t, optimistic=optimistic)
        logits = sum(wi * hist[i] for i, wi in weights.items()) + equilibrium.optimistic_step(eta, optimistic, t) * (w - 0.5)
        hist.append(logits - np.logaddexp.reduce(logits))
    return hist


def test_optimistic_reference_form_is_optimistic_multiplicative_weights():
    # With the uncut average (depth = t) the run's form is exactly optimistic MWU from the second step on:
    # log pi_{t+1} = log pi_t + eta (2 P(. > pi_t) - P(. > pi_{t-1})).
    P, eta = rps(0.4), 0.7
    hist = _run_reference_form(P, eta, 12, optimistic=True, full=True)
    for t in range(2, 12):
        w_t, w_prev = P @ np.exp(hist[t]), P @ np.exp(hist[t - 1])
        want = hist[t] + eta * (2 * w_t - w_prev)
        assert np.allclose(hist[t + 1], want - np.logaddexp.reduce(want))
    assert equilibrium.optimistic_step(eta, True, 1) == eta and equilibrium.optimistic_step(eta, True, 2) == 2 * eta
    with pytest.raises(ValueError, match="eta"):
        equilibrium.optimistic_step(0.0, True, 2)


@pytest.mark.parametrize("eta", [0.5, 1.0, 2.0])
def test_optimistic_last_iterate_converges_where_plain_mwu_cycles(eta):
    # rock-paper-scissors: plain multiplicative weights spirals out to the corners; the optimistic update with the
    # default cut average (OPTIMISTIC_DEPTH checkpoints) converges to the uniform equilibrium
    P = rps(0.4)
    exploit = lambda logp: (P @ np.exp(logp)).max() - 0.5  # noqa: E731
    assert exploit(_run_reference_form(P, eta, 2000, optimistic=False)[-1]) > 0.1
    assert exploit(_run_reference_form(P, eta, 2000, optimistic=True)[-1]) < 0.02


def test_last_iterate_options_validation():
    E = equilibrium.EquilibriumConfig
    assert E(optimistic=True).validate().enabled
    E(reference_mix=0.2, magnet_every=10, optimistic=True).validate()
    for cfg, match in [
        (E(magnet_every=10), r"equilibrium\.magnet_every=10 moves reference_mix"),
        (E(reference_mix=0.2, magnet_every=-1), r"equilibrium\.magnet_every=-1"),
    ]:
        with pytest.raises(ValueError, match=match):
            cfg.validate()
