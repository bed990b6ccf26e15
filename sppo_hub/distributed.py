"""Who does what when a run is launched on several processes (`torchrun`, `accelerate launch`).

The one rule every stage follows, applied in `run_stage`: the main process (RANK 0) runs a stage and
records it in the run manifest; every other process waits for that record by reading the manifest
file. Waiting on a file rather than a collective means an hours-long generation on the main process
cannot time out a process-group barrier. Training is the one stage every process takes part in (each
on its share of the batch); its record is still written by the main process alone.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .run_manifest import RunManifest, StageTimer

if TYPE_CHECKING:
    from .stages.context import RunContext


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


def wait_for(check: Callable[[], Any], poll: float = 1.0) -> Any:
    """Poll `check()` until it returns something other than None; return that."""
    while (value := check()) is None:
        time.sleep(poll)
    return value


def open_manifest(process: ProcessInfo, run_dir, open_on_main: Callable[[], RunManifest]) -> RunManifest:
    """The main process creates (or checks and resumes) the manifest; the others read it once it exists."""
    if process.is_main:
        return open_on_main()
    path = run_dir / "manifest.json"
    wait_for(lambda: True if path.exists() else None)
    return RunManifest.load(run_dir)


def run_stage(ctx: RunContext, iteration: int, name: str, fn: Callable[..., dict], *inputs,
              all_ranks: bool = False) -> dict:
    """Run `fn(ctx, iteration, timer, *inputs)` unless the manifest has it; record its artifacts and timings.

    Main process: run and record (or reuse the record of an earlier session). Other processes: wait for
    the main process's record; with `all_ranks` (training) first take part in `fn` themselves.
    """
    if not ctx.process.is_main:
        ctx.reload_manifest()
        if all_ranks and ctx.manifest.stage(iteration, name) is None:
            fn(ctx, iteration, StageTimer(), *inputs)

        def recorded():
            ctx.reload_manifest()
            return ctx.manifest.stage(iteration, name)

        return wait_for(recorded, poll=0.5 if all_ranks else 2.0)["artifacts"]
    label = (f"[bold]iteration {iteration}/{ctx.config.iterations}[/bold] {name}" if iteration
             else f"[bold]setup[/bold] {name}")
    done = ctx.manifest.stage(iteration, name)
    if done is not None:
        ctx.console.print(f"{label}: [dim]finished earlier, reused[/dim]")
        return done["artifacts"]
    ctx.console.print(f"{label} ...")
    timer = StageTimer()
    start = time.perf_counter()
    artifacts = fn(ctx, iteration, timer, *inputs)
    seconds = time.perf_counter() - start
    ctx.manifest.record(iteration, name, artifacts, seconds, timer.compute)
    ctx.console.print(f"{label}: [green]done[/green] in {seconds:.1f}s")
    return artifacts
