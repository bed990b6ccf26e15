"""Build the three Colab notebooks from this file with nbformat, so they are reproducible and reviewable.

    python notebooks/build_notebooks.py            # (re)write notebooks/*.ipynb
    python notebooks/build_notebooks.py --check    # exit 1 when a committed notebook differs from this file

Each notebook has one papermill "parameters" cell: its defaults are the Colab run (real models, PairRM,
the user's Hub namespace); CI injects tiny offline values (tests/test_notebooks.py). Notebooks are written
without outputs or execution counts, with fixed cell ids, so a rebuild gives byte-identical files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
# The GitHub org is not known yet: `sppo-hub/sppo-hub` is a placeholder used everywhere (badges, the last-resort
# pip source). The install cell prefers what the user has: the clone the notebook sits in, or a built wheel.
GITHUB_REPO = "sppo-hub/sppo-hub"
PIP_URL = f"git+https://github.com/{GITHUB_REPO}"
SPEC_PARAM = ("SPPO_HUB_SPEC = None           # pip source: a wheel, a clone's folder or a git URL; None: the clone\n"
              "#                                this notebook is in, else sppo_hub-*.whl here or in dist/, else GitHub")


def badge(name: str) -> str:
    url = f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/main/notebooks/{name}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def install_cell(extras: str, extra_lines: str = "") -> str:
    """The guarded install cell: SPPO_HUB_SPEC (or the clone / wheel / git source it finds) with `extras`."""
    return (
        "# Installs sppo-hub (skipped when INSTALL = False, e.g. in CI or a local venv) from SPPO_HUB_SPEC.\n"
        "from pathlib import Path\n\n\n"
        "def sppo_hub_requirement(spec, extras=\"\"):\n"
        "    \"\"\"A pip requirement for sppo-hub from a wheel, a clone or a git URL (None: find one).\"\"\"\n"
        "    if spec is None:\n"
        "        here = Path.cwd().resolve()\n"
        "        clone = next((p for p in (here, *here.parents)\n"
        "                      if (p / \"pyproject.toml\").is_file() and (p / \"sppo_hub\" / \"__init__.py\").is_file()), None)\n"
        "        wheels = sorted([*Path(\".\").glob(\"sppo_hub-*.whl\"), *Path(\"dist\").glob(\"sppo_hub-*.whl\")])\n"
        f"        spec = str(clone) if clone else str(wheels[-1]) if wheels else \"{PIP_URL}\"\n"
        "    if not str(spec).startswith((\"git+\", \"http://\", \"https://\")):\n"
        "        spec = Path(spec).expanduser().resolve().as_uri()  # a local wheel or folder\n"
        "    return f\"sppo-hub{extras} @ {spec}\"\n\n\n"
        "if INSTALL:\n"
        f"    requirement = sppo_hub_requirement(SPPO_HUB_SPEC, \"{f'[{extras}]' if extras else ''}\")\n"
        "    print(\"installing\", requirement)\n"
        "    %pip install -q \"{requirement}\"\n" + extra_lines
    )


HUB_MD = """## Hub: your account, or a local Hub

With `LOCAL_HUB = False` (default) repos go to your namespace on huggingface.co. In Colab, add a **write**
token as the secret `HF_TOKEN` (key icon in the left bar): `huggingface_hub` reads it by itself. Without one,
the cell below asks you to log in. With `LOCAL_HUB = True` nothing leaves this machine: sppo-hub starts its
built-in local Hub (a real HTTP server the unmodified `huggingface_hub` client talks to) and every repo is
stored under `LOCAL_HUB_DIR`."""

HUB_CELL = """import os
import secrets

from huggingface_hub import HfApi, get_token

from sppo_hub.hub import start_local_hub, use_endpoint

hub = None
if LOCAL_HUB:
    token = "hf_local_" + secrets.token_hex(16)  # a throwaway token for this session's local Hub
    hub = start_local_hub(LOCAL_HUB_DIR, port=0, token=token)
    use_endpoint(hub.url, token=token)  # huggingface_hub, datasets and transformers now talk to it
    endpoint = hub.url
else:
    endpoint = HUB_ENDPOINT
    if endpoint:
        use_endpoint(endpoint)
    if get_token() is None:  # no HF_TOKEN secret / variable and no saved login
        from huggingface_hub import login

        login()
namespace = NAMESPACE or HfApi(endpoint=endpoint).whoami()["name"]
print(f"Hub: {endpoint or 'https://huggingface.co'}, namespace: {namespace}")"""

HUB_PARAMS = """LOCAL_HUB = False              # True: no account; repos live in a local Hub under LOCAL_HUB_DIR
LOCAL_HUB_DIR = ".hub"
HUB_ENDPOINT = None            # None: huggingface.co (or $HF_ENDPOINT); a URL for another Hub deployment
NAMESPACE = None               # your user or org; None: the token's user"""

DTYPE_CELL = """import torch

GPU = torch.cuda.is_available()
# bf16 needs compute capability >= 8 (L4, A100); a T4 (7.5) trains in fp32.
BF16 = GPU and torch.cuda.get_device_capability()[0] >= 8
print("GPU:", torch.cuda.get_device_name(0) if GPU else "none (CPU)", "| bf16 training:", BF16)"""


def notebook(cells: list, gpu: bool = True):
    nb = new_notebook(cells=cells)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": [], "toc_visible": True},
    }
    if gpu:
        nb.metadata["accelerator"] = "GPU"
        nb.metadata["colab"]["gpuType"] = "T4"
    return nb


def params(text: str):
    return new_code_cell(text, metadata={"tags": ["parameters"]})


# ------------------------------------------------------------------------------------------------ 01


def quickstart():
    name = "01_quickstart.ipynb"
    return name, notebook([
        new_markdown_cell(f"""# SPPO quickstart: one iteration, published to the Hub

{badge(name)}

Self-Play Preference Optimization ([Wu et al., 2024](https://arxiv.org/abs/2405.00675)) improves a chat model
against itself: sample K responses per prompt from the current policy pi_t, let a pairwise judge (PairRM)
compare every ordered pair, turn the verdicts into each response's win rate P(y > pi_t | x), and fit pi_(t+1)
with the SPPO square loss so that log pi_(t+1)/pi_t of a response tracks eta (win rate - 1/2).

This notebook runs **one iteration with LoRA** through the `sppo_hub` Python API, publishes the preference
data and the merged model to the Hub, then looks at the data (win rates), the model card, and chats with the
result. On a free Colab T4 the defaults take roughly 10-20 minutes (an estimate: generation dominates).

Every size is in the next cell (papermill `parameters`); CI runs this notebook on CPU with a tiny model."""),
        params(f"""# Parameters. The defaults are the Colab run; CI overrides them with tiny offline values.
INSTALL = True                 # pip install sppo-hub (set False where it is installed already)
{SPEC_PARAM}
MODEL = "Qwen/Qwen2.5-0.5B-Instruct"   # pi_0: any chat model with a chat template
PROMPTS = "openbmb/UltraFeedback"      # Hub dataset id or a local .jsonl/.json/.csv/.parquet/.txt file
PROMPTS_SPLIT = "train"
PROMPTS_COLUMN = "instruction"
PROMPT_LIMIT = 64              # prompts used in this iteration (after shuffling)
NUM_SAMPLES = 5                # K responses per prompt (the paper: 5)
MAX_NEW_TOKENS = 256
GEN_BATCH_SIZE = 16            # prompts per generate() call
JUDGE_TYPE = "pairrm"
JUDGE_MODEL = "llm-blender/PairRM"
JUDGE_BATCH_SIZE = 16
ETA = 10.0                     # SPPO eta; the paper's 1000 goes with full fine-tuning at lr 5e-7
LEARNING_RATE = 1e-4           # LoRA learning rate
LORA_R = 16
TRAIN_BATCH_SIZE = 2
GRAD_ACCUM = 4
MAX_LENGTH = 512               # prompt + response tokens kept in training
{HUB_PARAMS}
PRIVATE = False
RUN_NAME = "sppo-quickstart"
OUTPUT_DIR = "runs/sppo-quickstart"
CHAT_PROMPT = "Give me three tips for staying focused while studying."
CHAT_MAX_NEW_TOKENS = 128
SEED = 0"""),
        new_markdown_cell("## Install\n\nIn Colab, restart the runtime if pip reports that torch was replaced."),
        new_code_cell(install_cell("")),
        new_markdown_cell(HUB_MD),
        new_code_cell(HUB_CELL),
        new_markdown_cell("""## The run: one SPPO iteration with LoRA

`RunConfig` composes every stage's config (the same fields as a YAML recipe: `save_recipe` writes one, and
`sppo-hub run <recipe>` would run the same thing from a shell). `run_from_config` generates, judges, builds
the datasets, publishes the data, trains, merges the LoRA adapter and publishes the model. Re-running the
cell resumes from the run manifest in `OUTPUT_DIR` instead of starting over."""),
        new_code_cell(DTYPE_CELL),
        new_code_cell("""from pathlib import Path

from sppo_hub import (JudgeConfig, ModelConfig, PromptsConfig, PublishConfig, RunConfig, SamplingConfig,
                      TrainingConfig, run_from_config, save_recipe)

config = RunConfig(
    run_name=RUN_NAME,
    model=ModelConfig(name_or_path=MODEL),
    prompts=PromptsConfig(path=PROMPTS, split=PROMPTS_SPLIT, column=PROMPTS_COLUMN, limit=PROMPT_LIMIT),
    iterations=1,
    sampling=SamplingConfig(num_samples=NUM_SAMPLES, temperature=0.7, top_p=0.9, max_new_tokens=MAX_NEW_TOKENS,
                            batch_size=GEN_BATCH_SIZE, seed=SEED),
    judge=JudgeConfig(type=JUDGE_TYPE, model=JUDGE_MODEL, batch_size=JUDGE_BATCH_SIZE),
    training=TrainingConfig(loss="sppo", eta=ETA, use_lora=True, lora_r=LORA_R, lora_alpha=2 * LORA_R,
                            learning_rate=LEARNING_RATE, optim="adamw_torch", warmup_ratio=0.0,
                            per_device_train_batch_size=TRAIN_BATCH_SIZE, gradient_accumulation_steps=GRAD_ACCUM,
                            max_length=MAX_LENGTH, bf16=BF16),
    publish=PublishConfig(org=namespace, endpoint=endpoint, private=PRIVATE),
    seed=SEED,
    output_dir=OUTPUT_DIR,
).validate()
print(save_recipe(config, Path(OUTPUT_DIR + ".yaml")).read_text())"""),
        new_code_cell("""resume = (Path(OUTPUT_DIR) / "manifest.json").exists()
manifest = run_from_config(config, resume=resume)
data_ref = manifest.stage(1, "publish_data")["artifacts"]
model_ref = manifest.stage(1, "publish_model")["artifacts"]
print("data: ", data_ref["repo_id"], data_ref["commit"][:8])
print("model:", model_ref["repo_id"], model_ref["commit"][:8])"""),
        new_markdown_cell("""## The published preference data

The data repo has three configs: `table` (each prompt's K responses, the K x K preference matrix and the win
rates), `pairs` (TRL's preference format plus the paper's probability columns) and `triplets`. Below: a few
prompts with every response's win rate, the chosen (best) and rejected (worst) response marked, then the
distribution of win rates."""),
        new_code_cell("""import pandas as pd
from datasets import load_dataset
from IPython.display import Markdown, display

from sppo_hub.core.preference import select_pair

table = load_dataset(data_ref["repo_id"], "table", split="train", revision=data_ref["commit"])
rows = []
for example in table.select(range(min(3, len(table)))):
    chosen, rejected = select_pair(example["win_rates"])
    for k, (response, rate) in enumerate(zip(example["responses"], example["win_rates"])):
        role = "chosen" if k == chosen else "rejected" if k == rejected else ""
        rows.append({"prompt": example["prompt"][:60], "k": k, "win rate": round(rate, 3), "pair": role,
                     "response": response[:120]})
display(pd.DataFrame(rows))"""),
        new_code_cell("""%matplotlib inline
import matplotlib.pyplot as plt
import numpy as np

all_rates = np.concatenate([np.asarray(w, dtype=float) for w in table["win_rates"]])
chosen_rates = [max(w) for w in table["win_rates"]]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.hist(all_rates, bins=20, range=(0, 1), alpha=0.6, label="every response")
ax.hist(chosen_rates, bins=20, range=(0, 1), alpha=0.6, label="chosen (best of K)")
ax.axvline(0.5, color="gray", linestyle="--", linewidth=1)
ax.set_xlabel("win rate  P(y > pi_t | x)")
ax.set_ylabel("responses")
ax.legend()
plt.show()
print(f"{len(table)} prompts, mean win rate of the chosen response: {np.mean(chosen_rates):.3f}")"""),
        new_markdown_cell("## The model card\n\nGenerated from the run: base model, data repo, hyperparameters, "
                          "loss curve and lineage."),
        new_code_cell("""from huggingface_hub import ModelCard

api = HfApi(endpoint=endpoint)
card = ModelCard.load(api.hf_hub_download(model_ref["repo_id"], "README.md", revision=model_ref["commit"]))
print(card.data.to_yaml())
display(Markdown(card.text))"""),
        new_markdown_cell("## Chat with the result\n\nThe base policy pi_0 and the published pi_1 answer the same "
                          "prompt (greedy decoding), both loaded from the Hub with `transformers`."),
        new_code_cell("""from transformers import pipeline


def ask(model_id, prompt, revision=None, max_new_tokens=CHAT_MAX_NEW_TOKENS):
    chat = pipeline("text-generation", model=model_id, revision=revision, device=0 if GPU else -1)
    out = chat([{"role": "user", "content": prompt}], max_new_tokens=max_new_tokens, do_sample=False)
    return out[0]["generated_text"][-1]["content"]


for label, model_id, revision in [("pi_0 (base)", MODEL, None), ("pi_1 (SPPO)", model_ref["repo_id"],
                                                                   model_ref["commit"])]:
    print(f"--- {label}: {model_id}\\n{ask(model_id, CHAT_PROMPT, revision)}\\n")"""),
        new_markdown_cell("""## Next

* `02_sppo_colab_gpu.ipynb`: the paper's loop, 2-3 iterations, each pushed to the Hub.
* `03_evaluate_and_demo.ipynb`: AlpacaEval 2.0 and MT-Bench for each iteration, results in the model cards,
  and a Gradio Space for the final model."""),
    ])


# ------------------------------------------------------------------------------------------------ 02

GPU_NOTES = """## Sizing for one Colab GPU

What fits where (LoRA unless noted). Memory follows from the model sizes; the times are **rough estimates, not
measurements** (this notebook's CI runs on CPU). The run prints its own per-stage times after each iteration:
scale `PROMPT_LIMIT` from those.

| GPU | memory | suggested settings | training dtype | rough time per iteration |
|---|---|---|---|---|
| T4 (free tier) | 16 GB | Qwen2.5-0.5B-Instruct, K=5, 512 new tokens, 200 prompts, batch 2 x 4 | fp32 (no bf16) | 15-30 min |
| L4 | 24 GB | Qwen2.5-1.5B-Instruct, K=5, 512 new tokens, 300 prompts, batch 2 x 4 | bf16 | 20-40 min |
| A100 40/80 GB | 40-80 GB | Qwen2.5-1.5B-Instruct, K=5, 1024 new tokens, 1000 prompts; full fine-tuning fits (`USE_LORA = False`, lr 5e-7, eta 1000 as in the paper) | bf16 | 30-60 min |

Where the memory goes: the policy (0.5B: 1 GB in bf16, 2 GB in fp32; 1.5B: 3.1 / 6.2 GB), PairRM (0.4B,
about 0.9 GB in bf16), and in training the activations, which grow with `TRAIN_BATCH_SIZE` x `MAX_LENGTH`
(chosen and rejected both go through the policy and the reference pass). With LoRA the reference policy is
the same weights with the adapter switched off, so no second copy is loaded. If training runs out of memory,
halve `TRAIN_BATCH_SIZE` and double `GRAD_ACCUM`, or lower `MAX_LENGTH`.

**vLLM.** `USE_VLLM = "auto"` generates with vLLM when it is installed (`INSTALL_VLLM = True`; it replaces
torch, so restart the runtime afterwards). The whole loop runs in this one process: vLLM asks for 90% of the
GPU when it starts, while PairRM and the trainer's cached memory from the previous iteration are still held,
so it can refuse to start from iteration 2 on. Until the recipe exposes vLLM's memory share, keep the
transformers backend on a single GPU (the default: Colab ships without vLLM)."""


VLLM_INSTALL = ("    if INSTALL_VLLM:\n        vllm_requirement = sppo_hub_requirement(SPPO_HUB_SPEC, \"[vllm]\")\n"
                "        %pip install -q \"{vllm_requirement}\"\n")


def colab_gpu():
    name = "02_sppo_colab_gpu.ipynb"
    return name, notebook([
        new_markdown_cell(f"""# SPPO on one Colab GPU: the paper's loop, 2-3 iterations

{badge(name)}

Algorithm 1 of [Wu et al. (2024)](https://arxiv.org/abs/2405.00675), sized for one GPU: each iteration
takes its own chunk of UltraFeedback prompts, samples K=5 responses from the current policy pi_t (vLLM
when available), judges every ordered pair with PairRM, and trains pi_(t+1) with the SPPO loss against pi_t.
Each iteration's data and model are pushed to your Hub namespace (`<namespace>/<run>-iter<t>-data` and
`<namespace>/<run>-iter<t>`, tagged, in one collection); the next iteration loads pi_t back from the Hub.
Held-out prompts measure each pi_t against pi_(t-1) and pi_0 with the same judge.

Differences from the paper: a 0.5-1.5B model instead of 7-8B, LoRA (merged before each push) instead of full
fine-tuning with eta scaled to match, and hundreds of prompts per iteration instead of ~20k."""),
        params(f"""# Parameters. The defaults fit a free Colab T4; CI overrides them with tiny offline values.
INSTALL = True
{SPEC_PARAM}
INSTALL_VLLM = False           # also pip install vLLM (GPU only; restart the runtime afterwards)
MODEL = "Qwen/Qwen2.5-0.5B-Instruct"   # 0.5-2B instruct models fit one Colab GPU (see the table below)
PROMPTS = "openbmb/UltraFeedback"
PROMPTS_SPLIT = "train"
PROMPTS_COLUMN = "instruction"
PROMPT_LIMIT = 632             # all prompts: COMPARE_PROMPTS held out, the rest split across iterations
COMPARE_PROMPTS = 32           # held-out prompts judged pi_t vs pi_(t-1) and vs pi_0 (0: off)
ITERATIONS = 3
NUM_SAMPLES = 5                # K (the paper: 5)
TEMPERATURE = 0.7
TOP_P = 0.9
MAX_NEW_TOKENS = 512
GEN_BATCH_SIZE = 16
USE_VLLM = "auto"              # "auto": vLLM when installed and a GPU is present; True / False to force
JUDGE_TYPE = "pairrm"
JUDGE_MODEL = "llm-blender/PairRM"
JUDGE_BATCH_SIZE = 32
USE_LORA = True
LORA_R = 16
ETA = 10.0
LEARNING_RATE = 1e-4
OPTIM = "adamw_torch"          # the paper: rmsprop (with full fine-tuning at lr 5e-7)
WARMUP_RATIO = 0.1
TRAIN_BATCH_SIZE = 2
GRAD_ACCUM = 4
MAX_LENGTH = 1024
GRADIENT_CHECKPOINTING = True
{HUB_PARAMS}
PRIVATE = False
RUN_NAME = "sppo-colab"
OUTPUT_DIR = "runs/sppo-colab"
SEED = 0"""),
        new_markdown_cell(GPU_NOTES),
        new_markdown_cell("## Install"),
        new_code_cell(install_cell("eval", VLLM_INSTALL)),
        new_markdown_cell(HUB_MD),
        new_code_cell(HUB_CELL),
        new_markdown_cell("## The recipe\n\nThe same fields as the YAML recipes in `recipes/`; the saved file "
                          "reproduces this run with `sppo-hub run`."),
        new_code_cell(DTYPE_CELL + """

import importlib.util

backend = "vllm" if USE_VLLM is True or (USE_VLLM == "auto" and GPU and importlib.util.find_spec("vllm")) \\
    else "transformers"
print("generation backend:", backend)"""),
        new_code_cell("""from pathlib import Path

from sppo_hub import (EvaluationConfig, JudgeConfig, ModelConfig, PromptsConfig, PublishConfig, RunConfig,
                      SamplingConfig, TrainingConfig, run_from_config, save_recipe)

config = RunConfig(
    run_name=RUN_NAME,
    model=ModelConfig(name_or_path=MODEL),
    prompts=PromptsConfig(path=PROMPTS, split=PROMPTS_SPLIT, column=PROMPTS_COLUMN, limit=PROMPT_LIMIT,
                          split_across_iterations=True),
    iterations=ITERATIONS,
    sampling=SamplingConfig(num_samples=NUM_SAMPLES, temperature=TEMPERATURE, top_p=TOP_P,
                            max_new_tokens=MAX_NEW_TOKENS, batch_size=GEN_BATCH_SIZE, seed=SEED),
    judge=JudgeConfig(type=JUDGE_TYPE, model=JUDGE_MODEL, batch_size=JUDGE_BATCH_SIZE),
    generation_backend=backend,
    training=TrainingConfig(loss="sppo", eta=ETA, use_lora=USE_LORA, lora_r=LORA_R, lora_alpha=2 * LORA_R,
                            learning_rate=LEARNING_RATE, optim=OPTIM, warmup_ratio=WARMUP_RATIO,
                            per_device_train_batch_size=TRAIN_BATCH_SIZE, gradient_accumulation_steps=GRAD_ACCUM,
                            max_length=MAX_LENGTH, bf16=BF16, gradient_checkpointing=GRADIENT_CHECKPOINTING and GPU),
    publish=PublishConfig(org=namespace, endpoint=endpoint, private=PRIVATE),
    evaluation=EvaluationConfig(compare_prompts=COMPARE_PROMPTS),
    seed=SEED,
    output_dir=OUTPUT_DIR,
).validate()
print(save_recipe(config, Path(OUTPUT_DIR + ".yaml")).read_text())"""),
        new_markdown_cell("""## Run the loop

Each stage is recorded in `OUTPUT_DIR/manifest.json` as it finishes; if Colab disconnects, run the notebook
again with the same parameters and the run resumes where it stopped (nothing is recomputed or re-pushed)."""),
        new_code_cell("""resume = (Path(OUTPUT_DIR) / "manifest.json").exists()
manifest = run_from_config(config, resume=resume)"""),
        new_markdown_cell("## What each iteration published and measured"),
        new_code_cell("""import pandas as pd
from IPython.display import display

rows = []
for t in range(1, ITERATIONS + 1):
    stage = lambda name: (manifest.stage(t, name) or {}).get("artifacts", {})  # noqa: E731
    compare = stage("compare")
    rows.append({
        "iteration": t,
        "model repo": stage("publish_model").get("repo_id"),
        "commit": (stage("publish_model").get("commit") or "")[:8],
        "data repo": stage("publish_data").get("repo_id"),
        "pairs": stage("data").get("rows", {}).get("pairs"),
        "mean chosen win rate": stage("data").get("mean_chosen_win_rate"),
        "win rate vs pi_(t-1)": compare.get("win_rate_vs_previous"),
        "win rate vs pi_0": compare.get("win_rate_vs_base"),
    })
display(pd.DataFrame(rows))
times = pd.DataFrame([{"iteration": t, **{name: round(entry["seconds"], 1) for name, entry in stages.items()}}
                      for t, stages in sorted(manifest.data["iterations"].items(), key=lambda kv: int(kv[0]))])
print("seconds per stage (scale PROMPT_LIMIT from these):")
display(times)"""),
        new_code_cell("""%matplotlib inline
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 3.5))
for t in range(1, ITERATIONS + 1):
    loss_history = manifest.stage(t, "train")["artifacts"]["loss_history"]  # [(step, loss), ...]
    if loss_history:
        steps, losses = zip(*loss_history)
        ax.plot(steps, losses, marker=".", label=f"iteration {t}")
ax.set_xlabel("optimizer step")
ax.set_ylabel("SPPO loss")
ax.legend()
plt.show()
repo_ids = [r["model repo"] for r in rows]
print("Evaluate these with 03_evaluate_and_demo.ipynb:", repo_ids)"""),
    ])


# ------------------------------------------------------------------------------------------------ 03


def evaluate_and_demo():
    name = "03_evaluate_and_demo.ipynb"
    return name, notebook([
        new_markdown_cell(f"""# Evaluate every iteration, put the results in the cards, deploy a Space

{badge(name)}

For the base model and each iteration of a run published by `02_sppo_colab_gpu.ipynb`:

* **AlpacaEval 2.0** against gpt4_1106_preview: always with a free local judge (PairRM; reported as a
  *local estimate*, never as the official number), and with alpaca_eval's official annotator
  (`weighted_alpaca_eval_gpt4_turbo`) when `OPENAI_API_KEY` is set (a Colab secret works) or `JUDGE_BASE_URL`
  points at an OpenAI-compatible server.
* **MT-Bench** (80 questions, 2 turns) judged by GPT-4 through the same key / endpoint, else by a local chat
  model (a weak judge: its scores are labelled with its name).

Results go into each iteration's model card (`model-index`) with the raw outputs and judgments in one
commit; a plot shows the scores across iterations; then the final model is deployed as a Gradio Space
(best-of-n answers reranked by the judge, and a tab comparing iterations).

**Expected run time** with the defaults (base + 3 iterations, 100 AlpacaEval instances, 80 two-turn MT-Bench
questions, up to 1024 new tokens per answer): roughly 1.5-2.5 hours on a free Colab T4 with the transformers
backend, about a third of that with vLLM on an A100. This is an estimate, not a measurement: generating the
4 x 260 answers dominates, then the MT-Bench judge (a local judge model generates up to 512 tokens per
judgment). `ALPACA_MAX_INSTANCES = 20` and `MT_BENCH_MAX_QUESTIONS = 10` give a first look in ~20 minutes."""),
        params(f"""# Parameters. The defaults evaluate the run of 02_sppo_colab_gpu.ipynb; CI uses tiny offline values.
INSTALL = True
{SPEC_PARAM}
RUN_NAME = "sppo-colab"        # the run to evaluate: repos <namespace>/<RUN_NAME>-iter<t>
ITERATIONS = 3
BASE_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"   # evaluated as iteration 0 (None: skip)
{HUB_PARAMS}
EVAL_DIR = "eval"
BACKEND = "transformers"       # or "vllm" when installed (A100: it shares the GPU with the judges)
MAX_NEW_TOKENS = 1024
ALPACA_REFERENCE_FILE = None   # None: the eval set from the Hub dataset tatsu-lab/alpaca_eval
ALPACA_MAX_INSTANCES = 100     # None: all 805 (needed for numbers comparable with the leaderboard)
LENGTH_CONTROLLED = True       # alpaca_eval's length-controlled win rate (downloads its GLM files)
LOCAL_JUDGE_TYPE = "pairrm"
LOCAL_JUDGE_MODEL = "llm-blender/PairRM"
ALPACA_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"   # the official annotator
JUDGE_BASE_URL = None          # OpenAI-compatible endpoint for the official annotator and MT-Bench; None: OpenAI
ALPACA_JUDGE_MODEL = None      # None: the annotator's own model (gpt-4-1106-preview)
MT_BENCH_JUDGE_MODEL = "gpt-4"
MT_BENCH_LOCAL_JUDGE = "Qwen/Qwen2.5-1.5B-Instruct"   # used when there is no key / endpoint
MT_BENCH_JUDGE_MAX_NEW_TOKENS = 512
MT_BENCH_DATA_DIR = None       # None: FastChat's question / reference / judge-prompt files from GitHub
MT_BENCH_MAX_QUESTIONS = None  # None: all 80
PUBLISH_RESULTS = True         # write the results into each iteration's model card
TRY_DEMO = True                # launch the Space's app in this notebook before deploying
SPACE_ID = None                # None: <namespace>/<RUN_NAME>-iter<ITERATIONS>-chat
SPACE_HARDWARE = None          # e.g. "t4-small" (paid); None: the free CPU Space
SPACE_DRY_RUN = False          # True: only show what would be uploaded"""),
        new_markdown_cell("## Install"),
        new_code_cell(install_cell("eval,space")),
        new_markdown_cell(HUB_MD),
        new_code_cell(HUB_CELL),
        new_markdown_cell("## Which models, which judges"),
        new_code_cell("""from sppo_hub.hub import HubPublisher

try:  # Colab secrets: OPENAI_API_KEY enables the official annotator (the key is never printed)
    from google.colab import userdata

    os.environ.setdefault("OPENAI_API_KEY", userdata.get("OPENAI_API_KEY"))
except Exception:  # not in Colab, or no such secret
    pass
official = bool(os.environ.get("OPENAI_API_KEY")) or JUDGE_BASE_URL is not None

publisher = HubPublisher(namespace, RUN_NAME, endpoint=endpoint)
models = ([(0, BASE_MODEL)] if BASE_MODEL else []) + [(t, publisher.model_repo_id(t))
                                                      for t in range(1, ITERATIONS + 1)]
api = HfApi(endpoint=endpoint)
for t, repo in models[1 if BASE_MODEL else 0:]:
    if not api.repo_exists(repo):
        raise ValueError(f"RUN_NAME / NAMESPACE: no model repo {repo}; run 02_sppo_colab_gpu.ipynb first or fix them")
print("models:", models)
print("official annotator + GPT-4 MT-Bench judge:" if official else "local judges only:",
      JUDGE_BASE_URL or ("OpenAI" if official else f"{LOCAL_JUDGE_MODEL}, {MT_BENCH_LOCAL_JUDGE}"))"""),
        new_markdown_cell("""## Run the benchmarks

`evaluate_iteration` generates each model's answers once, scores them, and (for published iterations) commits
the card's model-index plus every raw file under `eval_results/iter<t>/`. With a key, the official annotator
then judges the same (greedy) AlpacaEval answers with `run_alpaca_eval` and its numbers are
committed next to the local estimate (in `eval_results/iter<t>/alpaca_eval_official/`)."""),
        new_code_cell("""import logging
from pathlib import Path

from sppo_hub.evaluation import EvalConfig, evaluate_iteration, publish_results
from sppo_hub.evaluation.alpaca_eval import run_alpaca_eval
from sppo_hub.generation import SamplingConfig

logging.getLogger("httpx2").setLevel(logging.WARNING)  # alpaca_eval turns on INFO logs: no line per HTTP request
eval_config = EvalConfig(
    benchmarks=["alpaca_eval", "mt_bench"], out_dir=EVAL_DIR, max_new_tokens=MAX_NEW_TOKENS, backend=BACKEND,
    alpaca_reference_file=ALPACA_REFERENCE_FILE, alpaca_max_instances=ALPACA_MAX_INSTANCES,
    length_controlled=LENGTH_CONTROLLED, local_judge={"type": LOCAL_JUDGE_TYPE, "model": LOCAL_JUDGE_MODEL},
    judge_base_url=JUDGE_BASE_URL, judge_model=MT_BENCH_JUDGE_MODEL if official else None,
    mt_bench_local_judge_model=None if official else MT_BENCH_LOCAL_JUDGE,
    mt_bench_judge_max_new_tokens=MT_BENCH_JUDGE_MAX_NEW_TOKENS,
    mt_bench_data_dir=MT_BENCH_DATA_DIR, mt_bench_max_questions=MT_BENCH_MAX_QUESTIONS,
)
history = []
for t, model in models:
    publish = model if (PUBLISH_RESULTS and t > 0) else False
    results = evaluate_iteration(model, eval_config, publish=publish, iteration=t)
    entry = {"iteration": t, "model": model, "alpaca_eval_local": results["alpaca_eval"],
             "mt_bench": results["mt_bench"], "alpaca_eval": results["alpaca_eval"]}
    if official:
        out = Path(results["out_dir"]) / "official"
        # Greedy decoding: the same answers as above, generated again (run_alpaca_eval's outputs_file is for
        # complete user files and refuses the empty answers a small model may give).
        metrics = run_alpaca_eval(out / "alpaca_eval_official", model=model, reference_file=ALPACA_REFERENCE_FILE,
                                  annotator=ALPACA_ANNOTATOR, base_url=JUDGE_BASE_URL, judge_model=ALPACA_JUDGE_MODEL,
                                  max_instances=ALPACA_MAX_INSTANCES, backend=BACKEND,
                                  sampling=SamplingConfig(num_samples=1, temperature=0.0,
                                                          max_new_tokens=MAX_NEW_TOKENS),
                                  length_controlled=LENGTH_CONTROLLED)
        entry["alpaca_eval"] = entry["alpaca_eval_official"] = metrics
        if publish:
            publish_results(model, {"iteration": t, "alpaca_eval": metrics}, out, api=api)
    history.append(entry)"""),
        new_code_cell("""import pandas as pd
from IPython.display import Image, Markdown, display


def pct(metrics, key="win_rate"):
    return None if not metrics or metrics.get(key) is None else round(metrics[key], 2)


display(pd.DataFrame([{
    "iteration": h["iteration"], "model": h["model"],
    "AlpacaEval WR, local judge (%)": pct(h["alpaca_eval_local"]),
    "AlpacaEval WR, official (%)": pct(h.get("alpaca_eval_official")),
    "AlpacaEval LC, official (%)": pct(h.get("alpaca_eval_official"), "length_controlled_winrate"),
    "MT-Bench": pct(h["mt_bench"], "overall"),
    "MT-Bench judge": h["mt_bench"]["judge"],
} for h in history]))"""),
        new_markdown_cell("## The results in the model card"),
        new_code_cell("""from huggingface_hub import ModelCard

if PUBLISH_RESULTS:
    last_repo = models[-1][1]
    card = ModelCard.load(api.hf_hub_download(last_repo, "README.md"))
    display(pd.DataFrame([{"dataset": r.dataset_name, "metric": r.metric_name, "value": r.metric_value}
                          for r in card.data.eval_results or []]))
    print([f for f in api.list_repo_files(last_repo) if f.startswith("eval_results/")][:20])"""),
        new_markdown_cell("## Across iterations\n\nAlpacaEval win rate (official annotator when available, "
                          "else the local estimate) and MT-Bench score by iteration; the PNG is also "
                          "uploaded to the last iteration's repo."),
        new_code_cell("""from sppo_hub.evaluation import plot_run_history

plot = plot_run_history(history, Path(EVAL_DIR) / "run_history.png")
display(Image(filename=str(plot)))
if PUBLISH_RESULTS:
    api.upload_file(path_or_fileobj=str(plot), path_in_repo="eval_results/run_history.png", repo_id=models[-1][1],
                    commit_message="Evaluation across iterations")"""),
        new_markdown_cell("""## A Space for the final model

First try the app here (it samples n answers, ranks them with the judge and answers with the best one; a
second tab compares iterations), then deploy it: one commit with the app, its config and the sppo_hub
source, plus the Space variables. `SPACE_DRY_RUN = True` only prints the plan."""),
        new_code_cell("""from sppo_hub.space import SpaceConfig, deploy_space, launch, plan_deploy

iteration_repos = [repo for t, repo in models if t > 0]
if TRY_DEMO:
    demo = launch(SpaceConfig(model=iteration_repos[-1], compare_models=iteration_repos[:-1],
                              judge_type=LOCAL_JUDGE_TYPE, judge=LOCAL_JUDGE_MODEL), prevent_thread_lock=True)
    print("app running at", demo.local_url)"""),
        new_code_cell("""plan = plan_deploy(model=iteration_repos[-1], space=SPACE_ID, judge=LOCAL_JUDGE_MODEL,
                   judge_type=LOCAL_JUDGE_TYPE, compare_models=iteration_repos[:-1], hardware=SPACE_HARDWARE,
                   endpoint=endpoint)
print(plan.describe())
if not SPACE_DRY_RUN:
    url, warnings = deploy_space(plan, endpoint=endpoint)
    print("Space:", url, *warnings, sep="\\n")"""),
    ])


BUILDERS = (quickstart, colab_gpu, evaluate_and_demo)


def build(out_dir: Path = HERE) -> list[Path]:
    """Write every notebook into `out_dir`; returns their paths."""
    paths = []
    for builder in BUILDERS:
        name, nb = builder()
        nbformat.validate(nb)
        path = Path(out_dir) / name
        tmp = path.with_suffix(".ipynb.tmp")
        tmp.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        tmp.replace(path)
        paths.append(path)
    return paths


def main(argv: list[str]) -> int:
    if "--check" in argv:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            stale = [p.name for p in build(Path(tmp))
                     if not (HERE / p.name).exists() or p.read_text() != (HERE / p.name).read_text()]
        if stale:
            print(f"out of date: {', '.join(stale)}; run python notebooks/build_notebooks.py", file=sys.stderr)
            return 1
        return 0
    for path in build():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
