"""Share of an SPPO run's wall time spent outside generate / judge / train compute.

Runs the quickstart recipe (or, with --smoke, a tiny-model version of it that takes seconds)
against a throwaway local Hub and reads the run manifest, where every stage records its wall
time and the seconds spent inside model compute (generation, judging, training). Everything
else, in the same process and the same run, is loop overhead: loading and saving datasets and
checkpoints, publishing, reloading pi_t from the Hub, bookkeeping. Target: < 5% on the quickstart.

    python benchmarks/loop_overhead.py            # the quickstart, 3 runs (about 7 minutes each on 2 idle cores)
    python benchmarks/loop_overhead.py --smoke    # tiny model, one run, ~1 minute

With --repeats N (default 3; 1 with --smoke) the run is repeated in fresh folders and the table shows the run
with the median outside share, followed by the median and range over runs and the load average after each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOKE_PROMPTS = ["Say hi.", "Name a color.", "Count to three.", "What is 2+2?", "Name a fruit.", "Greet me.",
                 "Say yes.", "Name an animal.", "Spell cat.", "Say no."]


def prefer_longer(prompt: str, a: str, b: str) -> float:
    """The smoke run's judge: P(a beats b) grows with a's extra length (cheap, deterministic)."""
    return 1.0 / (1.0 + math.exp(-(len(a) - len(b)) / 4.0))


def smoke_overrides(work: Path) -> list[str]:
    from sppo_hub.testing import build_tiny_llama

    model = build_tiny_llama(work / "tiny-llama", seed=0)
    prompts = work / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in SMOKE_PROMPTS))
    return [
        f"model.name_or_path={model}", f"prompts.path={prompts}", "sampling.max_new_tokens=8",
        "sampling.num_samples=3", f"judge={{type: callable, callable: '{Path(__file__).resolve()}:prefer_longer'}}",
        "training.use_lora=false", "training.learning_rate=1e-3", "training.per_device_train_batch_size=4",
        "training.max_length=64", "evaluation.compare_prompts=2", "run_name=smoke",
    ]


def report(manifest: dict, wall: float) -> dict:
    """Per-stage wall and compute seconds, and the share of the run's wall time outside compute."""
    rows: dict[str, list[float]] = {}
    for stages in manifest["iterations"].values():
        for name, entry in stages.items():
            row = rows.setdefault(name, [0.0, 0.0])
            row[0] += entry["seconds"]
            row[1] += entry["compute_seconds"]
    compute = sum(r[1] for r in rows.values())
    return {"wall_seconds": wall, "compute_seconds": compute, "outside_compute_seconds": wall - compute,
            "outside_share": (wall - compute) / wall if wall else 0.0,
            "stages": {k: {"wall": v[0], "compute": v[1]} for k, v in rows.items()}}


def summarise_runs(results: list[dict], loads: list[float]) -> dict:
    """The run with the median outside share, plus the share's median and range over all runs."""
    shares = [r["outside_share"] for r in results]
    median_run = sorted(results, key=lambda r: r["outside_share"])[(len(results) - 1) // 2]
    return {**median_run, "repeats": len(results), "load_after_each": loads,
            "outside_share_runs": {"median": statistics.median(shares), "min": min(shares), "max": max(shares),
                                   "runs": shares},
            "wall_seconds_runs": [r["wall_seconds"] for r in results]}


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="SPPO loop: wall time inside vs outside model compute")
    for col in ("stage", "wall s", "compute s", "outside s"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for name, row in result["stages"].items():
        table.add_row(name, f"{row['wall']:.2f}", f"{row['compute']:.2f}", f"{row['wall'] - row['compute']:.2f}")
    between = result["wall_seconds"] - sum(r["wall"] for r in result["stages"].values())
    table.add_row("(between stages)", f"{between:.2f}", "0.00", f"{between:.2f}")
    table.add_row("[bold]total[/bold]", f"{result['wall_seconds']:.2f}", f"{result['compute_seconds']:.2f}",
                  f"{result['outside_compute_seconds']:.2f}")
    Console().print(table)
    share = result["outside_share"]
    print(f"outside generate/judge/train compute: {100 * share:.1f}% of wall time "
          f"(compute/wall ratio {result['compute_seconds'] / result['wall_seconds']:.3f}; target: < 5%)")
    runs = result.get("outside_share_runs")
    if runs:
        print(f"over {result['repeats']} runs: median {100 * runs['median']:.1f}% (range {100 * runs['min']:.1f}-"
              f"{100 * runs['max']:.1f}%), wall s {', '.join(f'{w:.0f}' for w in result['wall_seconds_runs'])}, "
              f"load after each {', '.join(f'{x:.2f}' for x in result['load_after_each'])}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes (seconds, for tests)")
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "quickstart.yaml"))
    parser.add_argument("--json", help="also write the result as JSON here")
    parser.add_argument("--repeats", type=int, default=None, help="runs (default 3; 1 with --smoke)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.smoke else 3)

    from sppo_hub.loop.recipe import load_recipe
    from sppo_hub.loop.run import run_from_config

    results, loads = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="sppo-overhead-") as tmp:
            work = Path(tmp)
            os.environ["SPPO_HUB_LOCAL_DIR"] = str(work / "hub")
            overrides = smoke_overrides(work) if args.smoke else []
            overrides += [f"output_dir={work / 'run'}", "publish.local_hub=true"]
            config = load_recipe(args.recipe, overrides)
            start = time.perf_counter()
            manifest = run_from_config(config)
            wall = time.perf_counter() - start
            results.append(report(manifest.data, wall))
        loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
    result = summarise_runs(results, loads)
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
