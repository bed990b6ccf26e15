"""`sppo-hub eval alpaca-eval | mt-bench | leaderboard`: benchmarks, optionally published to the model card."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="AlpacaEval 2.0, MT-Bench or lm-eval leaderboard tasks on a model",
                              description="Evaluate a model folder or Hub repo id; --publish REPO writes the card's "
                                          "model-index and the raw outputs/judgments to the repo in one commit.")
    sub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)

    def common(sp):
        sp.add_argument("--model", help="model folder or Hub repo id to evaluate")
        sp.add_argument("--out", required=True, help="output folder")
        sp.add_argument("--publish", default=None, help="Hub model repo id whose card gets the results")
        sp.add_argument("--iteration", type=int, default=None, help="SPPO iteration (results under iterN/)")
        sp.add_argument("--max-new-tokens", type=int, default=2048, help="max new tokens per answer")
        sp.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])

    a = sub.add_parser("alpaca-eval", help="AlpacaEval 2.0 win rate vs gpt4_1106_preview")
    common(a)
    a.add_argument("--reference", default=None, help="eval set JSON (instruction + reference output); default: Hub")
    a.add_argument("--outputs", default=None, help="existing model_outputs.json (skips generation)")
    a.add_argument("--annotations", default=None, help="existing alpaca_eval annotations.json: rescore only")
    a.add_argument("--annotator", default="weighted_alpaca_eval_gpt4_turbo", help="alpaca_eval annotator config")
    a.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint for the annotator")
    a.add_argument("--judge-model", default=None, help="model name at --base-url (or the local judge's model)")
    a.add_argument("--local-judge", default=None, choices=["pairrm", "llm", "reward_model", "gpm"],
                   help="one of our judges: a free LOCAL ESTIMATE, not the official annotator")
    a.add_argument("--max-instances", type=int, default=None, help="first N instructions only (quick estimate)")
    a.add_argument("--no-length-controlled", action="store_true", help="skip the LC GLM (needs Hub files)")
    a.set_defaults(func=_alpaca)

    m = sub.add_parser("mt-bench", help="MT-Bench single-answer grading (turn 1, turn 2, categories)")
    common(m)
    m.add_argument("--data-dir", default=None, help="folder with FastChat's question.jsonl, "
                                                    "reference_answer_gpt-4.jsonl, judge_prompts.jsonl")
    m.add_argument("--answers", default=None, help="existing FastChat model_answer .jsonl (skips generation)")
    m.add_argument("--base-url", default=None, help="OpenAI-compatible judge endpoint")
    m.add_argument("--judge-model", default="gpt-4", help="judge model name at the endpoint (default gpt-4)")
    m.add_argument("--local-judge-model", default=None, help="local chat model folder/repo as judge")
    m.add_argument("--max-questions", type=int, default=None, help="first N questions only")
    m.set_defaults(func=_mt_bench)

    lb = sub.add_parser("leaderboard", help="lm-eval tasks (default: the Open LLM Leaderboard v2 group)")
    common(lb)
    lb.add_argument("--tasks", default="leaderboard", help="comma-separated lm-eval tasks/groups")
    lb.add_argument("--include-path", default=None, help="folder of custom lm-eval task YAMLs")
    lb.add_argument("--limit", type=float, default=None, help="examples per task (lm-eval limit)")
    lb.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    lb.set_defaults(func=_leaderboard)


def _publish(args, key: str, metrics: dict) -> None:
    if args.publish:
        from ..evaluation.results import publish_results

        results = {"model": args.model, "iteration": args.iteration, key: metrics}
        print(f"published: {publish_results(args.publish, results, args.out)}")


def _out(args) -> str:
    from pathlib import Path

    return str(Path(args.out) / f"iter{args.iteration}") if args.iteration is not None else args.out


def _check_files(args: argparse.Namespace, *names: str) -> None:
    """Input files named by flags exist (and JSON Lines parse) before any model, endpoint or output is touched."""
    from pathlib import Path

    from .errors import UserError
    from .errors import check_jsonl

    for name in names:
        value, flag = getattr(args, name, None), "--" + name.replace("_", "-")
        if value is None:
            continue
        if not Path(value).exists():
            raise UserError(f"{flag} {value}: no such file or folder")
        check_jsonl(flag, value)


def _alpaca(args: argparse.Namespace) -> int:
    from .errors import UserError

    if not (args.model or args.outputs or args.annotations):
        raise UserError("--model, --outputs or --annotations is required")
    _check_files(args, "outputs", "annotations", "reference")
    from ..evaluation.alpaca_eval import run_alpaca_eval

    judge = None
    if args.local_judge:
        from ..judges import JudgeConfig, load_judge

        judge = load_judge(JudgeConfig(type=args.local_judge, model=args.judge_model))
    from ..generation import SamplingConfig

    args.out = _out(args)
    metrics = run_alpaca_eval(args.out, model=args.model, outputs_file=args.outputs, reference_file=args.reference,
                              annotations_file=args.annotations, judge=judge, annotator=args.annotator,
                              base_url=args.base_url, judge_model=args.judge_model if not judge else None,
                              max_instances=args.max_instances, backend=args.backend,
                              sampling=SamplingConfig(num_samples=1, temperature=0.0,
                                                      max_new_tokens=args.max_new_tokens),
                              length_controlled=not args.no_length_controlled)
    print(json.dumps(metrics, indent=2))
    _publish(args, "alpaca_eval", metrics)
    return 0


def _mt_bench(args: argparse.Namespace) -> int:
    from .errors import UserError

    if not (args.model or args.answers):
        raise UserError("--model or --answers is required")
    _check_files(args, "answers", "data_dir")
    from pathlib import Path

    from ..evaluation.mt_bench import endpoint_chat, local_chat, run_mt_bench

    if args.local_judge_model:
        chat, name = local_chat(args.local_judge_model), f"local:{Path(args.local_judge_model).name}"
    else:
        chat, name = endpoint_chat(args.base_url, args.judge_model), args.judge_model  # key checked before generating
    args.out = _out(args)
    from ..evaluation.mt_bench import JudgeUnavailableError

    try:
        summary = run_mt_bench(args.out, model=args.model, answers_file=args.answers, data_dir=args.data_dir,
                               chat=chat, judge_name=name, max_questions=args.max_questions,
                               max_new_tokens=args.max_new_tokens, backend=args.backend)
    except JudgeUnavailableError as err:
        raise UserError(str(err)) from None
    print(json.dumps({k: v for k, v in summary.items() if k != "unparseable"}, indent=2))
    _publish(args, "mt_bench", summary)
    return 0


def _leaderboard(args: argparse.Namespace) -> int:
    from .errors import UserError

    if not args.model:
        raise UserError("--model is required")
    _check_files(args, "include_path")
    from ..evaluation.leaderboard import run_leaderboard

    args.out = _out(args)
    scores = run_leaderboard(args.model, args.out, tasks=[t.strip() for t in args.tasks.split(",") if t.strip()],
                             include_path=args.include_path, limit=args.limit, device=args.device)
    print(json.dumps(scores, indent=2))
    _publish(args, "leaderboard", scores)
    return 0
