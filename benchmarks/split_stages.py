"""Generate and judge split across the ranks of a launch: 1 process x 1 thread vs N processes x 1 thread.

The same recipe and prompts run as `sppo-hub run` (1 process) and as `torchrun --nproc_per_node N -m
sppo_hub.cli run` (each rank its shard of the chunk grid; N = --processes, default 2), every process limited
to one thread (OMP_NUM_THREADS=1), so the N-process run uses N cores (or, on a GPU node, N GPUs: rank i on
GPU i) where the 1-process run uses one. The stage wall times
come from each run's manifest; rounds interleave the two launches (the order rotating), and the table shows
the median and range over rounds of each launch's seconds and of the per-round ratio. The merged data of the
two launches must be identical (their shas are compared every round).

    python benchmarks/split_stages.py                 # SmolLM2-135M, 16 prompts x K=4, a PairRM-shaped judge
    python benchmarks/split_stages.py --smoke         # tiny Llama + tiny ranker, 1 round, ~1 minute

A GPU node measures the same split with `benchmarks/gpu_suite.py --parts split` (one rank per GPU, N = the
node's GPU count; the models are then the same small ones, which is a lower bound on the gain).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("generate", "judge")
PROMPTS = ["Give me three tips for sleeping better.", "Explain what a hash table is.", "Write a haiku about rain.",
           "How do vaccines work?", "Summarise the plot of Hamlet.", "What is the difference between a list and "
           "a tuple in Python?", "Suggest a name for a bakery.", "Why is the sky blue?", "Describe a good first "
           "date.", "How do I make a cup of tea?", "What causes inflation?", "Write a limerick about a cat.",
           "Explain recursion to a child.", "List four uses of baking soda.", "What is photosynthesis?",
           "How can I learn to juggle?"]


def build_models(work: Path, smoke: bool, judge_hidden: int = 256, judge_layers: int = 4) -> tuple[str, Path]:
    """(policy, judge folder): SmolLM2-135M-Instruct (or a tiny Llama) and a random ranker of PairRM's kind
    (PairRM itself is 1024 wide with 24 layers: --judge-hidden / --judge-layers move toward it)."""
    from sppo_hub.testing import build_tiny_llama
    from sppo_hub.testing.tiny_ranker import build_tiny_pairrm

    policy = str(build_tiny_llama(work / "tiny-llama", seed=0)) if smoke else "smollm2-local"
    size = {} if smoke else {"hidden_size": judge_hidden, "num_layers": judge_layers,
                             "num_heads": max(1, judge_hidden // 64)}
    return policy, build_tiny_pairrm(work / "ranker", seed=0, **size)


def recipe(work: Path, name: str, policy: str, ranker: Path, prompts: int, max_new_tokens: int) -> Path:
    import yaml

    prompt_file = work / "prompts.jsonl"
    prompt_file.write_text("".join(json.dumps({"text": p}) + "\n" for p in (PROMPTS * 8)[:prompts]))
    body = {
        "run_name": name, "model": policy, "iterations": 1, "seed": 0,
        "prompts": {"path": str(prompt_file), "column": "text"},
        # Chunks of 2 prompts: the unit of work each rank takes (and resumes by).
        "sampling": {"num_samples": 4, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": max_new_tokens,
                     "batch_size": 2, "chunk_size": 2},
        "judge": {"type": "pairrm", "model": str(ranker), "batch_size": 2},
        "training": {"loss": "sppo", "use_lora": True, "per_device_train_batch_size": 8, "max_length": 96,
                     "num_train_epochs": 1, "args": {"max_steps": 1}},
        "publish": {"enabled": False}, "evaluation": {"compare_prompts": 0},
        "output_dir": str(work / name),
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def launch(path: Path, processes: int, env: dict) -> dict:
    """Run the recipe; return {stage: seconds} and the data shas from its manifest."""
    cli = ["-m", "sppo_hub.cli", "run", str(path)]
    cmd = [sys.executable, *cli] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *cli]
    proc = subprocess.run(cmd, env=env, cwd=path.parent, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"split_stages: {' '.join(cmd[:6])} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    import yaml

    run_dir = Path(yaml.safe_load(path.read_text())["output_dir"])
    stages = json.loads((run_dir / "manifest.json").read_text())["iterations"]["1"]
    return {"seconds": {s: stages[s]["seconds"] for s in STAGES},
            "sha": {s: stages[s]["artifacts"]["sha"] for s in STAGES},
            "work": {s: stages[s]["artifacts"]["work"] for s in STAGES}}


def summarise(rounds: list[dict]) -> dict:
    """Median and range per launch and stage, and of the per-round ratio 1-process / 2-process seconds."""
    out = {}
    for stage in STAGES:
        one = [r["1"]["seconds"][stage] for r in rounds]
        two = [r["2"]["seconds"][stage] for r in rounds]
        ratio = [a / b for a, b in zip(one, two)]
        out[stage] = {"one_process": _stats(one), "two_processes": _stats(two), "speedup": _stats(ratio)}
    return out


def _stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--processes", type=int, default=2, help="ranks of the split launch (>= 2)")
    parser.add_argument("--judge-hidden", type=int, default=256, help="the random ranker's width (PairRM: 1024)")
    parser.add_argument("--judge-layers", type=int, default=4, help="the random ranker's layers (PairRM: 24)")
    parser.add_argument("--smoke", action="store_true", help="tiny models, 1 round, 4 prompts")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.prompts, args.max_new_tokens = 1, 4, 8
    if args.rounds < 1 or args.prompts < 2 or args.processes < 2:
        parser.error("--rounds must be >= 1, --prompts >= 2 and --processes >= 2")
    n = args.processes
    env = dict(os.environ, OMP_NUM_THREADS="1", TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1")
    rounds = []
    with tempfile.TemporaryDirectory(prefix="split-stages-") as tmp:
        work = Path(tmp)
        policy, ranker = build_models(work, args.smoke, args.judge_hidden, args.judge_layers)
        for r in range(args.rounds):
            result = {}
            for processes in ((1, n) if r % 2 == 0 else (n, 1)):  # the order rotates between rounds
                path = recipe(work, f"r{r}-p{processes}", policy, ranker, args.prompts, args.max_new_tokens)
                result[str(processes)] = launch(path, processes, env)
            result["2"] = result.pop(str(n)) if n != 2 else result["2"]  # the split launch, whatever its N
            if result["1"]["sha"] != result["2"]["sha"]:
                raise SystemExit(f"split_stages: round {r}: the {n}-process data differ from the 1-process data")
            result["load_average"] = os.getloadavg()[0]
            rounds.append(result)
            print(f"round {r}: " + ", ".join(f"{s} {result['1']['seconds'][s]:.1f} s / {result['2']['seconds'][s]:.1f} s"
                                             for s in STAGES) + f" (load {result['load_average']:.1f})", flush=True)
    summary = {"rounds": rounds, "stages": summarise(rounds), "prompts": args.prompts, "smoke": args.smoke,
               "processes": n, "judge": {"hidden": args.judge_hidden, "layers": args.judge_layers},
               "max_new_tokens": args.max_new_tokens,
               "cpu": _cpu_name(), "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(f"\n{args.prompts} prompts x K=4, {args.rounds} round(s), 1 thread per process, {summary['cpu']}")
    print(f"{'stage':10s} {'1 process (s)':>22s} {f'{n} processes (s)':>22s} {'speed-up':>22s}")
    for stage, row in summary["stages"].items():
        cells = [f"{row[k]['median']:.2f} ({row[k]['min']:.2f}-{row[k]['max']:.2f})"
                 for k in ("one_process", "two_processes", "speedup")]
        print(f"{stage:10s} {cells[0]:>22s} {cells[1]:>22s} {cells[2]:>22s}")
    print(f"work per rank (last round, {n} processes): " + "; ".join(
        f"{s}: " + ", ".join(f"{w['shard']} {w['items']} prompts" for w in rounds[-1]["2"]["work"][s]) for s in STAGES))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return summary


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
