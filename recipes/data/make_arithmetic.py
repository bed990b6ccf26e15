"""Write the quickstart's prompt set: single-step arithmetic questions with their reference answers.

    python recipes/data/make_arithmetic.py            # -> recipes/data/arithmetic_prompts.jsonl

Each row is {"prompt", "answer", "op"}: "What is 17 + 25? Answer with the number." -> "42". The
operations are the ones SmolLM2-135M-Instruct gets right about a third of the time at T=0.7 with a
16-token budget (measured: one-digit sums 36%, one-digit products 33%, two-digit sums 16%), so SPPO has
room to improve and a signal to learn from. Every question is distinct, so the run's held-out prompts
(`evaluation.compare_prompts`, taken from the shuffled pool) never appear in training.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

TEMPLATE = "What is {a} {op} {b}? Answer with the number."


def questions(seed: int = 0) -> list[dict]:
    """All candidate questions of the four kinds, shuffled; answers are exact integers."""
    rows = []
    for a in range(2, 10):  # one-digit sums and products (both orders are distinct questions)
        for b in range(2, 10):
            rows.append({"a": a, "op": "+", "b": b, "answer": a + b})
            rows.append({"a": a, "op": "x", "b": b, "answer": a * b})
    for a in range(11, 50):  # two-digit sums
        for b in range(11, 50):
            rows.append({"a": a, "op": "+", "b": b, "answer": a + b})
    for a in range(11, 30):  # subtractions with a positive result
        for b in range(2, 10):
            rows.append({"a": a, "op": "-", "b": b, "answer": a - b})
    random.Random(seed).shuffle(rows)
    return rows


def build(n: int, seed: int = 0) -> list[dict]:
    """`n` distinct questions, balanced over the operations: a quarter each of +1-digit, x, +2-digit, -."""
    rows = questions(seed)
    kinds = {"one-digit +": lambda r: r["op"] == "+" and r["a"] < 10, "x": lambda r: r["op"] == "x",
             "two-digit +": lambda r: r["op"] == "+" and r["a"] > 10, "-": lambda r: r["op"] == "-"}
    per_kind = {name: [r for r in rows if keep(r)] for name, keep in kinds.items()}
    picked, i = [], 0
    while len(picked) < n:
        for pool in per_kind.values():
            if i < len(pool) and len(picked) < n:
                picked.append(pool[i])
        i += 1
    random.Random(seed + 1).shuffle(picked)
    return [{"prompt": TEMPLATE.format(**r), "answer": str(r["answer"]), "op": r["op"]} for r in picked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="questions to write (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("arithmetic_prompts.jsonl")))
    args = parser.parse_args()
    rows = build(args.n, args.seed)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} questions to {args.out}")


if __name__ == "__main__":
    main()
