"""Write the quickstart's prompt set: single-step arithmetic questions with their reference answers.

    python recipes/data/make_arithmetic.py            # -> recipes/data/arithmetic_prompts.jsonl

Each row is {"prompt", "answer", "op", "key"}: "What is 17 + 25? Answer with the number." -> "42". The
kinds are ones SmolLM2-135M-Instruct sometimes gets right at T=0.7 with a 16-token budget (measured on 48
answers each: one-digit sums 40%, products 42%, subtractions 33%, two-digit + one-digit sums 12%; two-digit
minus one-digit was 1% and two-digit sums 11%, too rare a success to learn from), so SPPO has room to
improve and a signal to learn from. There are only 297 such questions once equivalent forms count once.

Clean by construction: every question is written in ONE form only. `canonical` maps a question to its
equivalence class -- the operator and, for + and x, the sorted operands -- so "3 + 7", "7 + 3", "7+3" and
"What is 3 + 7?" phrased otherwise are one class, and the file holds one question per class (commutative
written in one order only). However the run shuffles and splits this file (`prompts.limit`,
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
    kinds: dict[str, list[dict]] = {"one-digit +": [], "one-digit x": [], "one-digit -": [], "two-digit + one-digit": []}
    for a in range(1, 10):  # one-digit sums and products, a <= b: "b + a" is the same question, never written
        for b in range(a, 10):
            kinds["one-digit +"].append({"a": a, "op": "+", "b": b, "answer": a + b})
            kinds["one-digit x"].append({"a": a, "op": "x", "b": b, "answer": a * b})
    for a in range(2, 10):  # one-digit subtractions with a positive result
        for b in range(1, a):
            kinds["one-digit -"].append({"a": a, "op": "-", "b": b, "answer": a - b})
    for a in range(11, 30):  # "23 + 5" (written larger first, never "5 + 23")
        for b in range(1, 10):
            kinds["two-digit + one-digit"].append({"a": a, "op": "+", "b": b, "answer": a + b})
    rng = random.Random(seed)
    for pool in kinds.values():
        rng.shuffle(pool)
    return kinds


def build(n: int | None = None, seed: int = 0) -> list[dict]:
    """`n` questions of distinct classes (default: all 297), balanced over the kinds while each lasts
    (45 one-digit sums, 45 products, 36 subtractions, 171 two-digit + one-digit sums)."""
    per_kind = list(questions(seed).values())
    total = sum(map(len, per_kind))
    n = total if n is None else n
    if n > total:
        raise ValueError(f"--n {n}: only {total} distinct questions exist")
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
    parser.add_argument("--n", type=int, default=None, help="questions to write (default: all 297)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("arithmetic_prompts.jsonl")))
    args = parser.parse_args()
    rows = build(args.n, args.seed)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} questions to {args.out}")


if __name__ == "__main__":
    main()
