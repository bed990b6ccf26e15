"""The game SPPO solves, in the tabular case: exploitability of SPPO vs iterative DPO / IPO.

Each prompt has N candidate responses. Every response has a style (rock, paper, scissors) and a
quality; P(i > j) = sigmoid(quality gap + a rock-paper-scissors term), so preferences cycle and no
Bradley-Terry score can represent them. The game's Nash equilibrium (the von Neumann winner, a mixed
policy) is found per prompt by a linear program (`scipy.optimize.linprog`).

Methods, each for T iterations from the same pi_0 (policy parameters: one logit per response):
- `sppo_exact`: the exact multiplicative-weights update pi_{t+1}(y) ~ pi_t(y) exp(eta P(y > pi_t)).
- `sppo_kl`: the same with a KL pull toward pi_0 (magnetic mirror descent): its last iterate converges.
- `sppo_fit`: the practical algorithm. K responses are sampled from pi_t, scored against each other
  (`sppo_hub.preference`), and the logits are fitted by gradient steps on `sppo_hub.losses.sppo` with
  pi_t as the reference.
- `sppo_fit_explore`: `sppo_fit` plus a few candidates drawn uniformly, scored against pi_t's samples.
- `dpo`, `ipo`: iterative DPO / IPO on the best / worst sampled pair (`preference.select_pair`),
  `sppo_hub.losses.dpo` / `ipo`, reference pi_t.

Reported per iteration: exploitability max_y P(y > pi) - 1/2 (0 exactly at the Nash equilibrium) of the
last and of the averaged policy, and the win rate against pi_0, averaged over prompts.

    python benchmarks/nash_game.py --out outputs/nash     # 16 prompts x 6 responses, T=60 (< 1 min)
    python benchmarks/nash_game.py --smoke --out /tmp/n   # seconds
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = ("sppo_exact", "sppo_kl", "sppo_fit", "sppo_fit_explore", "dpo", "ipo")
# Style s beats style (s + 1) % 3: rock-paper-scissors.
CYCLE = np.array([[0, 1, -1], [-1, 0, 1], [1, -1, 0]], dtype=np.float64)


@dataclass
class GameConfig:
    """Sizes and step sizes of the benchmark."""

    prompts: int = field(default=16, metadata={"help": "Number of prompts (independent games)."})
    responses: int = field(default=6, metadata={"help": "Candidate responses per prompt (N)."})
    iterations: int = field(default=60, metadata={"help": "T, iterations of every method."})
    samples: int = field(default=8, metadata={"help": "K, responses sampled from pi_t per prompt (fitted methods)."})
    explore: int = field(default=2, metadata={"help": "Uniform candidates added per prompt in sppo_fit_explore."})
    eta: float = field(default=1.0, metadata={"help": "SPPO's eta (exact and fitted)."})
    kl: float = field(default=0.05, metadata={"help": "sppo_kl: KL weight tau toward pi_0 (eta * tau in (0, 1))."})
    beta: float = field(default=0.1, metadata={"help": "DPO's beta / IPO's tau."})
    fit_steps: int = field(default=50, metadata={"help": "Adam steps per iteration of the fitted methods."})
    fit_lr: float = field(default=0.1, metadata={"help": "Adam learning rate of the fitted methods."})
    seed: int = field(default=0, metadata={"help": "Seed of the game and of sampling."})


# ----- the game (pure functions) -----


def make_game(cfg: GameConfig) -> tuple[np.ndarray, np.ndarray]:
    """(P, pi_0): P[x, i, j] = P(y_i > y_j | x) with cycling styles, and a random starting policy."""
    rng = np.random.default_rng(cfg.seed)
    n = cfg.responses
    games = []
    for _ in range(cfg.prompts):
        style = rng.permutation(np.arange(n) % 3)
        quality = rng.normal(0.0, 0.6, size=n)
        margin = quality[:, None] - quality[None, :] + 2.0 * CYCLE[style[:, None], style[None, :]]
        games.append(1.0 / (1.0 + np.exp(-margin)))
    logits0 = rng.normal(0.0, 1.5, size=(cfg.prompts, n))
    pi0 = np.exp(logits0 - logits0.max(axis=1, keepdims=True))
    return np.stack(games), pi0 / pi0.sum(axis=1, keepdims=True)


def nash_policy(P: np.ndarray) -> np.ndarray:
    """The von Neumann winner of one prompt: min over pi of max_y P(y > pi), by linear programming."""
    from scipy.optimize import linprog

    n = P.shape[0]
    # variables (pi_1..pi_n, v): minimise v s.t. P pi - v <= 0, sum pi = 1, pi >= 0
    res = linprog(c=np.r_[np.zeros(n), 1.0], A_ub=np.c_[P, -np.ones(n)], b_ub=np.zeros(n),
                  A_eq=np.r_[np.ones(n), 0.0][None, :], b_eq=[1.0], bounds=[(0, None)] * n + [(None, None)])
    if not res.success:
        raise RuntimeError(f"linprog failed: {res.message}")
    pi = np.clip(res.x[:n], 0.0, None)
    return pi / pi.sum()


def win_vs(P: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """P(y > pi | x) for every response y of every prompt: shape (prompts, N)."""
    return np.einsum("xij,xj->xi", P, pi)


def exploitability(P: np.ndarray, pi: np.ndarray) -> float:
    """Mean over prompts of max_y P(y > pi) - 1/2: >= 0, and 0 exactly at the Nash equilibrium."""
    return float((win_vs(P, pi).max(axis=1) - 0.5).mean())


def win_rate(P: np.ndarray, pi: np.ndarray, other: np.ndarray) -> float:
    """Mean over prompts of P(pi > other)."""
    return float(np.einsum("xi,xij,xj->x", pi, P, other).mean())


# ----- methods -----


def sppo_exact_step(P, pi, eta, pi0=None, kl=0.0):
    """One multiplicative-weights step; with kl > 0 the magnetic step toward pi0 (pi_t^(1-a) pi0^a exp(eta w), a = eta kl / (1 + eta kl))."""
    logits = np.log(pi) + eta * win_vs(P, pi)
    if kl > 0:
        logits = (logits + eta * kl * np.log(pi0)) / (1 + eta * kl)
    logits -= logits.max(axis=1, keepdims=True)
    new = np.exp(logits)
    return new / new.sum(axis=1, keepdims=True)


def _sample_tables(P, pi, rng, k, explore):
    """Per prompt: K indices drawn from pi (+ `explore` uniform ones) and the true P among them as a raw table."""
    from sppo_hub import preference

    idx, probs = [], []
    for x in range(P.shape[0]):
        drawn = rng.choice(P.shape[1], size=k, p=pi[x])
        cand = np.r_[drawn, rng.integers(0, P.shape[1], size=explore)]
        Pm = preference.pairwise_probabilities(P[x][np.ix_(cand, cand)], kind="probs")
        idx.append(cand)
        probs.append(Pm)
    return idx, probs


def fitted_step(P, theta, method, cfg: GameConfig, rng):
    """Sample from pi_t = softmax(theta), build the toolkit's win rates / pairs, fit theta on the toolkit's loss."""
    import torch

    from sppo_hub import losses, preference

    pi = torch.softmax(theta, dim=1).detach().numpy().astype(np.float64)
    explore = cfg.explore if method == "sppo_fit_explore" else 0
    idx, Ps = _sample_tables(P, pi, rng, cfg.samples, explore)
    rows_w, cols_w, rows_l, cols_l, p_w, p_l = [], [], [], [], [], []
    for x, (cand, Pm) in enumerate(zip(idx, Ps)):
        if method.startswith("sppo"):
            # every candidate scored against pi_t's K samples (the paper's estimate, self-comparison included);
            # sppo's two squared terms are independent, so candidates are paired up in order
            wr = preference.win_rates(Pm) if explore == 0 else Pm[:, : cfg.samples].mean(axis=1)
            half = len(cand) // 2
            rows_w += [x] * half
            cols_w += list(cand[:half])
            p_w += list(wr[:half])
            rows_l += [x] * half
            cols_l += list(cand[half : 2 * half])
            p_l += list(wr[half : 2 * half])
        else:
            w, l = preference.select_pair(preference.win_rates(Pm))
            rows_w.append(x)
            cols_w.append(cand[w])
            rows_l.append(x)
            cols_l.append(cand[l])
    ref = torch.log_softmax(theta, dim=1).detach()
    theta = theta.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=cfg.fit_lr)
    loss_fn = losses.get_loss("sppo" if method.startswith("sppo") else method)
    extra = ({"chosen_probs_win": torch.tensor(p_w), "chosen_probs_lose": torch.tensor(p_l), "eta": cfg.eta}
             if method.startswith("sppo") else {"beta": cfg.beta})
    for _ in range(cfg.fit_steps):
        logratio = torch.log_softmax(theta, dim=1) - ref
        loss = loss_fn(logratio[rows_w, cols_w], logratio[rows_l, cols_l], **extra).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return theta.detach()


def run_method(method: str, P: np.ndarray, pi0: np.ndarray, cfg: GameConfig) -> list[dict]:
    """Per-iteration metrics (iteration 0 = pi_0) of one method."""
    import torch

    rng = np.random.default_rng(cfg.seed + 1)
    torch.manual_seed(cfg.seed)
    pi, theta = pi0.copy(), torch.tensor(np.log(pi0))
    total = np.zeros_like(pi0)
    rows = []
    for t in range(cfg.iterations + 1):
        if t > 0:
            if method == "sppo_exact":
                pi = sppo_exact_step(P, pi, cfg.eta)
            elif method == "sppo_kl":
                pi = sppo_exact_step(P, pi, cfg.eta, pi0, cfg.kl)
            else:
                theta = fitted_step(P, theta, method, cfg, rng)
                pi = torch.softmax(theta, dim=1).numpy().astype(np.float64)
            total += pi
        avg = total / t if t else pi
        rows.append({"iteration": t, "exploit_last": exploitability(P, pi), "exploit_avg": exploitability(P, avg),
                     "winrate_vs_pi0": win_rate(P, pi, pi0), "support_last": float((pi > 0.01).sum(axis=1).mean())})
    return rows


# ----- report -----


def print_table(results: dict, nash: dict, checkpoints: list[int]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Tabular SPPO game: exploitability (max_y P(y > pi) - 1/2), Nash support {nash['support']:.1f}")
    table.add_column("method")
    for t in checkpoints:
        table.add_column(f"T={t} last / avg", justify="right")
    table.add_column("win vs pi_0 (last)", justify="right")
    for method, rows in results.items():
        table.add_row(method, *[f"{rows[t]['exploit_last']:.3f} / {rows[t]['exploit_avg']:.3f}" for t in checkpoints],
                      f"{rows[-1]['winrate_vs_pi0']:.3f}")
    table.add_row("nash (LP)", *[f"{nash['exploitability']:.3f}" for _ in checkpoints], f"{nash['winrate_vs_pi0']:.3f}")
    Console(width=160).print(table)


def save_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (method, rows) in enumerate(results.items()):
        ts = [r["iteration"] for r in rows]
        axes[0].plot(ts, [max(r["exploit_avg"], 1e-4) for r in rows], color=f"C{i}", label=f"{method} (avg)")
        axes[0].plot(ts, [max(r["exploit_last"], 1e-4) for r in rows], color=f"C{i}", ls=":", alpha=0.6)
        axes[1].plot(ts, [r["winrate_vs_pi0"] for r in rows], color=f"C{i}", label=method)
    axes[0].set(yscale="log", xlabel="iteration", ylabel="exploitability", title="averaged (solid) / last (dotted)")
    axes[1].set(xlabel="iteration", ylabel="P(pi_t > pi_0)", title="win rate vs pi_0 (last iterate)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/benchmarks/nash_game", help="Folder for results.json and plot.png.")
    parser.add_argument("--smoke", action="store_true", help="Tiny size (4 prompts, T=8): seconds.")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"Comma-separated subset of {', '.join(METHODS)}.")
    for name, f in GameConfig.__dataclass_fields__.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(f.default), default=None, help=f.metadata["help"])
    args = parser.parse_args(argv)
    cfg = GameConfig(prompts=4, iterations=8, fit_steps=20) if args.smoke else GameConfig()
    cfg = GameConfig(**{**asdict(cfg), **{k: v for k, v in vars(args).items() if k in asdict(cfg) and v is not None}})
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        parser.error(f"--methods: unknown {bad}; choose from {', '.join(METHODS)}")
    if cfg.responses < 3 or cfg.samples < 2 or cfg.iterations < 1:
        parser.error("--responses must be >= 3, --samples >= 2 and --iterations >= 1")

    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    P, pi0 = make_game(cfg)
    nash = np.stack([nash_policy(p) for p in P])
    nash_info = {"exploitability": exploitability(P, nash), "winrate_vs_pi0": win_rate(P, nash, pi0),
                 "support": float((nash > 1e-6).sum(axis=1).mean()), "pi0_exploitability": exploitability(P, pi0)}
    results = {m: run_method(m, P, pi0, cfg) for m in tqdm(methods, desc="methods")}
    checkpoints = sorted({1, min(10, cfg.iterations), cfg.iterations // 2, cfg.iterations} - {0})
    print(f"pi_0 exploitability {nash_info['pi0_exploitability']:.3f}; {cfg.prompts} prompts x {cfg.responses} "
          f"responses, T={cfg.iterations}, K={cfg.samples}, eta={cfg.eta}")
    print_table(results, nash_info, checkpoints)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"config": asdict(cfg), "nash": nash_info, "results": results}
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(out / "results.json")
    save_plot(results, out / "plot.png")
    print(f"wrote {out / 'results.json'} and {out / 'plot.png'}")
    return payload


if __name__ == "__main__":
    main()
