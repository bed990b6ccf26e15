"""sppo_hub.loop.ranks in one process: who runs a stage, who waits for its record, what a launch may not do.
(The multi-process runs themselves are in test_distributed.py.)"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from sppo_hub.loop.ranks import ProcessInfo, process_info, share_from_main
from sppo_hub.loop.stages.context import run_stage
from sppo_hub.loop.manifest import RunManifest


class _Console:
    def __init__(self):
        self.lines = []

    def print(self, text, **_):
        self.lines.append(str(text))


def _ctx(run_dir: Path, rank: int):
    """What run_stage reads from a RunContext: the process, the manifest (and how to reload it), the console."""
    manifest = RunManifest.create(run_dir, "units", {}) if rank == 0 else RunManifest.load(run_dir)
    ctx = SimpleNamespace(process=ProcessInfo(rank=rank, world_size=2), manifest=manifest, console=_Console(),
                          config=SimpleNamespace(iterations=1))
    ctx.reload_manifest = lambda: setattr(ctx, "manifest", RunManifest.load(run_dir))
    return ctx


def test_process_info_reads_the_launcher_variables(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = process_info()
    assert (info.rank, info.world_size, info.local_rank, info.is_main) == (1, 2, 1, False)
    assert share_from_main(ProcessInfo(), {"a": 1}) == {"a": 1}  # one process: no collective


def test_main_runs_and_records_a_stage_once(tmp_path):
    main = _ctx(tmp_path, 0)
    calls = []

    def stage(ctx, t, timer, x):
        calls.append(x)
        with timer.computing():
            time.sleep(0.01)
        return {"x": x}

    assert run_stage(main, 1, "generate", stage, 7) == {"x": 7}
    assert run_stage(main, 1, "generate", stage, 8) == {"x": 7}  # recorded: reused, not run again
    assert calls == [7]
    record = RunManifest.load(tmp_path).stage(1, "generate")
    assert record["artifacts"] == {"x": 7} and record["compute_seconds"] > 0


def test_other_processes_wait_for_the_main_record_and_take_part_only_in_training(tmp_path):
    main = _ctx(tmp_path, 0)
    follower = _ctx(tmp_path, 1)
    ran = []

    def stage(ctx, t, timer):
        ran.append(ctx.process.rank)
        return {"by": ctx.process.rank}

    def main_later(name):
        time.sleep(0.5)
        run_stage(main, 1, name, stage)

    for name, all_ranks in (("generate", False), ("train", True)):
        ran.clear()
        thread = threading.Thread(target=main_later, args=(name,))
        thread.start()
        got = run_stage(follower, 1, name, stage, all_ranks=all_ranks)
        thread.join()
        assert got == {"by": 0}  # the main process's record, whoever ran
        assert sorted(ran) == ([0, 1] if all_ranks else [0])
    assert follower.console.lines == []  # only the main process reports stages


def test_accelerate_cpu_flag_with_several_processes_is_refused_before_any_work():
    # accelerate's simple launcher starts ONE process for `--cpu --num_processes 2`; the parent's command line says so.
    code = "from sppo_hub.loop.ranks import check_launch, process_info; check_launch(process_info())"

    def launch(*args, **env):  # bash stays the parent (`; exit`: no exec), its argv plays accelerate's
        return subprocess.run(["bash", "-c", f'"{sys.executable}" -c "{code}"; exit $?', "accelerate", *args],
                              capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **env})

    refused = launch("--cpu", "--num_processes", "2", ACCELERATE_USE_CPU="True")
    assert refused.returncode != 0 and "starts one process, not 2" in refused.stderr
    assert launch("--cpu", "--num_processes=1", ACCELERATE_USE_CPU="True").returncode == 0
    assert launch("--num_processes", "2", ACCELERATE_USE_CPU="True", WORLD_SIZE="2").returncode == 0  # torchrun-style
    assert launch("--num_processes", "2").returncode == 0  # not an accelerate --cpu launch


def test_last_batch_follows_the_trainer_and_accelerate_rules():
    from sppo_hub.train.shares import describe_last_batch, last_batch

    assert last_batch(8, 4, 2, drop_last=False, processes=2)["handling"] == "none"
    assert describe_last_batch(last_batch(8, 4, 2, drop_last=False, processes=2), 1) is None
    short = last_batch(7, 4, 2, drop_last=False, processes=1)
    assert (short["handling"], short["remainder"], short["repeated_per_epoch"]) == ("short", 3, 0)
    assert describe_last_batch(short, 1) is None  # one process: what the Trainer always did, nothing to flag
    repeated = last_batch(5, 4, 1, drop_last=False, processes=2)  # the case: 5 pairs, global batch 4
    assert (repeated["handling"], repeated["repeated_per_epoch"]) == ("repeated", 3)
    assert "repeats 3 pair(s)" in describe_last_batch(repeated, 2)
    dropped = last_batch(5, 4, 1, drop_last=True, processes=2)
    assert (dropped["handling"], dropped["dropped_per_epoch"]) == ("dropped", 1)
    assert "1 of 5 pairs" in describe_last_batch(dropped, 1)


def test_fsdp_on_cpu_is_named_a_ddp_fallback(monkeypatch):
    from sppo_hub.train.shares import fsdp_falls_back_to_ddp

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert fsdp_falls_back_to_ddp(cpu_training=True)
    assert not fsdp_falls_back_to_ddp(cpu_training=False)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    assert not fsdp_falls_back_to_ddp(cpu_training=True)


def test_rank_shard_gives_each_rank_or_tensor_parallel_group_one_shard():
    from sppo_hub.loop.ranks import ProcessInfo, rank_shard

    assert [str(rank_shard(ProcessInfo(r, 4))) for r in range(4)] == ["0/4", "1/4", "2/4", "3/4"]
    assert [str(rank_shard(ProcessInfo(r, 4), 2)) for r in range(4)] == ["0/2", "0/2", "1/2", "1/2"]
    with pytest.raises(ValueError, match="tensor_parallel_size=3 must divide the launch's 4 processes"):
        rank_shard(ProcessInfo(0, 4), 3)


def test_stage_split_says_who_works_merges_and_records():
    from sppo_hub.loop.ranks import ProcessInfo, stage_split

    alone = stage_split(ProcessInfo(0, 1))
    assert (alone.works, str(alone.shard), alone.merges, alone.records) == (True, "0/1", False, True)
    main, other = stage_split(ProcessInfo(0, 2)), stage_split(ProcessInfo(1, 2))
    assert (main.works, str(main.shard), main.merges, main.records) == (True, "0/2", True, True)
    assert (other.works, str(other.shard), other.merges, other.records) == (True, "1/2", False, False)
    on_ray = [stage_split(ProcessInfo(r, 2), on_ray=True) for r in (0, 1)]
    assert [(s.works, s.shard, s.merges, s.records) for s in on_ray] == [(True, None, False, True),
                                                                        (False, None, False, False)]
