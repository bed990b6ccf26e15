"""What a person sees while a run works: libraries kept quiet, one progress display per stage, the closing
"what next" lines; and the torch thread policy that holds up on a shared CPU box.

`quiet_libraries()` runs before transformers / datasets / huggingface_hub / trl are imported (the CLI
calls it first) and again afterwards (it also flips the toggles of libraries already imported):
their logging drops to errors, their progress bars go off, and the warnings they raise at every load
(torch's pin_memory note, deprecations) are filtered. Our own stages keep one bar each: generation
(prompts), judging (pairs) and training (`TrainingProgress`, optimizer steps with the loss), so the
console shows one line per stage instead of a bar per library. `--verbose` keeps everything.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass

# Read by the libraries at import time: set before they are imported.
QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # also turns off transformers' bars (weight loading, shards)
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # Map, Filter, saving, parquet
    "TOKENIZERS_PARALLELISM": "false",
    "DISABLE_VERSION_CHECK": "1",
}
QUIET_LOGGERS = ("transformers", "datasets", "huggingface_hub", "trl", "peft", "accelerate", "torch", "httpx",
                 "httpcore", "urllib3", "filelock", "fsspec", "sppo_hub.hub.server")
QUIET_WARNING_MODULES = ("torch", "transformers", "trl", "peft", "datasets", "huggingface_hub", "accelerate",
                         "pyarrow", "multiprocess", "dill")
THREADS_ENV = "SPPO_HUB_THREADS"
_quiet = False


def is_quiet() -> bool:
    """Whether `quiet_libraries` ran in this process (stages then show their own single progress display)."""
    return _quiet


def quiet_libraries(verbose: bool = False) -> None:
    """Silence library logging, progress bars and load-time warnings (a no-op with `verbose`)."""
    global _quiet
    if verbose:
        return
    _quiet = True
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in QUIET_WARNING_MODULES:
        warnings.filterwarnings("ignore", module=rf"{module}(\.|$)")
    # Libraries imported before this call read their environment already: flip their switches too.
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


# ----------------------------------------------------------------------------- threads


def choose_threads(cpus: int, load: float) -> int:
    """Torch threads for a box with `cpus` cores of which `load` are busy: the cores others leave free.

    Why not all cores: torch's OpenMP threads wait for each other at every op; when another process
    holds a core, the waiting multiplies. Measured on a busy 2-core box, HF generate ran 5-6 tok/s with
    2 threads and 35-49 tok/s with 1. On an idle box every core is used.
    """
    free = cpus - max(float(load), 0.0)
    return max(1, min(int(cpus), math.floor(free + 0.5)))


def busy_cores(window: float = 0.25) -> float | None:
    """How many of this process's CPUs other processes keep busy right now: two /proc/stat readings `window`
    seconds apart, summed over the CPUs in our affinity set; None where /proc/stat cannot be read.

    Why not the 1-minute load average: it decays slowly, so on an idle box just after another job (or this
    project's previous command) it still reports a busy core. Measured: `make demo` on an idle 2-core box chose
    1 thread at load ~1 and took 426-437 s; sampling /proc/stat it chose 2 and took 270 s.
    """

    def read() -> dict[int, tuple[int, int]]:  # cpu -> (total ticks, idle + iowait ticks)
        ticks = {}
        for line in open("/proc/stat").read().splitlines():
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                values = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
                ticks[int(name[3:])] = (sum(values), values[3] + values[4])
        return ticks

    try:
        before = read()
        time.sleep(window)
        after = read()
    except (OSError, ValueError, IndexError):
        return None
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(after)
    busy = 0.0
    for cpu in cpus & set(before) & set(after):
        total = after[cpu][0] - before[cpu][0]
        if total > 0:
            busy += 1.0 - (after[cpu][1] - before[cpu][1]) / total
    return busy


def configure_threads(threads: int | None = None) -> int:
    """Set torch's thread count once per process: `threads`, else $SPPO_HUB_THREADS / $OMP_NUM_THREADS, else
    `choose_threads` from the cores and the cores busy now (`busy_cores`; the 1-minute load average where
    /proc/stat is missing). Returns the count chosen."""
    if threads is None:
        for key in (THREADS_ENV, "OMP_NUM_THREADS"):
            if os.environ.get(key, "").strip().isdigit() and int(os.environ[key]) > 0:
                threads = int(os.environ[key])
                break
    if threads is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        load = busy_cores()
        if load is None:
            try:
                load = os.getloadavg()[0]
            except OSError:  # no load average on this platform
                load = 0.0
        threads = choose_threads(cpus, load)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # child processes (vLLM workers) inherit it
    import torch

    torch.set_num_threads(int(threads))
    return int(threads)


# ----------------------------------------------------------------------------- training progress


def training_progress(desc: str = "train"):
    """A `TrainerCallback` showing one bar of optimizer steps with the last loss, in place of the Trainer's own
    bar and the raw log dicts it prints (`trainer.train_policy(..., progress=training_progress())`)."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class TrainingProgress(TrainerCallback):
        def __init__(self):
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = tqdm(total=state.max_steps, desc=desc, unit="step", leave=False, dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}")

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return TrainingProgress()


def short_name(model: str) -> str:
    """A model path or repo id as a progress label: repo ids stay, cache paths become the model's folder name."""
    text = str(model).rstrip("/")
    if "/snapshots/" in text:  # a Hub cache snapshot: .../models--org--name/snapshots/<sha>
        repo = text.split("/snapshots/")[0].rsplit("/", 1)[-1]
        return repo.removeprefix("models--").replace("--", "/")
    if text.startswith(("/", ".", "~")) or text.count("/") > 1:  # a local folder: its name (iter1/model: both)
        parent, name = os.path.split(text)
        return f"{os.path.basename(parent)}/{name}" if name == "model" and parent else name
    return text


# ----------------------------------------------------------------------------- what next


@dataclass
class NextSteps:
    """What the closing lines point to."""

    run_dir: str
    model_repo: str | None = None  # the last iteration's model repo
    data_repo: str | None = None  # the last iteration's dataset repo
    hub_url: str | None = None  # where the local Hub served during the run (with its port)
    hub_data_dir: str | None = None  # the local Hub's store
    judge_label: str | None = None  # e.g. "rule-based correctness judge"

    def lines(self) -> list[str]:
        out = ["[bold]What next[/bold]"]
        env = ""
        if self.hub_url and self.hub_data_dir:
            port = self.hub_url.rstrip("/").rsplit(":", 1)[-1]
            env = f"HF_ENDPOINT={self.hub_url} HF_HUB_DISABLE_XET=1 "
            out += ["  serve the local Hub again (same port, so the links above open):",
                    f"    sppo-hub hub serve --data-dir {self.hub_data_dir} --port {port}"]
        if self.model_repo:
            judged = f", best-of-n reranked by the {self.judge_label}" if self.judge_label else ""
            out += [f"  chat with the last iteration{judged} (with the Hub served, in another terminal):",
                    f"    {env}sppo-hub space run --model {self.model_repo}"]
        if self.data_repo:
            out += ["  load the last iteration's preference data:",
                    f"    {env}python -c \"from datasets import load_dataset; "
                    f"print(load_dataset('{self.data_repo}', 'pairs', split='train'))\""]
        out.append(f"  files: run folder {self.run_dir}/ (manifest.json, recipe.yaml, per-iteration data)"
                   + (f"; local Hub store {self.hub_data_dir}/" if self.hub_data_dir else ""))
        return out

    def print(self, console) -> None:
        for line in self.lines():
            console.print(line, soft_wrap=True, highlight=False)
