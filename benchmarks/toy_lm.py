"""The full SPPO loop on a tiny Llama with a rule-based oracle judge: sppo, sppo_hard, dpo and ipo compared.

Task: the prompt "echo N" asks for "{Sure|Okay|Well}, N.". The oracle's P(a beats b): a parseable answer beats
an unparseable one (0.95), a correct one beats an incorrect one (0.9), and otherwise the styles cycle
(Sure > Okay 0.8, Okay > Well 0.6, Well > Sure 0.7), so no single answer is best and the Nash policy mixes styles.

pi_0: a tiny random Llama (`sppo_hub.testing.build_tiny_llama`) pre-trained by a plain torch loop (written here
because it is ten lines: copy correct answers at lr 3e-3, then a short low-lr phase on 30%-correct answers), so it
starts mediocre. Each iteration then runs the toolkit's own pieces: `TransformersGenerator` samples K responses,
`CallableJudge` fills the oracle tables, `data.build_table_dataset` / `build_pairs_dataset` compute win rates and
best/worst pairs, and `SPPOTrainer` fits pi_{t+1} with pi_t as the (precomputed) reference.

Methods: sppo, sppo_hard, dpo, ipo, and sppo with `sppo_hub.equilibrium.options`'s options ("sppo+all", "sppo+explore",
"sppo+reg", "sppo+all+explore+reg"): explore adds E candidates per prompt from a uniformly drawn earlier iterate
(`generation.factory.MixtureGenerator` over pi_0..pi_{t-1}) and re-estimates win rates against pi_t's K samples
(`equilibrium.explored_table_dataset`); all trains every response on its own target (`equilibrium.all_response_pairs`);
reg mixes pi_0 into the reference (`SPPOConfig.reference_mix` with `trainer.add_initial_logps`).

Reported per iteration on held-out samples, for the last iterate and ("avg_*") for the averaged policy (the uniform
mixture of pi_1..pi_t, sampled by `MixtureGenerator`): win rate vs pi_0 under the oracle, accuracy, exploitability of the
sampled policy (max over the three correct answers of P(y > pi_t) - 1/2; the oracle's best response is always
one of them) and mean response length in characters.

    python benchmarks/toy_lm.py --methods sppo,sppo_hard,dpo,ipo   # the four losses, T=8
    python benchmarks/toy_lm.py --seeds 2                          # plain sppo vs the equilibrium options
    python benchmarks/toy_lm.py --smoke --out /tmp/toy        # ~30 s
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BASE_METHODS = ("sppo", "sppo_hard", "dpo", "ipo")
EQ_OPTIONS = ("all", "explore", "reg")  # sppo_hub.equilibrium.options's options: "sppo+all+explore+reg" etc.
EQ_METHODS = ("sppo+all", "sppo+explore", "sppo+reg", "sppo+all+explore+reg")
METHODS = BASE_METHODS + EQ_METHODS
STYLES = ("Sure", "Okay", "Well")
STYLE_BEATS = {("Sure", "Okay"): 0.8, ("Okay", "Well"): 0.6, ("Well", "Sure"): 0.7}
ANSWER = re.compile(r"^\s*(Sure|Okay|Well), (\d+)\.\s*$")


@dataclass
class ToyConfig:
    """Sizes, pre-training and per-iteration training settings."""

    iterations: int = field(default=8, metadata={"help": "T, SPPO iterations per method."})
    prompts: int = field(default=64, metadata={"help": "Training prompts per iteration."})
    eval_prompts: int = field(default=32, metadata={"help": "Held-out prompts for the metrics."})
    samples: int = field(default=4, metadata={"help": "K, responses sampled per training prompt (T=1.0)."})
    eval_samples: int = field(default=8, metadata={"help": "Samples per held-out prompt for the metrics."})
    copy_steps: int = field(default=300, metadata={"help": "Pre-training steps on correct answers (lr 3e-3)."})
    noisy_steps: int = field(default=100, metadata={"help": "Pre-training steps on 30%-correct answers (lr 2e-4)."})
    train_steps: int = field(default=20, metadata={"help": "Full-batch optimizer steps per iteration."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate of every method."})
    eta: float = field(default=5.0, metadata={"help": "SPPO's eta (sppo, sppo_hard)."})
    beta: float = field(default=0.1, metadata={"help": "DPO's beta / IPO's tau."})
    explore: int = field(default=4, metadata={"help": "E, exploration candidates per prompt from earlier iterates."})
    reference_mix: float = field(default=0.1, metadata={"help": "'reg': a in the reference pi_t^(1-a) pi_0^a."})
    seed: int = field(default=0, metadata={"help": "Seed of the model, data and sampling."})


def parse(response: str) -> tuple[str, int] | None:
    m = ANSWER.match(response)
    return (m.group(1), int(m.group(2))) if m else None


def oracle(prompt: str, a: str, b: str) -> float:
    """P(a beats b | prompt) by rule: parseable > unparseable, correct > incorrect, then the style cycle."""
    target = int(prompt.split()[-1])
    pa, pb = parse(a), parse(b)
    if (pa is None) != (pb is None):
        return 0.95 if pb is None else 0.05
    if pa is None:
        return 0.5
    ca, cb = pa[1] == target, pb[1] == target
    if ca != cb:
        return 0.9 if ca else 0.1
    if pa[0] == pb[0]:
        return 0.5
    return STYLE_BEATS.get((pa[0], pb[0])) or 1.0 - STYLE_BEATS[(pb[0], pa[0])]


# ----- pi_0 -----


def _encode(tokenizer, prompt: str, answer: str) -> tuple[list[int], int]:
    """Token ids of the chat (user prompt, assistant answer) and the length of the prompt part."""
    user = [{"role": "user", "content": prompt}]
    head = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": answer}], tokenize=False)
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    return ids, len(tokenizer(head, add_special_tokens=False)["input_ids"])


def pretrain(model, tokenizer, rng: random.Random, steps: int, lr: float, correct_share: float, batch: int = 64):
    """Assistant-only next-token training on synthetic answers (plain torch: nothing in the stack does this for a toy)."""
    import torch
    from tqdm import tqdm

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in tqdm(range(steps), desc=f"pre-train (lr {lr:g}, {correct_share:.0%} correct)", leave=False):
        rows = []
        for _ in range(batch):
            n = rng.randrange(100)
            m = n if rng.random() < correct_share else rng.choice([k for k in range(100) if k != n])
            rows.append(_encode(tokenizer, f"echo {n}", f"{rng.choice(STYLES)}, {m}."))
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((batch, width), tokenizer.pad_token_id)
        labels = torch.full((batch, width), -100)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for i, (ids, start) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, start : len(ids)] = torch.tensor(ids[start:])
            mask[i, : len(ids)] = 1
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def build_pi0(work: Path, cfg: ToyConfig) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sppo_hub.testing import build_tiny_llama

    base = build_tiny_llama(work / "base", seed=cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    pretrain(model, tokenizer, rng, cfg.copy_steps, 3e-3, 1.0)
    pretrain(model, tokenizer, rng, cfg.noisy_steps, 2e-4, 0.3)
    out = work / "pi0"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# ----- one iteration and the metrics -----


def sampler(model_dir: Path, k: int, seed: int):
    from sppo_hub.generation import SamplingConfig
    from sppo_hub.generation.transformers_backend import TransformersGenerator

    sampling = SamplingConfig(num_samples=k, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=seed, batch_size=64)
    return TransformersGenerator(str(model_dir), sampling, device="cpu", dtype="float32", show_progress=False)


def mixture_sampler(models: dict[int, Path], weights: dict[int, float], k: int, seed: int):
    """`sppo_hub.generation.factory.MixtureGenerator` over iterates: each response from an iterate drawn by weight."""
    from sppo_hub.generation import SamplingConfig
    from sppo_hub.generation.transformers_backend import TransformersGenerator
    from sppo_hub.generation.factory import MixtureGenerator
    from sppo_hub.generation.mixture import MixturePolicy

    sampling = SamplingConfig(num_samples=k, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=seed, batch_size=64)
    mix = MixturePolicy.from_iterates({t: str(m) for t, m in models.items()}, weights)
    return MixtureGenerator(mix, sampling, make_component=lambda c, s: TransformersGenerator(
        c.model, s, device="cpu", dtype="float32", show_progress=False))


def train_iteration(method: str, model_dir: Path, out_dir: Path, prompts: list[str], cfg: ToyConfig, t: int,
                    history: dict[int, Path] | None = None) -> dict:
    """Sample -> judge -> win rates and pairs -> SPPOTrainer, with pi_t (model_dir) as the reference.

    "sppo+<options>" adds `sppo_hub.equilibrium.options`'s options: explore (E candidates from a uniformly drawn earlier
    iterate, judged with the rest, win rates against pi_t's K samples), all (every response on its own target)
    and reg (reference pi_t^(1-a) pi_0^a through `SPPOConfig.reference_mix` and `add_initial_logps`).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback

    from sppo_hub.equilibrium import options as equilibrium
    from sppo_hub.core.data import build_pairs_dataset, build_table_dataset
    from sppo_hub.judges.callable import CallableJudge
    from sppo_hub.train.config import SPPOConfig
    from sppo_hub.train.trainer import SPPOTrainer, add_initial_logps, loss_history, save_policy

    loss, *opts = method.split("+")
    responses = sampler(model_dir, cfg.samples, seed=cfg.seed + 101 * t).generate(prompts)
    if "explore" in opts:
        extra = mixture_sampler(history, {i: 1.0 for i in history}, cfg.explore, cfg.seed + 503 * t).generate(prompts)
        responses = [list(r) + list(e) for r, e in zip(responses, extra)]
    tables = CallableJudge(oracle, output_kind="probs", show_progress=False).pairwise_tables(prompts, responses)
    table = build_table_dataset(prompts, responses, tables, kind="probs")
    if "explore" in opts:
        table = equilibrium.explored_table_dataset(table, cfg.samples)
    pairs = equilibrium.all_response_pairs(table) if "all" in opts else build_pairs_dataset(table, drop_ties=True)
    scale = {"eta": cfg.eta} if loss.startswith("sppo") else {"beta": cfg.beta}
    if "reg" in opts:
        scale["reference_mix"] = cfg.reference_mix
    args = SPPOConfig(output_dir=str(out_dir.with_name(out_dir.name + ".trainer")), loss_type=loss, **scale,
                      learning_rate=cfg.learning_rate, max_steps=cfg.train_steps, per_device_train_batch_size=len(pairs),
                      lr_scheduler_type="constant", precompute_ref_log_probs=True, max_length=64, report_to="none",
                      save_strategy="no", use_cpu=True, disable_tqdm=True, logging_steps=1, seed=cfg.seed,
                      dataloader_pin_memory=False)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if "reg" in opts:
        pi0 = AutoModelForCausalLM.from_pretrained(history[0], dtype=torch.float32)
        pairs = add_initial_logps(pi0, pairs, args, processing_class=tokenizer)
    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainer = SPPOTrainer(policy, args=args, train_dataset=pairs, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    save_policy(trainer, out_dir)
    losses_ = loss_history(trainer)
    judged = sum(len(r) * (len(r) - 1) for r in responses)
    return {"pairs": len(pairs), "judge_calls": judged, "loss_first": losses_[0][1], "loss_last": losses_[-1][1]}


def metrics(prompts: list[str], samples: list[list[str]], ref_samples: list[list[str]]) -> dict:
    """Oracle metrics of sampled responses: win rate vs pi_0's samples, accuracy, exploitability, length, style mix."""
    import numpy as np

    win, exploit, correct, lengths, styles = [], [], [], [], {s: 0 for s in STYLES}
    for prompt, ys, y0s in zip(prompts, samples, ref_samples):
        n = int(prompt.split()[-1])
        win.append(np.mean([oracle(prompt, a, b) for a in ys for b in y0s]))
        exploit.append(max(np.mean([oracle(prompt, f"{s}, {n}.", y) for y in ys]) for s in STYLES) - 0.5)
        for y in ys:
            p = parse(y)
            correct.append(p is not None and p[1] == n)
            lengths.append(len(y))
            if p is not None:
                styles[p[0]] += 1
    total = max(sum(styles.values()), 1)
    return {"winrate_vs_pi0": float(np.mean(win)), "accuracy": float(np.mean(correct)),
            "exploitability": float(np.mean(exploit)), "length": float(np.mean(lengths)),
            **{f"style_{s}": styles[s] / total for s in STYLES}}


def run_method(method: str, pi0: Path, work: Path, train_prompts, eval_prompts, ref_samples, cfg, row0) -> list[dict]:
    """Per iteration: metrics of the last iterate, and ("avg_*") of the averaged policy, the uniform mixture of
    pi_1..pi_t sampled by `MixtureGenerator` (SPPO's guarantee is for that one)."""
    from sppo_hub.equilibrium.options import iterate_weights

    rows, current, history = [dict(row0, iteration=0, **{f"avg_{k}": v for k, v in row0.items()})], pi0, {0: pi0}
    for t in range(1, cfg.iterations + 1):
        started = time.perf_counter()
        nxt = work / method / f"iter{t}"
        info = train_iteration(method, current, nxt, train_prompts, cfg, t, history)
        history[t] = nxt
        seconds = time.perf_counter() - started
        evals = sampler(nxt, cfg.eval_samples, seed=cfg.seed + 7).generate(eval_prompts)
        weights = iterate_weights(range(1, t + 1))
        avg = mixture_sampler({i: history[i] for i in weights}, weights, cfg.eval_samples, cfg.seed + 7)
        avg_metrics = metrics(eval_prompts, avg.generate(eval_prompts), ref_samples)
        rows.append({"iteration": t, **metrics(eval_prompts, evals, ref_samples), **info, "seconds": seconds,
                     **{f"avg_{k}": v for k, v in avg_metrics.items()}})
        current = nxt
    return rows


# ----- report -----


def print_table(results: dict, seeds: int = 1) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Tiny LM, oracle judge: per iteration (held-out prompts; mean over {seeds} seed(s))")
    for col in ("method", "iter", "win vs pi_0", "accuracy", "exploitability", "avg: win / acc / exploit", "length",
                "style S/O/W", "judge calls", "s/iter"):
        table.add_column(col, justify="left" if col == "method" else "right", no_wrap=col == "method")
    for method, rows in results.items():
        for r in rows:
            table.add_row(method if r["iteration"] == 0 else "", str(r["iteration"]), f"{r['winrate_vs_pi0']:.3f}",
                          f"{r['accuracy']:.3f}", f"{r['exploitability']:.3f}",
                          f"{r['avg_winrate_vs_pi0']:.3f} / {r['avg_accuracy']:.3f} / {r['avg_exploitability']:.3f}",
                          f"{r['length']:.1f}", "/".join(f"{r[f'style_{s}']:.2f}" for s in STYLES),
                          f"{r.get('judge_calls', 0):.0f}", f"{r.get('seconds', 0):.1f}")
    Console(width=170).print(table)


def mean_over_seeds(by_seed: list[dict]) -> dict:
    """Per method and iteration, the mean of every numeric field over seeds."""
    out = {}
    for method in by_seed[0]:
        runs = [r[method] for r in by_seed]
        out[method] = [{k: (float(sum(run[i][k] for run in runs) / len(runs)) if k != "iteration" else rows_i[k])
                        for k, v in rows_i.items() if isinstance(v, (int, float))}
                       for i, rows_i in enumerate(runs[0])]
    return out


def save_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("winrate_vs_pi0", "win rate vs pi_0"), ("accuracy", "accuracy"), ("exploitability", "exploitability"),
            ("length", "response length (chars)")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (key, title) in zip(axes, keys):
        for i, (method, rows) in enumerate(results.items()):
            ax.plot([r["iteration"] for r in rows], [r[key] for r in rows], marker="o", ms=3, color=f"C{i}", label=method)
            if f"avg_{key}" in rows[0]:  # the averaged policy (mixture of iterates), dashed
                ax.plot([r["iteration"] for r in rows], [r[f"avg_{key}"] for r in rows], ls="--", color=f"C{i}", alpha=0.6)
        ax.set(title=f"{title} (dashed: averaged policy)" if key != "length" else title, xlabel="iteration")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/benchmarks/toy_lm", help="Folder for results.json and plot.png.")
    parser.add_argument("--smoke", action="store_true", help="Tiny size (2 iterations, 16 prompts, short pre-training).")
    parser.add_argument("--methods", default=",".join(("sppo", *EQ_METHODS)),
                        help=f"Comma-separated subset of {', '.join(METHODS)}.")
    parser.add_argument("--seeds", type=int, default=1, help="Runs with seeds seed..seed+N-1 (own pi_0 and prompts).")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    for name, f in ToyConfig.__dataclass_fields__.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(f.default), default=None, help=f.metadata["help"])
    args = parser.parse_args(argv)
    base = (ToyConfig(iterations=2, prompts=16, eval_prompts=8, eval_samples=4, copy_steps=60, noisy_steps=20,
                      train_steps=5) if args.smoke else ToyConfig())
    cfg = ToyConfig(**{**asdict(base), **{k: v for k, v in vars(args).items() if k in asdict(base) and v is not None}})
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if bad := [m for m in methods if m not in METHODS]:
        parser.error(f"--methods: unknown {bad}; choose from {', '.join(METHODS)}")
    if cfg.samples < 2 or cfg.iterations < 1 or cfg.prompts < 1 or args.seeds < 1:
        parser.error("--samples must be >= 2, --iterations >= 1, --prompts >= 1 and --seeds >= 1")
    if not 0 <= cfg.reference_mix < 1:
        parser.error(f"--reference-mix {cfg.reference_mix}: must lie in [0, 1)")

    import torch
    from tqdm import tqdm

    torch.set_num_threads(args.threads)  # a 150k-parameter model gains nothing from more threads, and loses under load
    started = time.perf_counter()
    by_seed, pretrain_s = [], 0.0
    for seed in range(cfg.seed, cfg.seed + args.seeds):
        scfg = ToyConfig(**{**asdict(cfg), "seed": seed})
        rng = random.Random(seed)
        train_prompts = [f"echo {rng.randrange(100)}" for _ in range(scfg.prompts)]
        eval_prompts = [f"echo {n}" for n in rng.sample(range(100), min(scfg.eval_prompts, 100))]
        with tempfile.TemporaryDirectory(prefix="toy_lm_") as tmp:
            work = Path(tmp)
            t0 = time.perf_counter()
            pi0 = build_pi0(work, scfg)
            pretrain_s += time.perf_counter() - t0
            ref_samples = sampler(pi0, scfg.eval_samples, seed=seed + 3).generate(eval_prompts)
            row0 = metrics(eval_prompts, sampler(pi0, scfg.eval_samples, seed=seed + 7).generate(eval_prompts),
                           ref_samples)
            by_seed.append({method: run_method(method, pi0, work, train_prompts, eval_prompts, ref_samples, scfg, row0)
                            for method in tqdm(methods, desc=f"methods (seed {seed})")})
    results = mean_over_seeds(by_seed)
    wall = time.perf_counter() - started
    print(f"pi_0 pre-trained in {pretrain_s:.1f} s; total {wall:.1f} s; K={cfg.samples}, {cfg.prompts} prompts, "
          f"T={cfg.iterations}, eta={cfg.eta}, beta={cfg.beta}, lr={cfg.learning_rate}")
    print_table(results, args.seeds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"config": asdict(cfg), "seeds": args.seeds, "pretrain_seconds": pretrain_s, "wall_seconds": wall,
               "results": results, "results_by_seed": by_seed if args.seeds > 1 else []}
    (out / "results.json.tmp").write_text(json.dumps(payload, indent=1))
    (out / "results.json.tmp").replace(out / "results.json")
    save_plot(results, out / "plot.png")
    print(f"wrote {out / 'results.json'} and {out / 'plot.png'}")
    return payload


if __name__ == "__main__":
    main()
