"""The game SPPO solves, in the tabular case: exploitability of SPPO vs iterative DPO / IPO.

Each prompt has N candidate responses. Every response has a style (rock, paper, scissors) and a
quality; P(i > j) = sigmoid(quality gap + a rock-paper-scissors term), so preferences cycle and no
Bradley-Terry score can represent them. The game's Nash equilibrium (the von Neumann winner, a mixed
policy) is found per prompt by a linear program (`scipy.optimize.linprog`).

Methods, each for T iterations from the same pi_0 (policy parameters: one logit per response):
- `sppo_exact`: the exact multiplicative-weights update pi_{t+1}(y) ~ pi_t(y) exp(eta P(y > pi_t)).
- `sppo_kl`: the same with a KL pull toward pi_0 (magnetic mirror descent): its last iterate converges.
- `sppo_fit`: the practical algorithm as a run does it by default. K responses are sampled from pi_t, scored
  against each other (`sppo_hub.core.preference`), the best / worst pair (`preference.select_pair`) gets its win rates
  as targets, and the logits are fitted by Adam on `sppo_hub.core.losses.sppo` with pi_t as the reference.
- `sppo_fit+<options>`: the same with `sppo_hub.equilibrium.options`'s options, alone and combined:
  `all` (every candidate regressed on its own target, `response_pairing`), `explore` (E extra candidates from
  pi_0, earlier iterates or pi_t at a higher temperature, scored against pi_t's samples: `candidate_win_rates`),
  `reg` (reference pi_t^(1-a) pi_0^a: `mix_log_probs`), `mag` (the same toward a moving magnet, the iterate
  `magnet_iteration(t, N)`: MPO) and `opt` (the optimistic step: `reference_weights`, `optimistic_step`).
- `dpo`, `ipo`: iterative DPO / IPO on the best / worst sampled pair, `sppo_hub.core.losses.dpo` / `ipo`, reference pi_t.

Reported per iteration: exploitability max_y P(y > pi) - 1/2 (0 exactly at the Nash equilibrium) of the
last iterate, of the averaged policy (the uniform mixture of pi_1..pi_t, computed by `sppo_hub.generation.mixture`) and of the
mixture of the last half of the iterates, and the win rate against pi_0, averaged over prompts; with `--seeds N`
the final table gives mean and range over N games.

    python benchmarks/nash_game.py --preset heldout       # the README's tables (nash_tables.py), from fixed seeds
    python benchmarks/nash_game.py --seeds 3              # 16 prompts x 6 responses, T=60, 15 methods (~3 min)
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

FIT_OPTIONS = ("all", "explore", "reg", "mag", "opt")  # sppo_hub.equilibrium.options's options, joined with "+"
FITTED = tuple("+".join(["sppo_fit", *(o for i, o in enumerate(FIT_OPTIONS) if mask >> i & 1)]) for mask in range(8))
LAST_ITERATE = ("sppo_fit+all+explore+mag", "sppo_fit+all+explore+reg+opt", "sppo_fit+all+explore+mag+opt")
METHODS = ("sppo_exact", "sppo_kl", *FITTED, *LAST_ITERATE, "dpo", "ipo")
# Style s beats style (s + 1) % 3: rock-paper-scissors.
CYCLE = np.array([[0, 1, -1], [-1, 0, 1], [1, -1, 0]], dtype=np.float64)


@dataclass
class GameConfig:
    """Sizes and step sizes of the benchmark."""

    prompts: int = field(default=16, metadata={"help": "Number of prompts (independent games)."})
    responses: int = field(default=6, metadata={"help": "Candidate responses per prompt (N)."})
    iterations: int = field(default=60, metadata={"help": "T, iterations of every method."})
    samples: int = field(default=8, metadata={"help": "K, responses sampled from pi_t per prompt (fitted methods)."})
    explore: int = field(default=8, metadata={"help": "E, exploration candidates per prompt ('explore' option)."})
    explore_source: str = field(default="iterates", metadata={"help": "initial (pi_0), iterates or temperature."})
    explore_temperature: float = field(default=2.0, metadata={"help": "Temperature when explore_source=temperature."})
    reference_mix: float = field(default=0.15, metadata={"help": "'reg' / 'mag': a in pi_t^(1-a) magnet^a."})
    magnet_every: int = field(default=10, metadata={"help": "'mag': the magnet is pi_{N floor(t/N)} (MPO), not pi_0."})
    eta: float = field(default=8.0, metadata={"help": "SPPO's eta (exact and fitted)."})
    kl: float = field(default=0.022, metadata={"help": "sppo_kl: KL weight tau toward pi_0 (0.022 at eta 8: a = 0.15)."})
    beta: float = field(default=0.1, metadata={"help": "DPO's beta / IPO's tau."})
    fit_steps: int = field(default=20, metadata={"help": "Adam steps per iteration of the fitted methods."})
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


def parse_fit(method: str) -> set[str]:
    """The options of a fitted-SPPO method name, e.g. "sppo_fit+all+explore" -> {"all", "explore"}."""
    head, *opts = method.split("+")
    if (head != "sppo_fit" or not set(opts) <= set(FIT_OPTIONS) or len(set(opts)) != len(opts)
            or {"reg", "mag"} <= set(opts)):
        raise ValueError(method)
    return set(opts)


def valid_fit(method: str) -> bool:
    try:
        return bool(parse_fit(method))
    except ValueError:
        return False


def canonical(method: str) -> str:
    """A method name with its fitted options in FIT_OPTIONS order ("sppo_fit+reg+all" -> "sppo_fit+all+reg")."""
    return "+".join(["sppo_fit", *(o for o in FIT_OPTIONS if o in parse_fit(method))]) if "+" in method else method


def explore_distribution(source: str, pi: np.ndarray, pi0: np.ndarray, history: list[np.ndarray], temperature: float):
    """Where exploration candidates come from (`equilibrium.ExplorationConfig.source`), per prompt."""
    from sppo_hub.equilibrium import options as equilibrium

    if source == "initial":
        return pi0
    if source == "iterates":  # a uniformly drawn earlier iterate (pi_0 included) = their average
        return np.mean(history, axis=0)
    return equilibrium.tempered(pi, temperature)


def fitted_step(P, theta, method, cfg: GameConfig, rng, pi0=None, history=None):
    """Sample from pi_t = softmax(theta), build the toolkit's win rates / pairs, fit theta on the toolkit's loss.

    SPPO variants: K samples from pi_t (+ `explore` candidates from `cfg.explore_source` with the "explore" option),
    win rates against pi_t's samples (`equilibrium.candidate_win_rates`), then the best / worst pair
    (`preference.select_pair`, what a run trains on by default) or every candidate ("all", the triplets paired by
    `equilibrium.response_pairing`), and the reference pi_t or, with "reg", pi_t^(1-a) pi_0^a
    (`equilibrium.mix_log_probs`).
    """
    import torch

    from sppo_hub.equilibrium import options as equilibrium
    from sppo_hub.core import losses, preference

    pi = torch.softmax(theta, dim=1).detach().numpy().astype(np.float64)
    opts = parse_fit(method) if method.startswith("sppo_fit") else set()
    n_extra = cfg.explore if "explore" in opts else 0
    extra_pi = explore_distribution(cfg.explore_source, pi, pi0, history, cfg.explore_temperature) if n_extra else None
    rows_w, cols_w, rows_l, cols_l, p_w, p_l = [], [], [], [], [], []
    for x in range(P.shape[0]):
        cand = rng.choice(P.shape[1], size=cfg.samples, p=pi[x])
        if n_extra:
            cand = np.r_[cand, rng.choice(P.shape[1], size=n_extra, p=extra_pi[x])]
        Pm = preference.pairwise_probabilities(P[x][np.ix_(cand, cand)], kind="probs")
        wr = equilibrium.candidate_win_rates(Pm, cfg.samples)
        pairs = equilibrium.response_pairing(len(cand)) if "all" in opts else [preference.select_pair(wr)]
        for a, b in pairs:
            rows_w.append(x)
            cols_w.append(cand[a])
            p_w.append(wr[a])
            rows_l.append(x)
            cols_l.append(cand[b])
            p_l.append(wr[b])
    ref = torch.log_softmax(theta, dim=1).detach()
    t = len(history) if history else 1  # pi_t is history[-1]; this fits pi_{t+1}, the run's iteration t + 1
    mix = cfg.reference_mix if opts & {"reg", "mag"} else 0.0
    anchors = equilibrium.anchor_models(t, mix, cfg.magnet_every if "mag" in opts else 0, "opt" in opts)
    if anchors:
        c, logp_anchor = equilibrium.combined_anchor(list(anchors.values()), [np.log(history[i]) for i in anchors])
        ref = equilibrium.mix_log_probs(ref, torch.tensor(logp_anchor), c)
    theta = theta.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=cfg.fit_lr)
    sppo = method.startswith("sppo")
    loss_fn = losses.get_loss("sppo" if sppo else method)
    step = equilibrium.optimistic_step(cfg.eta, "opt" in opts, t)  # 2 eta with "opt" (from the second step on)
    extra = ({"chosen_probs_win": torch.tensor(p_w), "chosen_probs_lose": torch.tensor(p_l), "eta": step}
             if sppo else {"beta": cfg.beta})
    for _ in range(cfg.fit_steps):
        logratio = torch.log_softmax(theta, dim=1) - ref
        loss = loss_fn(logratio[rows_w, cols_w], logratio[rows_l, cols_l], **extra).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return theta.detach()


def averaged(history: list[np.ndarray], scheme: str, window: int) -> np.ndarray:
    """The mixture-of-iterates policy over pi_1..pi_t (`equilibrium.iterate_weights`, `mixture.MixturePolicy`)."""
    from sppo_hub.equilibrium.options import iterate_weights
    from sppo_hub.generation.mixture import MixturePolicy

    weights = iterate_weights(range(1, len(history)), scheme, window)
    mix = MixturePolicy.from_iterates({t: f"iter{t}" for t in weights}, weights, scheme)
    return mix.average([history[c.iteration] for c in mix.components])


def run_method(method: str, P: np.ndarray, pi0: np.ndarray, cfg: GameConfig) -> list[dict]:
    """Per-iteration metrics (iteration 0 = pi_0) of one method."""
    import torch

    rng = np.random.default_rng(cfg.seed + 1)
    torch.manual_seed(cfg.seed)
    pi, theta = pi0.copy(), torch.tensor(np.log(pi0))
    history = [pi0]
    rows = []
    for t in range(cfg.iterations + 1):
        if t > 0:
            if method == "sppo_exact":
                pi = sppo_exact_step(P, pi, cfg.eta)
            elif method == "sppo_kl":
                pi = sppo_exact_step(P, pi, cfg.eta, pi0, cfg.kl)
            else:
                theta = fitted_step(P, theta, method, cfg, rng, pi0, history)
                pi = torch.softmax(theta, dim=1).numpy().astype(np.float64)
            history.append(pi)
        avg = averaged(history, "uniform", 0) if t else pi
        tail = averaged(history, "uniform", max(1, (t + 1) // 2)) if t else pi
        rows.append({"iteration": t, "exploit_last": exploitability(P, pi), "exploit_avg": exploitability(P, avg),
                     "exploit_tail": exploitability(P, tail), "winrate_vs_pi0": win_rate(P, pi, pi0),
                     "support_last": float((pi > 0.01).sum(axis=1).mean())})
    return rows


# ----- report -----


def summarize(by_seed: dict, cfg: GameConfig) -> dict:
    """Per method, at T: mean, min and max over seeds of last / averaged / tail-averaged exploitability."""
    out = {}
    for method in next(iter(by_seed.values())):
        finals = [by_seed[s][method][-1] for s in by_seed]
        out[method] = {key: {"mean": float(np.mean([r[key] for r in finals])), "min": float(min(r[key] for r in finals)),
                             "max": float(max(r[key] for r in finals))}
                       for key in ("exploit_last", "exploit_avg", "exploit_tail", "winrate_vs_pi0")}
        opts = parse_fit(method) if method.startswith("sppo_fit") else set()
        n = cfg.samples + (cfg.explore if "explore" in opts else 0)
        out[method]["judge_calls_per_prompt"] = n * (n - 1) if method not in ("sppo_exact", "sppo_kl") else 0
    return out


def print_table(results: dict, nash: dict, checkpoints: list[int], summary: dict, seeds: int) -> None:
    from rich.console import Console
    from rich.table import Table
    console = Console(width=170)
    table = Table(title=f"Tabular SPPO game, seed 0: exploitability (max_y P(y > pi) - 1/2), Nash support "
                        f"{nash['support']:.1f}")
    table.add_column("method", no_wrap=True)
    for t in checkpoints:
        table.add_column(f"T={t} last / avg", justify="right")
    table.add_column("win vs pi_0 (last)", justify="right")
    for method, rows in results.items():
        table.add_row(method, *[f"{rows[t]['exploit_last']:.3f} / {rows[t]['exploit_avg']:.3f}" for t in checkpoints],
                      f"{rows[-1]['winrate_vs_pi0']:.3f}")
    table.add_row("nash (LP)", *[f"{nash['exploitability']:.3f}" for _ in checkpoints], f"{nash['winrate_vs_pi0']:.3f}")
    console.print(table)
    table = Table(title=f"At T={checkpoints[-1]}: mean (range) over {seeds} seed(s)")
    for col in ("method", "last iterate", "averaged (all)", "averaged (last half)", "win vs pi_0", "judge calls/prompt"):
        table.add_column(col, justify="left" if col == "method" else "right", no_wrap=col == "method")
    for method, s in summary.items():
        cell = lambda k: f"{s[k]['mean']:.3f} [{s[k]['min']:.3f}, {s[k]['max']:.3f}]"  # noqa: E731
        table.add_row(method, cell("exploit_last"), cell("exploit_avg"), cell("exploit_tail"),
                      f"{s['winrate_vs_pi0']['mean']:.3f}", str(s["judge_calls_per_prompt"] or "-"))
    console.print(table)


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
    parser.add_argument("--seeds", type=int, default=1, help="Games / sampling seeds seed..seed+N-1 (the table: mean, range).")
    parser.add_argument("--preset", choices=("tuning", "heldout"), default=None,
                        help="Regenerate a README table (nash_tables.PRESETS: its methods, settings and seeds) into "
                             "benchmarks/results/nash_game_<preset>.json; other options are ignored.")
    for name, f in GameConfig.__dataclass_fields__.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(f.default), default=None, help=f.metadata["help"])
    args = parser.parse_args(argv)
    if args.preset:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import nash_tables

        return nash_tables.run_preset(sys.modules[__name__], args.preset)
    cfg = GameConfig(prompts=4, iterations=8, fit_steps=20) if args.smoke else GameConfig()
    cfg = GameConfig(**{**asdict(cfg), **{k: v for k, v in vars(args).items() if k in asdict(cfg) and v is not None}})
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    if bad := [m for m in names if m not in METHODS and not valid_fit(m)]:
        parser.error(f"--methods: unknown {bad}; choose from {', '.join(METHODS)} or sppo_fit+<{'|'.join(FIT_OPTIONS)}>")
    methods = [canonical(m) for m in names]
    if cfg.responses < 3 or cfg.samples < 2 or cfg.iterations < 1 or args.seeds < 1:
        parser.error("--responses must be >= 3, --samples >= 2, --iterations >= 1 and --seeds >= 1")
    if cfg.explore_source not in ("initial", "iterates", "temperature"):
        parser.error(f"--explore-source {cfg.explore_source!r}: use initial, iterates or temperature")
    if not 0 <= cfg.reference_mix < 1:
        parser.error(f"--reference-mix {cfg.reference_mix}: must lie in [0, 1)")

    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    by_seed, infos = {}, {}
    for seed in tqdm(range(cfg.seed, cfg.seed + args.seeds), desc="seeds"):
        scfg = GameConfig(**{**asdict(cfg), "seed": seed})
        P, pi0 = make_game(scfg)
        nash = np.stack([nash_policy(p) for p in P])
        infos[seed] = {"exploitability": exploitability(P, nash), "winrate_vs_pi0": win_rate(P, nash, pi0),
                       "support": float((nash > 1e-6).sum(axis=1).mean()), "pi0_exploitability": exploitability(P, pi0)}
        by_seed[seed] = {m: run_method(m, P, pi0, scfg) for m in tqdm(methods, desc="methods", leave=False)}
    nash_info, results = infos[cfg.seed], by_seed[cfg.seed]
    summary = summarize(by_seed, cfg)
    checkpoints = sorted({1, min(10, cfg.iterations), cfg.iterations // 2, cfg.iterations} - {0})
    print(f"pi_0 exploitability {nash_info['pi0_exploitability']:.3f} (seed {cfg.seed}); {cfg.prompts} prompts x "
          f"{cfg.responses} responses, T={cfg.iterations}, K={cfg.samples}, eta={cfg.eta}, explore {cfg.explore} from "
          f"{cfg.explore_source}, reference_mix {cfg.reference_mix}, {args.seeds} seed(s)")
    print_table(results, nash_info, checkpoints, summary, args.seeds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"config": asdict(cfg), "seeds": args.seeds, "nash": nash_info, "nash_by_seed": infos,
               "results": results, "summary": summary,
               "results_by_seed": {str(k): v for k, v in by_seed.items()} if args.seeds > 1 else {}}
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(out / "results.json")
    save_plot(results, out / "plot.png")
    print(f"wrote {out / 'results.json'} and {out / 'plot.png'}")
    return payload


if __name__ == "__main__":
    main()
