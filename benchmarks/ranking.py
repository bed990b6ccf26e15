"""PairRM ranking throughput: PairRMJudge's batched tables vs a per-prompt, one-pair-at-a-time loop.

Both run in this process on the same PairRM-architecture ranker (random DeBERTa-v2 weights, CPU),
on the same prompts and responses (AlpacaEval outputs from ../shared/data/alpaca_eval when present,
K responses per prompt, both presentation orders). The baseline scores each ordered pair alone, prompt
by prompt, as a plain `compare` loop would; PairRMJudge batches pairs across prompts, sorted by length.
Runs alternate (A B A B) so machine load hits both alike.

    python benchmarks/ranking.py            # hidden 256, 4 layers, source/candidate limits 256/128
    python benchmarks/ranking.py --smoke    # hidden 32, 2 layers, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval"


def load_texts(n_prompts: int, k: int) -> tuple[list[str], list[list[str]]]:
    """n prompts with k responses each: AlpacaEval outputs if present, else synthetic text of similar length."""
    files = sorted(DATA.glob("*_outputs.json")) if DATA.is_dir() else []
    if files:
        outputs = [json.loads(f.read_text()) for f in files]
        prompts = [row["instruction"] for row in outputs[0][:n_prompts]]
        responses = []
        for p in range(n_prompts):
            cands = [o[p]["output"] for o in outputs]
            while len(cands) < k:  # a shorter variant: the first sentences of a response
                cands.append(cands[len(cands) % len(files)][: 80 * len(cands)])
            responses.append(cands[:k])
        return prompts, responses
    words = "the model answers the question with a clear and helpful explanation".split()
    prompts = [" ".join(words[: 5 + p % 6]) + "?" for p in range(n_prompts)]
    responses = [[" ".join(words * (3 + 5 * i + p % 3)) for i in range(k)] for p in range(n_prompts)]
    return prompts, responses


def per_pair_loop(judge, prompts, responses):
    """Baseline: prompt by prompt, every ordered pair scored alone."""
    for prompt, cands in zip(prompts, responses):
        for i, a in enumerate(cands):
            for j, b in enumerate(cands):
                if i != j:
                    judge.compare(prompt, a, b)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny ranker and few prompts (seconds)")
    parser.add_argument("--prompts", type=int, default=None, help="number of prompts (default 8, smoke 4)")
    parser.add_argument("--k", type=int, default=4, help="responses per prompt")
    parser.add_argument("--batch-size", type=int, default=16, help="PairRMJudge batch size")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs of each (default 1)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from sppo_hub.judges.pairrm import PairRMJudge
    from sppo_hub.testing.tiny_ranker import build_tiny_pairrm

    n_prompts = args.prompts or (4 if args.smoke else 8)
    repeats = args.repeats or 1
    size = dict(hidden_size=32, num_layers=2, num_heads=2, source_maxlength=128, candidate_maxlength=64) if args.smoke \
        else dict(hidden_size=256, num_layers=4, num_heads=4, source_maxlength=256, candidate_maxlength=128)
    prompts, responses = load_texts(n_prompts, args.k)
    n_pairs = sum(len(c) * (len(c) - 1) for c in responses)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_pairrm(Path(tmp) / "ranker", **size)
        judge = PairRMJudge.from_pretrained(str(model_dir), device="cpu", batch_size=args.batch_size, show_progress=False)
    judge._warned_truncation = True  # AlpacaEval answers exceed the limits by design; no warning in timings
    print(f"ranker: DeBERTa-v2 hidden {size['hidden_size']}, {size['num_layers']} layers, "
          f"source/candidate limits {size['source_maxlength']}/{size['candidate_maxlength']}; "
          f"{n_prompts} prompts x K={args.k} -> {n_pairs} ordered pairs; torch threads {torch.get_num_threads()}")
    judge.pairwise_tables(prompts[:1], responses[:1])  # warm-up
    times = {"loop": [], "judge": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        per_pair_loop(judge, prompts, responses)
        times["loop"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        judge.pairwise_tables(prompts, responses)
        times["judge"].append(time.perf_counter() - t0)
    loop_s, judge_s = statistics.median(times["loop"]), statistics.median(times["judge"])
    result = {
        "pairs": n_pairs, "size": size, "batch_size": args.batch_size,
        "seconds": {"loop": loop_s, "judge": judge_s},
        "pairs_per_second": {"loop": n_pairs / loop_s, "judge": n_pairs / judge_s},
        "speedup_judge_over_loop": loop_s / judge_s,
    }
    print(f"{'method':<44}{'seconds':>10}{'pairs/s':>10}")
    print(f"{'per-prompt, one pair at a time (baseline)':<44}{loop_s:>10.2f}{n_pairs / loop_s:>10.1f}")
    print(f"{'PairRMJudge (batched across prompts)':<44}{judge_s:>10.2f}{n_pairs / judge_s:>10.1f}")
    print(f"speedup: {result['speedup_judge_over_loop']:.2f}x (target >= 3x)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
