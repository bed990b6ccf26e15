"""The demo's gain on clean held-out questions, per seed: the table in README.md and benchmarks/README.md.

    python benchmarks/demo_heldout.py                      # runs seeds 0 1 2 (resuming), prints the tables
    python benchmarks/demo_heldout.py --table-only         # only reads the finished runs

Each seed is `sppo-hub run recipes/quickstart.yaml seed=S output_dir=<out>/seed-S --local-hub` (what `make demo`
runs, with another seed), one after the other. Printed: per seed, held-out accuracy of pi_0, pi_1, pi_2 and
the win rates against pi_0 with their 95% intervals (from the run manifests), then what changed in the answers
(from the saved held-out answers): accuracy by kind of question, mean answer length, the share of answers in
the bare "a op b = c" / "c" form and the accuracy of those and of the other answers, and the share with no
number at all.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sppo_hub.judges.rule_based import arithmetic_reference, extract_answer, is_correct  # noqa: E402

_BARE = re.compile(r"^\s*(?:-?\d+\s*[+\-x×*]\s*-?\d+\s*=\s*)?-?\d+\s*\.?\s*$")


def kind(prompt: str) -> str:
    """'1d+1d', '1dx1d', '1d-1d', '2d+1d': the operand sizes and the operator."""
    a, op, b = re.search(r"(\d+) ([+x-]) (\d+)", prompt).groups()
    return f"{len(a)}d{op}{len(b)}d"


def run_seed(seed: int, out: Path) -> None:
    folder = out / f"seed-{seed}"
    cmd = [sys.executable, "-m", "sppo_hub", "run", str(ROOT / "recipes" / "quickstart.yaml"), f"seed={seed}",
           f"output_dir={folder}", "--local-hub"] + (["--resume"] if (folder / "manifest.json").is_file() else [])
    subprocess.run(cmd, cwd=ROOT, check=True)


def _ci(art: dict, key: str, pct: bool) -> str:
    value, ci = art.get(key), art.get(f"{key}_ci")
    if value is None:
        return "-"
    if pct:
        return f"{value:.1%} [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else f"{value:.1%}"
    return f"{value:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{value:.3f}"


def tables(seeds: list[int], out: Path) -> str:
    rows = ["| seed | pi_0 accuracy | pi_1 accuracy | pi_2 accuracy | gain pi_2 - pi_0 (points) | win vs pi_0: pi_1 | pi_2 |",
            "|---|---|---|---|---|---|---|"]
    learned = ["| seed | policy | accuracy by kind | mean length (chars) | bare answers | their accuracy | "
               "accuracy of the others | no number |", "|---|---|---|---|---|---|---|---|"]
    for seed in seeds:
        folder = out / f"seed-{seed}"
        manifest = json.loads((folder / "manifest.json").read_text())
        its = manifest["iterations"]
        art = lambda t: its.get(str(t), {}).get("baseline" if t == 0 else "compare", {}).get("artifacts", {})  # noqa: E731
        gain = art(2).get("accuracy_gain")
        gci = art(2).get("accuracy_gain_ci")
        rows.append(f"| {seed} | {_ci(art(0), 'accuracy', True)} | {_ci(art(1), 'accuracy', True)} | "
                    f"{_ci(art(2), 'accuracy', True)} | "
                    + (f"{gain * 100:+.1f} [{gci[0] * 100:+.1f}, {gci[1] * 100:+.1f}]" if gain is not None else "-")
                    + f" | {_ci(art(1), 'win_rate_vs_base', False)} | {_ci(art(2), 'win_rate_vs_base', False)} |")
        pool = json.loads((folder / "prompts.json").read_text())
        held = [pool[i] for i in its["0"]["prompts"]["artifacts"]["heldout"]]
        for t in range(3):
            if not art(t).get("path"):
                continue
            answers = json.loads(Path(art(t)["path"]).read_text())
            by_kind, lengths, bare, none, right = defaultdict(list), [], [], [], []
            for prompt, rs in zip(held, answers):
                for r in (rs if isinstance(rs, list) else [rs]):
                    right.append(is_correct(r, str(arithmetic_reference(prompt))))
                    by_kind[kind(prompt)].append(right[-1])
                    lengths.append(len(r.strip()))
                    bare.append(bool(_BARE.match(r)))
                    none.append(extract_answer(r) is None)
            accs = ", ".join(f"{k} {sum(v) / len(v):.0%}" for k, v in sorted(by_kind.items()))
            share = lambda xs: f"{sum(xs) / len(xs):.0%}" if xs else "-"  # noqa: E731
            learned.append(f"| {seed} | pi_{t} | {accs} | {sum(lengths) / len(lengths):.0f} | {share(bare)} | "
                           f"{share([r for r, b in zip(right, bare) if b])} | "
                           f"{share([r for r, b in zip(right, bare) if not b])} | {share(none)} |")
    return "\n".join(rows) + "\n\n" + "\n".join(learned)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "demo-seeds")
    parser.add_argument("--table-only", action="store_true", help="read finished runs, run nothing")
    args = parser.parse_args()
    if not args.table_only:
        for seed in args.seeds:
            run_seed(seed, args.out)
    print(tables(args.seeds, args.out))


if __name__ == "__main__":
    main()
