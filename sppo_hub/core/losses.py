"""Preference losses as pure functions of per-example log-ratios.

Every loss takes `chosen_logratios = log pi(y_w|x) - log pi_ref(y_w|x)` and `rejected_logratios` (the same for
y_l), float tensors of shape (B,), plus its own parameters, and returns per-example losses of shape (B,). The
trainer averages them. `get_loss(name)` returns a loss by name.

SPPO's parameter is `eta` (the paper's Algorithm 1). The paper's code names its inverse `beta = 1/eta` (0.001 in
the released recipe); every SPPO loss accepts either, and checks that they agree when both are given.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["IPO_REDUCTIONS", "LOSSES", "SPPO_LOSSES", "check_probabilities", "dpo", "get_loss", "inpo", "ipo", "resolve_eta", "sppo", "sppo_hard", "sppo_single"]

DEFAULT_ETA = 1000.0  # = 1 / 0.001, the beta of the paper's released code


def resolve_eta(eta: float | None = None, beta: float | None = None, default: float | None = DEFAULT_ETA) -> float:
    """The SPPO eta from `eta` and/or `beta = 1/eta`; a clear error when both are given and disagree."""
    if eta is not None and eta <= 0:
        raise ValueError(f"eta must be > 0 (got {eta}); the paper's code uses eta = 1000 (beta = 0.001).")
    if beta is not None and beta <= 0:
        raise ValueError(f"beta must be > 0 (got {beta}); for SPPO beta = 1/eta, e.g. beta = 0.001.")
    if eta is not None and beta is not None:
        if not math.isclose(eta * beta, 1.0, rel_tol=1e-6):
            raise ValueError(
                f"eta={eta} and beta={beta} disagree: SPPO uses beta = 1/eta (here 1/eta = {1 / eta:g}). "
                "Give only one of them, or make beta = 1/eta."
            )
        return float(eta)
    if eta is not None:
        return float(eta)
    if beta is not None:
        return 1.0 / float(beta)
    if default is None:
        raise ValueError("SPPO needs eta (or beta = 1/eta); set eta, e.g. eta=1000.")
    return float(default)


def check_probabilities(name: str, p: torch.Tensor) -> torch.Tensor:
    """`p` unchanged, or a ValueError naming `name` when it holds NaN or values outside [0, 1]."""
    if torch.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"{name} must hold probabilities in [0, 1]; got values from {p.min().item()} to {p.max().item()}.")
    return p


def sppo(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    chosen_probs_win: torch.Tensor,
    chosen_probs_lose: torch.Tensor,
    eta: float | None = None,
    beta: float | None = None,
) -> torch.Tensor:
    """Soft SPPO (paper eq. 4.7), winner and loser terms averaged.

    ((l_w - eta (P_w - 1/2))^2 + (l_l - eta (P_l - 1/2))^2) / 2 with P_w = P(y_w > pi_t | x) (`chosen_probs_win`)
    and P_l = P(y_l > pi_t | x) (`chosen_probs_lose`): each log-ratio is regressed onto eta times its response's
    advantage in win rate over a fair coin.
    """
    eta = resolve_eta(eta, beta)
    p_w = check_probabilities("chosen_probs_win", chosen_probs_win).to(chosen_logratios)
    p_l = check_probabilities("chosen_probs_lose", chosen_probs_lose).to(rejected_logratios)
    return ((chosen_logratios - eta * (p_w - 0.5)) ** 2 + (rejected_logratios - eta * (p_l - 0.5)) ** 2) / 2


def sppo_single(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    chosen_probs: torch.Tensor,
    eta: float | None = None,
    beta: float | None = None,
) -> torch.Tensor:
    """SPPO with only the pairwise P = P(y_w > y_l | x): winner target eta (P - 1/2), loser eta (1/2 - P); averaged."""
    p = check_probabilities("chosen_probs", chosen_probs).to(chosen_logratios)
    return sppo(chosen_logratios, rejected_logratios, p, 1 - p, eta=eta, beta=beta)


def sppo_hard(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    eta: float | None = None,
    beta: float | None = None,
) -> torch.Tensor:
    """Hard SPPO (P_w = 1, P_l = 0) in TRL's convention: the two squared terms are SUMMED, not averaged.

    (l_w - eta/2)^2 + (l_l + eta/2)^2, identical to TRL DPOTrainer's `loss_type="sppo_hard"` with beta = 1/eta,
    hence twice `sppo` at P_w = 1, P_l = 0.
    """
    eta = resolve_eta(eta, beta)
    return (chosen_logratios - eta / 2) ** 2 + (rejected_logratios + eta / 2) ** 2


def dpo(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """DPO's sigmoid loss, with conservative label smoothing eps (cDPO): the label is flipped with probability eps."""
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5) (got {label_smoothing}); 0 is plain DPO.")
    margin = beta * (chosen_logratios - rejected_logratios)
    return -(1 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin)


IPO_REDUCTIONS = ("mean", "sum")


def ipo(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    beta: float = 0.1,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """IPO (Azar et al. eq. 17): (h - 1/(2 tau))^2 with tau = `beta` (TRL's naming).

    h = l_w / n_w - l_l / n_l when the completion token counts `chosen_lengths` (n_w) and `rejected_lengths` (n_l)
    are given: TRL >= 1.0's form, per-token log-ratios, which the IPO authors confirmed their results use.
    Without lengths h = l_w - l_l on summed log-ratios: TRL 0.x's and uclaml/SPPO's form.
    """
    if beta <= 0:
        raise ValueError(f"beta (IPO's tau) must be > 0 (got {beta}).")
    if (chosen_lengths is None) != (rejected_lengths is None):
        raise ValueError("ipo: give both chosen_lengths and rejected_lengths (per-token form) or neither (summed form).")
    if chosen_lengths is not None:
        chosen_logratios = chosen_logratios / chosen_lengths.to(chosen_logratios).clamp(min=1.0)
        rejected_logratios = rejected_logratios / rejected_lengths.to(rejected_logratios).clamp(min=1.0)
    return (chosen_logratios - rejected_logratios - 1 / (2 * beta)) ** 2


def inpo(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    chosen_logratios_prev: torch.Tensor,
    rejected_logratios_prev: torch.Tensor,
    eta: float | None = None,
    beta: float | None = None,
    tau: float = 0.0,
) -> torch.Tensor:
    """INPO (Zhang et al. 2024, "Iterative Nash Policy Optimization"): (h - eta/2)^2.

    The target policy is pi_ref^(tau eta) pi_t^(1 - tau eta) exp(eta P(y > pi_t)), a geometric mix of the reference
    and the previous iterate; with log-ratios against pi_ref (`chosen_logratios`, `rejected_logratios`) and against
    pi_t (`*_prev`),
    h = tau eta (l_w - l_l)_ref + (1 - tau eta) (l_w - l_l)_prev.
    `tau` is the KL weight toward pi_ref; 0 <= tau * eta <= 1. `beta` may be given instead of eta (beta = 1/eta).
    """
    eta = resolve_eta(eta, beta)
    mix = tau * eta
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"INPO needs 0 <= tau * eta <= 1 (got tau={tau}, eta={eta}); lower tau or eta.")
    h = mix * (chosen_logratios - rejected_logratios) + (1 - mix) * (chosen_logratios_prev - rejected_logratios_prev)
    return (h - eta / 2) ** 2


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "sppo": sppo,
    "sppo_single": sppo_single,
    "sppo_hard": sppo_hard,
    "dpo": dpo,
    "ipo": ipo,
    "inpo": inpo,
}
SPPO_LOSSES = ("sppo", "sppo_single", "sppo_hard", "inpo")  # the losses parameterised by eta


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss function called `name` (one of `LOSSES`)."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}.") from None
