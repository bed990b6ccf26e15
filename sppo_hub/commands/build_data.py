"""`sppo-hub build-data`: judged responses -> the iteration's table, pairs (and triplets) datasets."""

from __future__ import annotations

import argparse

RULES = ("pairwise", "pairwise_logit", "mean_score")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "build-data",
        help="turn judged responses into the iteration's preference datasets",
        description="Read a judged dataset (prompt_id, prompt, responses, raw_table, output_kind), compute "
        "P(y_i > y_j), win rates and best/worst pairs, and write table.parquet, pairs.parquet "
        "(TRL preference format + SPPO probability columns) and optionally triplets.parquet to --out.",
    )
    parser.add_argument("--judged", required=True, help="judged dataset: save_to_disk folder, .parquet or .jsonl")
    parser.add_argument("--out", required=True, help="output folder (replaced atomically)")
    parser.add_argument("--rule", choices=RULES, default="pairwise",
                        help="pairwise (default): the judge's verdict averaged over both orders; "
                             "pairwise_logit: the same in logit space; mean_score: the SPPO paper code's "
                             "sigmoid(s_i - s_j) of mean scores, for reproduction")
    parser.add_argument("--kind", choices=("logits", "probs"), default=None,
                        help="what the judge's raw_table holds (default: the dataset's output_kind column)")
    parser.add_argument("--exclude-diagonal", action="store_true",
                        help="win rate = mean over the K-1 other responses (default: K, self-comparison 0.5 included, as in the paper)")
    parser.add_argument("--triplets", action="store_true", help="also write every response with its win rate")
    parser.add_argument("--drop-ties", action=argparse.BooleanOptionalAction, default=True,
                        help="skip prompts whose responses all tie (default, as build_iteration_datasets); "
                             "--no-drop-ties keeps them")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.data import build_iteration_datasets, judged_kind, load_judged_dataset, save_iteration_datasets

    from .errors import reading

    with reading("--judged", args.judged):
        judged = load_judged_dataset(args.judged)
    kind = judged_kind(judged, args.kind)
    out = build_iteration_datasets(
        judged,
        output_kind=kind,
        rule=args.rule,
        include_diagonal=not args.exclude_diagonal,
        triplets=args.triplets,
        drop_ties=args.drop_ties,
    )
    info = {"rule": args.rule, "kind": kind, "include_diagonal": not args.exclude_diagonal,
            "drop_ties": args.drop_ties, "source": str(args.judged)}
    if "judge" in judged.column_names and len(set(judged["judge"])) == 1:
        info["judge"] = judged[0]["judge"]
    path = save_iteration_datasets(args.out, out, info=info)
    pairs = out["pairs"]
    mean_win = sum(pairs["chosen_probs_win"]) / max(len(pairs), 1)
    mean_p = sum(pairs["chosen_probs"]) / max(len(pairs), 1)
    print(f"{len(out['table'])} prompts -> {len(pairs)} pairs"
          + (f", {len(out['triplets'])} triplets" if "triplets" in out else "")
          + f"; mean P(chosen > rejected) = {mean_p:.3f}, mean chosen win rate = {mean_win:.3f} (rule={args.rule})")
    print(f"wrote {path}")
    return 0
