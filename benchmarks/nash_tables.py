"""The tables of benchmarks/README.md section 1, regenerated from fixed seeds and kept as small results files.

    python benchmarks/nash_game.py --preset tuning    # seeds 0-2: every method, the settings were chosen here
    python benchmarks/nash_game.py --preset heldout   # seeds 10-19: the chosen settings, run once

Each preset runs its methods (each with its own settings over `nash_game.GameConfig`'s defaults), writes
`benchmarks/results/nash_game_<preset>.json` (the metrics at T = 10, 30, 60 per seed, rounded) and prints
`render(payload)`: exactly the markdown table the README shows (tests/test_benchmarks_nash_toy.py checks that the
README holds what the kept files render, without rerunning anything).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CHECKPOINTS = (10, 30, 60)
KEYS = ("exploit_last", "exploit_avg", "exploit_tail", "winrate_vs_pi0", "support_last")
# The last-iterate settings (tuned on seeds 0-2): eta 2, pi_0 -> moving magnet with a = 0.2 moved every 10
# iterations, K = 16 samples + E = 8 explored candidates.
LAST = {"eta": 2.0, "reference_mix": 0.2, "magnet_every": 10, "samples": 16}
ORIGINAL = [
    ("sppo_exact (multiplicative weights)", "sppo_exact", {}),
    ("sppo_kl (exact, KL to pi_0, tau 0.022 = a 0.15)", "sppo_kl", {}),
    ("sppo_fit (the run's default)", "sppo_fit", {}),
    ("+ all", "sppo_fit+all", {}),
    ("+ explore", "sppo_fit+explore", {}),
    ("+ reg", "sppo_fit+reg", {}),
    ("+ all + explore", "sppo_fit+all+explore", {}),
    ("+ all + reg", "sppo_fit+all+reg", {}),
    ("+ explore + reg", "sppo_fit+explore+reg", {}),
    ("+ all + explore + reg", "sppo_fit+all+explore+reg", {}),
    ("dpo (best / worst pair, beta 0.1)", "dpo", {}),
    ("ipo (best / worst pair, tau 0.1)", "ipo", {}),
]
NEW = [
    ("+ all + explore + opt (eta 2, K 16)", "sppo_fit+all+explore+opt", {"eta": 2.0, "samples": 16}),
    ("+ all + explore + mag (eta 2, a 0.2 every 10, K 16)", "sppo_fit+all+explore+mag", LAST),
    ("+ all + explore + mag + opt (eta 2, a 0.2 every 10, K 8)", "sppo_fit+all+explore+mag+opt", {**LAST, "samples": 8}),
    ("+ all + explore + mag + opt (eta 2, a 0.2 every 10, K 16)", "sppo_fit+all+explore+mag+opt", LAST),
]
PRESETS = {
    "tuning": {"seeds": [0, 1, 2], "methods": ORIGINAL + NEW},
    "heldout": {"seeds": list(range(10, 20)), "methods": [ORIGINAL[2], ORIGINAL[9], *NEW]},
}


def judge_calls(method: str, cfg) -> int:
    """Judge calls per prompt per iteration: n (n - 1) for the n = K (+ E with exploration) candidates."""
    if method in ("sppo_exact", "sppo_kl"):
        return 0
    n = cfg.samples + (cfg.explore if "+explore" in method else 0)
    return n * (n - 1)


def compact(rows: list[dict]) -> dict:
    """The metrics at CHECKPOINTS of one method on one seed, rounded to 6 digits."""
    return {str(t): {k: round(float(rows[t][k]), 6) for k in KEYS} for t in CHECKPOINTS if t < len(rows)}


def _stats(values) -> tuple[float, float, float]:
    return float(np.mean(values)), float(min(values)), float(max(values))


def render(payload: dict) -> str:
    """The markdown table of a preset's results file (the README's table, character for character)."""
    seeds = [str(s) for s in payload["seeds"]]
    entries = payload["methods"]
    nash = payload["nash"]
    checkpoints = sorted(int(t) for t in entries[0]["by_seed"][seeds[0]])  # those the run reached
    if payload["preset"] == "tuning":
        head = ["method", *(f"T={t}" for t in checkpoints), f"T={checkpoints[-1]}, average of the last half",
                "win vs pi_0", "support (last)", "judge calls / prompt / iteration"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for e in entries:
            mean = lambda t, k: np.mean([e["by_seed"][s][str(t)][k] for s in seeds])  # noqa: E731
            cells = [f"{mean(t, 'exploit_last'):.3f} / {mean(t, 'exploit_avg'):.3f}" for t in checkpoints]
            last = checkpoints[-1]
            lines.append("| " + " | ".join([e["label"], *cells, f"{mean(last, 'exploit_tail'):.3f}",
                                            f"{mean(last, 'winrate_vs_pi0'):.3f}", f"{mean(last, 'support_last'):.1f}",
                                            str(e["judge_calls"] or "-")]) + " |")
        win = np.mean([nash[s]["winrate_vs_pi0"] for s in seeds])
        support = np.mean([nash[s]["support"] for s in seeds])
        lines.append("| " + " | ".join(["Nash (LP)", *["0"] * (len(checkpoints) + 1), f"{win:.3f}", f"{support:.1f}", ""])
                     + " |")
        return "\n".join(lines)
    head = ["method", "judge calls / prompt / iteration", "last iterate", "averaged (all)", "averaged (last half)",
            "win vs pi_0", "last < 0.10 and averaged < 0.05"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    last = str(checkpoints[-1])
    for e in entries:
        cell = {}
        for k in KEYS:
            cell[k] = _stats([e["by_seed"][s][last][k] for s in seeds])
        fmt = lambda k: "{:.3f} [{:.3f}, {:.3f}]".format(*cell[k])  # noqa: E731
        met = ("yes" if cell["exploit_last"][0] < 0.10 and cell["exploit_avg"][0] < 0.05 else
               "last only" if cell["exploit_last"][0] < 0.10 else "averaged only" if cell["exploit_avg"][0] < 0.05
               else "no")
        lines.append("| " + " | ".join([e["label"], str(e["judge_calls"] or "-"), fmt("exploit_last"),
                                        fmt("exploit_avg"), fmt("exploit_tail"),
                                        f"{cell['winrate_vs_pi0'][0]:.3f}", met]) + " |")
    return "\n".join(lines)


def run_preset(game, name: str, results_dir: Path = RESULTS) -> dict:
    """Run one of PRESETS with the benchmark module `game` (nash_game), keep its results file, print its table."""
    import json
    from dataclasses import asdict

    import torch
    from tqdm import tqdm

    GameConfig, make_game = game.GameConfig, game.make_game
    torch.set_num_threads(1)
    preset = PRESETS[name]
    payload = {"preset": name, "seeds": preset["seeds"], "config": asdict(GameConfig()), "nash": {}, "methods": []}
    for seed in preset["seeds"]:
        P, pi0 = make_game(GameConfig(seed=seed))
        nash = np.stack([game.nash_policy(p) for p in P])
        payload["nash"][str(seed)] = {"winrate_vs_pi0": round(game.win_rate(P, nash, pi0), 6),
                                      "support": round(float((nash > 1e-6).sum(axis=1).mean()), 6)}
    for label, method, overrides in tqdm(preset["methods"], desc=name):
        cfg = GameConfig(**{**asdict(GameConfig()), **overrides})
        entry = {"label": label, "method": method, "overrides": overrides,
                 "judge_calls": judge_calls(method, cfg), "by_seed": {}}
        for seed in preset["seeds"]:
            scfg = GameConfig(**{**asdict(cfg), "seed": seed})
            entry["by_seed"][str(seed)] = compact(game.run_method(method, *make_game(scfg), scfg))
        payload["methods"].append(entry)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"nash_game_{name}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(render(payload))
    print(f"wrote {path}")
    return payload
