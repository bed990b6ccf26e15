"""Options that make practical (sampled, fitted) SPPO reach the game's Nash equilibrium.

SPPO's guarantee (Wu et al. 2024, Theorem 4.1) is for the *averaged* policy of the *exact* multiplicative-weights
update pi_{t+1}(y) ~ pi_t(y) exp(eta P(y > pi_t)). A real run differs in three ways, each with an option here
(all off by default, so a plain recipe runs the paper's algorithm):

- it only sees the K responses it sampled: a response pi_t stops sampling never gets a target again and its
  probability only shrinks. `ExplorationConfig` scores E extra candidates that pi_t would rarely sample (from pi_0,
  from earlier iterates, or from pi_t at a higher temperature) against pi_t's own K samples, so their targets
  come back (`candidate_win_rates`);
- its last iterate cycles around the equilibrium. `reference_mix` (a) replaces the reference pi_t by the geometric
  mix pi_t^(1-a) pi_0^a (INPO's form, Zhang et al. 2024); a KL term tau toward pi_0 is the same update with
  a = eta tau / (1 + eta tau) and eta / (1 + eta tau) as the step (`kl_to_reference_mix`, magnetic mirror descent):
  the last iterate then converges to the regularised equilibrium. `magnet_every` moves that anchor (the magnet)
  to a recent iterate every N iterations (MPO), so the regularised equilibrium approaches the Nash one, and
  `optimistic` takes the optimistic step (EGPO / ONPO) through earlier checkpoints in the reference
  (`reference_weights`: every checkpoint's weight in iteration t's reference);
- it trains on the best / worst pair only. `all_responses` regresses every candidate on its own target
  eta (P(y > pi_t) - 1/2) (`all_response_pairs`: responses paired up, since the loss's two terms are independent);
- the released model is the last iterate. `average` names the iterates (and weights) whose mixture is the
  averaged policy: `sppo_hub.generation.mixture.MixturePolicy` samples it (`iterate_weights`).

Pure functions (numpy) for the math, tested against closed forms in tests/test_equilibrium.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..generation.mixture import MixturePolicy

__all__ = [
    "AVERAGE_SCHEMES", "EXPLORATION_SOURCES", "EquilibriumConfig", "ExplorationConfig", "all_response_pairs",
    "anchor_models", "candidate_win_rates", "combined_anchor", "explored_table_dataset", "iterate_weights", "kl_to_reference_mix",
    "magnet_iteration", "mix_log_probs", "optimistic_step", "optimistic_weights", "reference_weights",
    "regularized_targets", "tempered",
]

EXPLORATION_SOURCES = ("initial", "iterates", "temperature")
AVERAGE_SCHEMES = ("none", "uniform", "linear")


@dataclass
class ExplorationConfig:
    """Extra candidates per prompt, judged against pi_t's K samples, that pi_t itself would rarely sample."""

    candidates: int = field(
        default=0, metadata={"help": "E, extra candidates per prompt (0: off, the paper). Judge calls per prompt "
                                     "grow from K(K-1) to (K+E)(K+E-1)."},
    )
    source: str = field(
        default="initial",
        metadata={"help": "Where they come from: initial (pi_0), iterates (a uniformly drawn earlier iterate, "
                          "pi_0 included) or temperature (pi_t at `temperature`)."},
    )
    temperature: float = field(default=1.5, metadata={"help": "Sampling temperature when source=temperature."})

    def validate(self, prefix: str = "equilibrium.exploration") -> ExplorationConfig:
        if self.candidates < 0:
            raise ValueError(f"{prefix}.candidates={self.candidates}: give 0 (off) or more extra candidates per prompt.")
        if self.source not in EXPLORATION_SOURCES:
            raise ValueError(f"{prefix}.source={self.source!r}: use one of {', '.join(EXPLORATION_SOURCES)}.")
        if self.temperature <= 0:
            raise ValueError(f"{prefix}.temperature={self.temperature}: must be > 0 (e.g. 1.5).")
        return self


@dataclass
class EquilibriumConfig:
    """The recipe's `equilibrium:` section. Every default reproduces the paper's SPPO."""

    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    reference_mix: float = field(
        default=0.0,
        metadata={"help": "a in [0, 1): train against pi_t^(1-a) pi_0^a instead of pi_t (INPO-style regularisation "
                          "toward pi_0; a KL weight tau is a = eta tau / (1 + eta tau)). 0: off (the paper)."},
    )
    magnet_every: int = field(
        default=0,
        metadata={"help": "Move reference_mix's anchor (the magnet) from pi_0 to the latest multiple-of-N iterate every "
                          "N iterations (MPO's moving magnet: the last iterate then approaches the Nash equilibrium, not "
                          "the one regularised toward pi_0). 0: the magnet stays pi_0. Needs reference_mix > 0."},
    )
    optimistic: bool = field(
        default=False,
        metadata={"help": "Optimistic step (targets 2 P(. > pi_t) - P(. > pi_{t-1}), EGPO / ONPO): reference "
                          "pi_t^(1/2) pi_{t-1}^(1/4) pi_{t-2}^(1/4) and step 2 eta, so no extra judge call; one "
                          "forward pass of each earlier checkpoint over the training rows per iteration."},
    )
    all_responses: bool = field(
        default=False,
        metadata={"help": "Regress every candidate's log-ratio on its own eta (P(y > pi_t) - 1/2) (the triplets) "
                          "instead of the best / worst pair only. Needs loss sppo."},
    )
    average: str = field(
        default="uniform",
        metadata={"help": "Weights of the averaged policy recorded after each iteration (mixture.json): uniform "
                          "(the paper's guarantee), linear (weight t), or none (no record)."},
    )
    average_window: int = field(
        default=0, metadata={"help": "Keep only the last N iterates in the averaged policy (0: all of them)."}
    )

    @property
    def enabled(self) -> bool:
        """True when any option changes what the run trains on."""
        return self.exploration.candidates > 0 or self.reference_mix > 0 or self.all_responses or self.optimistic

    def validate(self, prefix: str = "equilibrium") -> EquilibriumConfig:
        self.exploration.validate(prefix + ".exploration")
        if not 0.0 <= self.reference_mix < 1.0:
            raise ValueError(f"{prefix}.reference_mix={self.reference_mix}: give a weight of pi_0 in [0, 1) "
                             "(0 turns it off; e.g. 0.05).")
        if self.magnet_every < 0:
            raise ValueError(f"{prefix}.magnet_every={self.magnet_every}: give 0 (the magnet stays pi_0) or a number "
                             "of iterations between magnet moves (e.g. 10).")
        if self.magnet_every and not self.reference_mix:
            raise ValueError(f"{prefix}.magnet_every={self.magnet_every} moves reference_mix's anchor, but "
                             f"{prefix}.reference_mix is 0: set it too (e.g. 0.2).")
        if self.average not in AVERAGE_SCHEMES:
            raise ValueError(f"{prefix}.average={self.average!r}: use one of {', '.join(AVERAGE_SCHEMES)}.")
        if self.average_window < 0:
            raise ValueError(f"{prefix}.average_window={self.average_window}: give 0 (all iterates) or a count.")
        return self


# ----- exploration -----


def candidate_win_rates(P, num_policy: int, include_diagonal: bool = True) -> np.ndarray:
    """P(y > pi_t) for every candidate, estimated against the first `num_policy` candidates (pi_t's samples) only.

    Extra candidates (columns >= num_policy) were not drawn from pi_t, so they must not enter the estimate of
    "pi_t". Without extras and with `include_diagonal` this is `preference.win_rates`. Policy samples compare
    against the other policy samples (their own 1/2 counts when `include_diagonal`, as in the paper); an extra
    candidate has no self-comparison among the policy columns, so its estimate is the plain mean over them.
    """
    arr = np.asarray(P, dtype=np.float64)
    n = arr.shape[0]
    if arr.ndim != 2 or arr.shape[1] != n:
        raise ValueError(f"P: expected a square matrix, got shape {arr.shape}")
    if not 1 <= num_policy <= n:
        raise ValueError(f"num_policy={num_policy}: must lie in [1, {n}] (the number of pi_t's own samples)")
    cols = arr[:, :num_policy]
    if include_diagonal:
        return cols.mean(axis=1)
    if num_policy < 2:
        raise ValueError("num_policy=1 without the diagonal leaves policy samples nothing to compare to")
    total = cols.sum(axis=1)
    total[:num_policy] -= np.diag(arr)[:num_policy]
    counts = np.full(n, float(num_policy))
    counts[:num_policy] -= 1
    return total / counts


def tempered(probs, temperature: float) -> np.ndarray:
    """pi^(1/T), renormalised along the last axis: what sampling pi at temperature T draws from."""
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}: must be > 0")
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=-1, keepdims=True)


def explored_table_dataset(table_ds, num_policy: int, include_diagonal: bool = True):
    """A table dataset (`sppo_hub.core.data`) whose `win_rates` are re-estimated against pi_t's samples only.

    The first `num_policy` responses of every row must be pi_t's own; the rest are exploration candidates.
    """

    def fix(row):
        row["win_rates"] = candidate_win_rates(row["prob_matrix"], num_policy, include_diagonal).tolist()
        return row

    return table_ds.map(fix, desc="win rates vs pi_t's samples") if len(table_ds) else table_ds


# ----- regularisation toward pi_0 -----


def kl_to_reference_mix(tau: float, eta: float) -> tuple[float, float]:
    """(a, eta') such that the KL-regularised step equals the geometric-mix step.

    argmax_pi eta <pi, P(. > pi_t)> - KL(pi || pi_t) - eta tau KL(pi || pi_0) is
    pi ~ pi_t^(1-a) pi_0^a exp(eta' P) with a = eta tau / (1 + eta tau) and eta' = eta / (1 + eta tau).
    """
    if tau < 0 or eta <= 0:
        raise ValueError(f"need tau >= 0 and eta > 0 (got tau={tau}, eta={eta})")
    return eta * tau / (1 + eta * tau), eta / (1 + eta * tau)


def mix_log_probs(logp_current, logp_initial, reference_mix: float):
    """log of the (unnormalised) reference pi_t^(1-a) pi_0^a: (1 - a) log pi_t + a log pi_0 (arrays or tensors)."""
    if not 0.0 <= reference_mix < 1.0:
        raise ValueError(f"reference_mix={reference_mix}: must lie in [0, 1)")
    if reference_mix == 0:
        return logp_current
    return (1 - reference_mix) * logp_current + reference_mix * logp_initial


def regularized_targets(win_rates, eta: float, logp_current=None, logp_initial=None, reference_mix: float = 0.0):
    """Targets for log pi_{t+1}(y) - log pi_t(y): eta (P(y > pi_t) - 1/2) + a (log pi_0(y) - log pi_t(y)).

    Fitting log(pi / pi_t) to these is fitting log(pi / (pi_t^(1-a) pi_0^a)) to eta (P - 1/2); a = 0 is SPPO.
    """
    target = eta * (np.asarray(win_rates, dtype=np.float64) - 0.5)
    if reference_mix == 0:
        return target
    if logp_current is None or logp_initial is None:
        raise ValueError("reference_mix > 0 needs logp_current (log pi_t) and logp_initial (log pi_0)")
    shift = mix_log_probs(np.asarray(logp_current), np.asarray(logp_initial), reference_mix) - np.asarray(logp_current)
    return target + shift


# ----- the last iterate: a moving magnet and optimism -----


def magnet_iteration(t: int, every: int) -> int:
    """The iterate whose log-probs anchor iteration t's reference (the magnet): pi_0 when `every` = 0, else the
    last multiple of `every` before t, pi_{every floor((t-1)/every)}.

    Magnetic mirror descent toward a fixed pi_0 converges to the equilibrium of the game regularised toward pi_0,
    not to the Nash one; moving the magnet to the current iterate every `every` iterations (MPO, Wang et al. 2024,
    arXiv 2410.16714: a proximal-point outer loop) makes that regularised equilibrium approach the Nash one.
    """
    if t < 1 or every < 0:
        raise ValueError(f"need t >= 1 and every >= 0 (got t={t}, every={every})")
    return every * ((t - 1) // every) if every else 0


OPTIMISTIC_DEPTH = 3  # checkpoints in the optimistic reference: weights 1/2, 1/4, 1/4 (the rest of the EMA lumped)


def optimistic_weights(t: int, depth: int = OPTIMISTIC_DEPTH) -> dict[int, float]:
    """{iteration: weight} of the reference of iteration t's optimistic step (run numbering: pi_t is trained from
    pi_{t-1}): the geometric moving average B = pi_{t-1}^(1/2) pi_{t-2}^(1/4) ..., cut after `depth` checkpoints
    (the cut-off mass on the oldest; iterations below 0 fold into pi_0).

    Optimistic multiplicative weights, log pi_{t+1} = log pi_t + eta (2 P(. > pi_t) - P(. > pi_{t-1})), is the same
    as log pi_{t+1} = log B_t + 2 eta P(. > pi_t) with B_{t+1} = (B_t pi_{t+1})^(1/2) (the "past extragradient"
    form; optimistic / extragradient methods for preference games: EGPO, arXiv 2503.08942, ONPO, arXiv 2502.16852).
    The second win rate enters through earlier checkpoints' log-probs, so no extra judge call is made.
    """
    if t < 1 or depth < 1:
        raise ValueError(f"need t >= 1 and depth >= 1 (got t={t}, depth={depth})")
    out: dict[int, float] = {}
    for k in range(depth):
        w = 0.5 ** (k + 1) if k < depth - 1 else 0.5 ** (depth - 1)
        out[max(t - 1 - k, 0)] = out.get(max(t - 1 - k, 0), 0.0) + w
    return out


def reference_weights(t: int, reference_mix: float = 0.0, magnet_every: int = 0,
                      optimistic: bool = False) -> dict[int, float]:
    """{iteration: weight}, summing to 1, of the checkpoints whose log-probs make iteration t's reference
    prod_i pi_i^(w_i): (1 - a) on pi_{t-1} (on `optimistic_weights` from t = 2 on) and a = `reference_mix` on the
    magnet `magnet_iteration(t, magnet_every)`. {t - 1: 1.0}: the paper's reference pi_{t-1}."""
    base = optimistic_weights(t) if optimistic and t >= 2 else {t - 1: 1.0}
    out = {i: (1.0 - reference_mix) * w for i, w in base.items()}
    if reference_mix > 0:
        m = magnet_iteration(t, magnet_every)
        out[m] = out.get(m, 0.0) + float(reference_mix)
    return out


def anchor_models(t: int, reference_mix: float = 0.0, magnet_every: int = 0, optimistic: bool = False):
    """`reference_weights` without the current policy pi_{t-1} (the trainer's own reference): what
    `combined_anchor` folds into one `mix_log_probs` anchor. Empty: the reference is pi_{t-1} alone."""
    weights = reference_weights(t, reference_mix, magnet_every, optimistic)
    return {i: w for i, w in weights.items() if i != t - 1 and w > 0}


def combined_anchor(weights, logps):
    """(c, log anchor) with (1 - c) log pi_t + c log anchor = (1 - sum w) log pi_t + sum w_i log p_i.

    Several geometric anchors in the reference (the magnet, earlier iterates for optimism) folded into the one
    `mix_log_probs` the trainer applies: c = sum w_i and log anchor = sum w_i log p_i / c.
    """
    weights = [float(w) for w in weights]
    if len(weights) != len(logps) or not weights or min(weights) < 0 or not 0 < sum(weights) < 1:
        raise ValueError(f"anchor weights {weights}: need one per log-prob array, each >= 0, sum in (0, 1)")
    c = sum(weights)
    return c, sum(w * lp for w, lp in zip(weights, logps)) / c


def optimistic_step(eta: float, optimistic: bool, t: int) -> float:
    """SPPO's step at iteration t: 2 eta for the optimistic update from t = 2 on (`optimistic_weights`), else eta."""
    if eta <= 0:
        raise ValueError(f"eta={eta}: must be > 0")
    return 2.0 * eta if optimistic and t >= 2 else float(eta)


# ----- all K responses -----


def response_pairing(k: int) -> list[tuple[int, int]]:
    """Pairs (a, b) that put every one of k responses in exactly as many rows: disjoint pairs when k is even,
    the cycle (0,1), (1,2), ..., (k-1,0) when k is odd (each response then appears twice, once per side)."""
    if k < 2:
        raise ValueError(f"need at least 2 responses to pair, got {k}")
    if k % 2 == 0:
        return [(i, i + 1) for i in range(0, k, 2)]
    return [(i, (i + 1) % k) for i in range(k)]


def all_response_pairs(table_ds):
    """Every response with its own target, in the pairs format the trainer reads (loss `sppo`).

    SPPO's loss is a sum of independent terms (l_w - eta (P_w - 1/2))^2 + (l_l - eta (P_l - 1/2))^2, so pairing
    responses up (`response_pairing`) and passing each one's win rate as `chosen_probs_win` / `chosen_probs_lose`
    regresses every response on its own target, with equal weight per response. "chosen" here means "first of
    the row", not "better".
    """
    from datasets import Dataset

    from ..core.data import PAIRS_FEATURES, _assistant, _user

    rows = {name: [] for name in PAIRS_FEATURES}
    for i, ex in enumerate(table_ds):
        responses, wr, P = ex["responses"], ex["win_rates"], ex["prob_matrix"]
        if len(responses) != len(wr):
            raise ValueError(f"win_rates (row {i}): {len(wr)} values for {len(responses)} responses")
        for a, b in response_pairing(len(responses)):
            rows["prompt"].append(_user(ex["prompt"]))
            rows["chosen"].append(_assistant(responses[a]))
            rows["rejected"].append(_assistant(responses[b]))
            rows["chosen_probs"].append(float(P[a][b]))
            rows["chosen_probs_win"].append(float(wr[a]))
            rows["chosen_probs_lose"].append(float(wr[b]))
    return Dataset.from_dict(rows, features=PAIRS_FEATURES)


# ----- the averaged policy -----


def iterate_weights(iterations: Sequence[int], scheme: str = "uniform", window: int = 0) -> dict[int, float]:
    """Normalised weights of iterates 1..t in the averaged policy: uniform, or linear (proportional to t).

    `window` > 0 keeps only the last `window` iterates. Iteration 0 (pi_0) is never part of the average.
    """
    if scheme not in AVERAGE_SCHEMES or scheme == "none":
        raise ValueError(f"scheme={scheme!r}: use uniform or linear")
    its = sorted({int(t) for t in iterations if int(t) >= 1})
    if not its:
        raise ValueError("iterations: need at least one trained iterate (t >= 1)")
    if window < 0:
        raise ValueError(f"window={window}: must be >= 0")
    if window:
        its = its[-window:]
    raw = np.ones(len(its)) if scheme == "uniform" else np.asarray(its, dtype=np.float64)
    raw /= raw.sum()
    return {t: float(w) for t, w in zip(its, raw)}


def mixture_record(models: dict[int, str], scheme: str = "uniform", window: int = 0,
                   revisions: dict[int, str | None] | None = None, **metadata) -> MixturePolicy:
    """The averaged policy of the trained iterates in `models` (iteration -> model), weighted by `scheme`."""
    weights = iterate_weights(list(models), scheme, window)
    return MixturePolicy.from_iterates(models, weights, scheme, revisions, window=window, **metadata)
