"""Peak memory of SPPO training per configuration (full fine-tuning vs LoRA; live vs precomputed reference).

Each configuration runs in its own subprocess (so one's allocations never hide another's peak) and trains
`SPPOTrainer` (loss "sppo") for a few steps on synthetic pairs. Measured on CPU as process RSS:
`baseline` = RSS after imports and loading the policy (psutil), `peak` = the process's peak RSS
(`resource.getrusage(...).ru_maxrss`), `training delta` = peak - baseline: what training adds on top of
holding the model (optimizer state, reference copy, activations, gradients).

    python benchmarks/memory.py            # tiny Llama and SmolLM2-135M-Instruct (~2 min on 2 cores)
    python benchmarks/memory.py --smoke    # tiny Llama only, full vs LoRA, ~30 s
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# (name, LoRA?, precompute reference log-probs?)
SETUPS = [("full, live ref", False, False), ("full, precomputed ref", False, True), ("LoRA r=8", True, False)]
PROMPTS = ["Name a color.", "What is 2+2?", "Say hello politely.", "Give a fruit.", "Count to five.",
           "What is the capital of France?", "Describe the sea in one sentence.", "Spell the word cat."]


def child(spec: dict) -> dict:
    """Runs inside the subprocess: load, measure baseline RSS, train, report peak RSS."""
    import resource

    import psutil
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback

    from sppo_hub.train.config import SPPOConfig
    from sppo_hub.train.trainer import SPPOTrainer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    n = spec["pairs"]
    data = Dataset.from_dict({
        "prompt": [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}] for i in range(n)],
        "chosen": [[{"role": "assistant", "content": "A clear and helpful answer, number %d, with some detail." % i}]
                   for i in range(n)],
        "rejected": [[{"role": "assistant", "content": "No."}] for _ in range(n)],
        "chosen_probs_win": [0.7] * n, "chosen_probs_lose": [0.3] * n,
    })
    peft_config = None
    if spec["lora"]:
        from peft import LoraConfig

        peft_config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                 task_type="CAUSAL_LM")
    baseline = psutil.Process().memory_info().rss
    args = SPPOConfig(output_dir=spec["work"], loss_type="sppo", eta=1000.0, learning_rate=1e-6,
                      max_steps=spec["steps"], per_device_train_batch_size=n, precompute_ref_log_probs=spec["precompute"],
                      report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, logging_steps=1,
                      max_length=128, dataloader_pin_memory=False)
    trainer = SPPOTrainer(model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=peft_config)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return {"baseline_mib": baseline / 2**20, "peak_mib": peak / 2**20, "delta_mib": (peak - baseline) / 2**20,
            "trainable_params": trainable, "total_params": sum(p.numel() for p in trainer.model.parameters())}


def measure(model_name: str, model_dir: Path, work: Path, steps: int, pairs: int, setups=SETUPS) -> list[dict]:
    from tqdm import tqdm

    rows = []
    for name, lora, precompute in tqdm(setups, desc=f"configs ({model_name})"):
        spec = {"model": str(model_dir), "lora": lora, "precompute": precompute, "steps": steps, "pairs": pairs,
                "work": str(work / "trainer")}
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                              cwd=REPO)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"{model_name} / {name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        rows.append({"model": model_name, "config": name, **json.loads(lines[-1][len("RESULT "):])})
    return rows


def print_table(rows: list[dict], steps: int, pairs: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Peak RSS of SPPO training on CPU ({steps} steps, batch {pairs} pairs, fp32)")
    for col in ("model", "config", "trainable params", "baseline MiB", "peak MiB", "training delta MiB"):
        table.add_column(col, justify="left" if col in ("model", "config") else "right")
    for r in rows:
        table.add_row(r["model"], r["config"], f"{r['trainable_params']:,}", f"{r['baseline_mib']:.0f}",
                      f"{r['peak_mib']:.0f}", f"{r['delta_mib']:.0f}")
    Console(width=140).print(table)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="Tiny Llama only, full (live ref) and LoRA.")
    parser.add_argument("--steps", type=int, default=3, help="Optimizer steps per configuration.")
    parser.add_argument("--pairs", type=int, default=8, help="Pairs per batch.")
    parser.add_argument("--smollm2-dir", default=None, help="An existing SmolLM2 export (else exported to a temp dir).")
    parser.add_argument("--json", default=None, help="Also write the rows to this JSON file.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return []
    if args.steps < 1 or args.pairs < 1:
        parser.error("--steps and --pairs must be >= 1")

    from sppo_hub.testing import build_tiny_llama

    with tempfile.TemporaryDirectory(prefix="sppo_memory_") as tmp:
        work = Path(tmp)
        setups = [SETUPS[0], SETUPS[2]] if args.smoke else SETUPS
        rows = measure("tiny Llama", build_tiny_llama(work / "tiny", seed=0), work, args.steps, args.pairs, setups)
        if not args.smoke:
            from sppo_hub.testing.smollm2 import export_smollm2

            smol = Path(args.smollm2_dir) if args.smollm2_dir else export_smollm2(work / "smollm2", dtype="float32")
            rows += measure("SmolLM2-135M", smol, work, args.steps, args.pairs)
    print_table(rows, args.steps, args.pairs)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
