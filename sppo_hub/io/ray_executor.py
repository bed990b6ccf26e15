"""Generate and judge past one machine: the chunks of a stage as tasks on Ray actors that hold the model.

The unit of work is the chunk grid of `sppo_hub.io.sharding` (a chunk's seed is its first item id), so a chunk
gives the same rows on a Ray actor as in a local process, and the merged output equals the local path's.
Each actor builds its model once (a generator: transformers or vLLM; or a judge) from a picklable recipe
and then takes chunks; results come back through Ray's object store and the driver alone writes the chunk
files (atomically, as they arrive) into the stage's folder. So no shared file system is needed, a rerun
resumes from the chunks the driver wrote, and an actor killed mid-chunk is restarted by Ray and its chunk
retried (`max_retries`), the stage completing with the same result.

Where Ray runs: `ray.init(address=...)` joins an existing cluster (`RayOptions.address`, else the
`RAY_ADDRESS` variable); with neither, a local one is started with the resources given. Every node needs
sppo-hub installed (the same version) and the models reachable (the Hub, or the same local paths).

Written by hand on Ray's own actor API (ray.util.ActorPool): Ray Data's vLLM processor covers generation
only and brings its own batching and seeding, which would change the samples.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

INSTALL_HINT = "the Ray engine needs Ray: pip install 'sppo-hub[ray]' (ray>=2.60)"


@dataclass
class RayOptions:
    """Where and how wide the Ray stages run (recipe section `ray:`; CLI `--ray*` flags)."""

    enabled: bool = field(default=False, metadata={"help": "Run generate and judge on Ray actors."})
    address: str | None = field(
        default=None, metadata={"help": "Cluster address for ray.init (e.g. 'ray://head:10001' or 'auto'); "
                                        "default: RAY_ADDRESS, else a local cluster."})
    workers: int = field(default=2, metadata={"help": "Actors, each holding one copy of the model."})
    num_cpus: float = field(default=1.0, metadata={"help": "CPUs reserved per actor."})
    num_gpus: float = field(default=0.0, metadata={"help": "GPUs per actor (1 for a model per GPU)."})
    max_retries: int = field(default=3, metadata={"help": "Restarts of a dead actor, and retries of its chunk."})
    env: dict[str, str] = field(default_factory=dict, metadata={
        "help": "Environment variables for the actors (Ray's runtime_env env_vars), e.g. {HF_TOKEN: ...}."})

    def __post_init__(self):
        if int(self.workers) < 1:
            raise ValueError(f"ray.workers={self.workers}: need at least 1 actor, e.g. ray.workers: 2")
        if float(self.num_cpus) < 0 or float(self.num_gpus) < 0:
            raise ValueError(f"ray.num_cpus / ray.num_gpus must be >= 0, got {self.num_cpus} / {self.num_gpus}")
        if self.enabled:
            import importlib.util

            if importlib.util.find_spec("ray") is None:  # before any compute, not when the stage reaches Ray
                raise ValueError(f"ray.enabled: {INSTALL_HINT}, or set ray.enabled: false")
        if not isinstance(self.env, dict):
            raise ValueError(f"ray.env={self.env!r}: must be a mapping of variable names to values")
        if int(self.max_retries) < 0:
            raise ValueError(f"ray.max_retries={self.max_retries}: must be >= 0 (0: a dead actor fails the stage)")


def import_ray():
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} (import failed: {err})") from None
    return ray


def connect(options: RayOptions) -> Any:
    """`ray.init` once per process: the given address, RAY_ADDRESS, or a local cluster; Ray's logs kept quiet."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
    if address is None:  # a local cluster sized for the actors asked for
        kwargs["num_cpus"] = max(1, int(round(options.workers * max(options.num_cpus, 1))))
        if options.num_gpus:
            kwargs["num_gpus"] = int(round(options.workers * options.num_gpus))
    ray.init(address=address, **kwargs)
    return ray


def returning(value: Any) -> Callable[[], Any]:
    """A picklable zero-argument function that returns `value` (the `build` of an already built processor)."""
    from functools import partial

    return partial(_identity, value)


def _identity(value: Any) -> Any:
    return value


class ChunkWorker:
    """A Ray actor: builds `process` (from a picklable zero-argument `build`) on first use and runs chunks."""

    def __init__(self, build: Callable[[], Callable[[list[int], list[Any]], list[dict]]]):
        self.build, self.process = build, None

    def describe(self) -> dict:
        self._ensure()
        return dict(getattr(self.process, "description", {}))

    def run(self, ids: list[int], items: list[Any]) -> tuple[list[int], list[dict]]:
        self._ensure()
        return ids, self.process(ids, items)

    def _ensure(self) -> None:
        if self.process is None:
            self.process = self.build()


class RayChunkExecutor:
    """Runs chunks on `options.workers` actors; `map` yields (ids, rows) in completion order."""

    def __init__(self, options: RayOptions, build: Callable[[], Any]):
        ray = connect(options)
        from ray.util import ActorPool

        actor = ray.remote(max_restarts=int(options.max_retries), max_task_retries=int(options.max_retries))(ChunkWorker)
        extra = {"runtime_env": {"env_vars": {str(k): str(v) for k, v in options.env.items()}}} if options.env else {}
        self.actors = [actor.options(num_cpus=options.num_cpus, num_gpus=options.num_gpus, **extra).remote(build)
                       for _ in range(int(options.workers))]
        self.pool, self.ray = ActorPool(self.actors), ray

    def describe(self) -> dict:
        """What the built processor says of itself (e.g. a judge's name and output kind), asked of one actor."""
        return self.ray.get(self.actors[0].describe.remote())

    def map(self, jobs: list[tuple[list[int], list[Any]]]) -> Iterator[tuple[list[int], list[dict]]]:
        yield from self.pool.map_unordered(lambda a, job: a.run.remote(*job), jobs)

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
