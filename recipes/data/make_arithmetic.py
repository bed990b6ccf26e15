"""Write the quickstart's prompt set: single-step arithmetic questions with their reference answers.

    python recipes/data/make_arithmetic.py            # -> recipes/data/arithmetic_prompts.jsonl

Each row is {"prompt", "answer", "op", "key"}: "What is 17 + 25? Answer with the number." -> "42". The
operations are the ones SmolLM2-135M-Instruct gets right about a third of the time at T=0.7 with a
16-token budget (measured: one-digit sums 36%, one-digit products 33%, two-digit sums 16%), so SPPO has
room to improve and a signal to learn from.

Clean by construction: every question is written in ONE form only. `canonical` maps a question to its
equivalence class -- the operator and, for + and x, the sorted operands -- so "3 + 7", "7 + 3", "7+3" and
"What is 3 + 7?" phrased otherwise are one class, and the file holds one question per class (commutative
operands written smaller first). However the run shuffles and splits this file (`prompts.limit`,
`evaluation.compare_prompts`), no held-out question, commuted twin or other rewording of the same sum or
product can be among the training questions; tests/test_demo.py checks it on the run's own split.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

TEMPLATE = "What is {a} {op} {b}? Answer with the number."
_EXPR = re.compile(r"(-?\d+)\s*([+\-x×*])\s*(-?\d+)")
COMMUTATIVE = {"+": "+", "x": "x", "×": "x", "*": "x"}


def canonical(prompt: str) -> tuple:
    """The equivalence class of a question: ("+", 3, 7) for "3 + 7", "7+3" and "7 + 3"; ("-", 12, 5) for "12 - 5"."""
    found = _EXPR.search(prompt)
    if found is None:
        raise ValueError(f"not a single-step arithmetic question: {prompt!r}")
    a, op, b = int(found.group(1)), found.group(2), int(found.group(3))
    if op in COMMUTATIVE:
        return (COMMUTATIVE[op], *sorted((a, b)))
    return (op, a, b)


def questions(seed: int = 0) -> dict[str, list[dict]]:
    """One question per equivalence class, by kind, each kind shuffled; answers are exact integers."""
    kinds: dict[str, list[dict]] = {"one-digit +": [], "x": [], "two-digit +": [], "-": []}
    for a in range(2, 10):  # one-digit sums and products: a <= b, the commuted form is the same question
        for b in range(a, 10):
            kinds["one-digit +"].append({"a": a, "op": "+", "b": b, "answer": a + b})
            kinds["x"].append({"a": a, "op": "x", "b": b, "answer": a * b})
    for a in range(11, 50):  # two-digit sums, a <= b
        for b in range(a, 50):
            kinds["two-digit +"].append({"a": a, "op": "+", "b": b, "answer": a + b})
    for a in range(11, 50):  # subtractions with a positive result (not commutative: one form each anyway)
        for b in range(2, 10):
            kinds["-"].append({"a": a, "op": "-", "b": b, "answer": a - b})
    rng = random.Random(seed)
    for pool in kinds.values():
        rng.shuffle(pool)
    return kinds


def build(n: int, seed: int = 0) -> list[dict]:
    """`n` questions of distinct classes, balanced over the kinds while each lasts (one-digit + and x have
    36 classes each; two-digit + and - fill the rest)."""
    per_kind = list(questions(seed).values())
    if n > sum(map(len, per_kind)):
        raise ValueError(f"--n {n}: only {sum(map(len, per_kind))} distinct questions exist")
    picked, i = [], 0
    while len(picked) < n:
        for pool in per_kind:
            if i < len(pool) and len(picked) < n:
                picked.append(pool[i])
        i += 1
    random.Random(seed + 1).shuffle(picked)
    rows = [{"prompt": TEMPLATE.format(**r), "answer": str(r["answer"]), "op": r["op"]} for r in picked]
    for row in rows:
        row["key"] = " ".join(map(str, canonical(row["prompt"])))
    assert len({r["key"] for r in rows}) == len(rows), "two rows share an equivalence class"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="questions to write (default 512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("arithmetic_prompts.jsonl")))
    args = parser.parse_args()
    rows = build(args.n, args.seed)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} questions to {args.out}")


if __name__ == "__main__":
    main()
