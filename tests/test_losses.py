"""Losses against hand-computed closed forms, gradient signs, and the eta/beta agreement check."""

from __future__ import annotations

import math

import pytest
import torch

from sppo_hub.core import losses


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_sppo_closed_form():
    # eta=2: winner target 2*(0.8-0.5)=0.6, loser target 2*(0.3-0.5)=-0.4 -> ((1-0.6)^2 + (-0.5+0.4)^2)/2
    out = losses.sppo(t(1.0, 0.0), t(-0.5, 0.0), t(0.8, 0.5), t(0.3, 0.5), eta=2.0)
    assert out.shape == (2,)
    assert out.tolist() == pytest.approx([0.085, 0.0])


def test_sppo_single_closed_form():
    # P=0.8, eta=2: winner target 0.6, loser target -0.6 -> ((1-0.6)^2 + (-1+0.6)^2)/2 = 0.16
    out = losses.sppo_single(t(1.0), t(-1.0), t(0.8), eta=2.0)
    assert out.tolist() == pytest.approx([0.16])


def test_sppo_hard_closed_form_sums_terms():
    # TRL convention: (l_w - eta/2)^2 + (l_l + eta/2)^2, summed: (1-1)^2 + (-0.5+1)^2 = 0.25
    out = losses.sppo_hard(t(1.0), t(-0.5), eta=2.0)
    assert out.tolist() == pytest.approx([0.25])
    # twice the soft loss at P_w = 1, P_l = 0
    soft = losses.sppo(t(1.0), t(-0.5), t(1.0), t(0.0), eta=2.0)
    assert out.tolist() == pytest.approx((2 * soft).tolist())


def test_dpo_closed_form_with_label_smoothing():
    # beta=0.5, margin = 0.5 * (1 - (-1)) = 1
    plain = losses.dpo(t(1.0), t(-1.0), beta=0.5)
    assert plain.item() == pytest.approx(math.log1p(math.exp(-1.0)))
    smooth = losses.dpo(t(1.0), t(-1.0), beta=0.5, label_smoothing=0.1)
    assert smooth.item() == pytest.approx(0.9 * math.log1p(math.exp(-1.0)) + 0.1 * math.log1p(math.exp(1.0)))
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.dpo(t(1.0), t(-1.0), label_smoothing=0.5)


def test_ipo_closed_form():
    # beta (tau) = 0.25 -> target margin 1/(2*0.25) = 2
    assert losses.ipo(t(1.0, 1.0), t(-1.0, 0.0), beta=0.25).tolist() == pytest.approx([0.0, 1.0])


def test_inpo_closed_form_and_limits():
    # eta=2, tau=0.25 -> mix 0.5; h = 0.5*(2 - (-1)) + 0.5*(0.5 - (-0.5)) = 2; (h - eta/2)^2 = 1
    out = losses.inpo(t(2.0), t(-1.0), t(0.5), t(-0.5), eta=2.0, tau=0.25)
    assert out.item() == pytest.approx(1.0)
    # tau = 0: only the previous iterate matters (an IPO-like regression of its margin onto eta/2)
    prev_only = losses.inpo(t(9.0), t(-9.0), t(1.0), t(0.0), eta=2.0, tau=0.0)
    assert prev_only.item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="tau \\* eta"):
        losses.inpo(t(0.0), t(0.0), t(0.0), t(0.0), eta=2.0, tau=1.0)


def test_sppo_gradient_signs():
    """P_w > 1/2 > P_l: descending the loss raises the chosen log-ratio and lowers the rejected one."""
    lw = torch.zeros(3, requires_grad=True)
    ll = torch.zeros(3, requires_grad=True)
    losses.sppo(lw, ll, torch.tensor([0.7, 0.9, 0.6]), torch.tensor([0.3, 0.1, 0.45]), eta=5.0).sum().backward()
    assert (lw.grad < 0).all() and (ll.grad > 0).all()
    for name in ("sppo_hard", "dpo", "ipo"):
        lw.grad = ll.grad = None
        fn = losses.get_loss(name)
        kwargs = {"eta": 5.0} if name == "sppo_hard" else {}
        fn(lw, ll, **kwargs).sum().backward()
        assert (lw.grad < 0).all() and (ll.grad > 0).all(), name


def test_eta_beta_agreement():
    lw, ll, pw, pl = t(0.0), t(0.0), t(0.7), t(0.3)
    both = losses.sppo(lw, ll, pw, pl, eta=1000.0, beta=0.001)
    only_beta = losses.sppo(lw, ll, pw, pl, beta=0.001)
    only_eta = losses.sppo(lw, ll, pw, pl, eta=1000.0)
    assert both.item() == only_beta.item() == only_eta.item() == pytest.approx((200.0**2 + 200.0**2) / 2)
    assert losses.resolve_eta() == 1000.0  # the paper code's beta = 0.001
    with pytest.raises(ValueError, match="disagree"):
        losses.sppo(lw, ll, pw, pl, eta=10.0, beta=0.5)
    with pytest.raises(ValueError, match="eta must be > 0"):
        losses.sppo_hard(lw, ll, eta=-1.0)


def test_bad_probabilities_and_names():
    with pytest.raises(ValueError, match="chosen_probs_win"):
        losses.sppo(t(0.0), t(0.0), t(1.5), t(0.3), eta=1.0)
    with pytest.raises(ValueError, match="chosen_probs"):
        losses.sppo_single(t(0.0), t(0.0), t(float("nan")), eta=1.0)
    with pytest.raises(ValueError, match="unknown loss 'kto'"):
        losses.get_loss("kto")
    assert set(losses.LOSSES) == {"sppo", "sppo_single", "sppo_hard", "dpo", "ipo", "inpo"}


def test_ipo_per_token_and_summed_forms():
    from sppo_hub.core.losses import ipo

    lw, ll = torch.tensor([6.0, -2.0]), torch.tensor([1.0, 3.0])
    nw, nl = torch.tensor([3, 2]), torch.tensor([4, 1])
    # summed: (6 - 1 - 1/(2*0.25))^2 = 3^2, (-2 - 3 - 2)^2 = 49
    assert torch.allclose(ipo(lw, ll, beta=0.25), torch.tensor([9.0, 49.0]))
    # per token: (6/3 - 1/4 - 2)^2 = 0.0625, (-2/2 - 3/1 - 2)^2 = 36
    assert torch.allclose(ipo(lw, ll, beta=0.25, chosen_lengths=nw, rejected_lengths=nl), torch.tensor([0.0625, 36.0]))
    with pytest.raises(ValueError, match="both"):
        ipo(lw, ll, chosen_lengths=nw)
