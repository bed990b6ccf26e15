"""A flaky Hub: huggingface_hub -> fault proxy (sppo_hub.testing.faulty_hub) -> the local Hub.

Every test prints the faults it injected. Each artifact must end published exactly once: one commit with its
message, its tag on that commit, the run's collection holding it; by retries alone, or after one clear error
by `--resume`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sppo_hub.hub.publish import HubPublisher
from sppo_hub.hub.retry import HubRetry, RetryPolicy
from sppo_hub.testing.faulty_hub import Fault, FaultyHubProxy

from test_publish import _data_card, _iteration_datasets, _model_card

LFS_PUT, COMMIT = "/lfs-upload/", r"/commit/main"


def _assert_once(api, repo_id: str, repo_type: str, message: str, tag: str) -> str:
    commits = api.list_repo_commits(repo_id, repo_type=repo_type)
    ours = [c for c in commits if c.title == message]
    assert len(ours) == 1, [c.title for c in commits]
    tags = {t.name: t.target_commit for t in api.list_repo_refs(repo_id, repo_type=repo_type).tags}
    assert tags.get(tag) == ours[0].commit_id, (tags, ours[0].commit_id)
    return ours[0].commit_id


def unique_checkpoint(model_dir: Path, tmp: Path) -> Path:
    """The tiny checkpoint plus a file of random bytes: new LFS content, so its upload really happens (the
    local Hub stores LFS objects by content and skips uploads it already holds)."""
    folder = tmp / "checkpoint"
    shutil.copytree(model_dir, folder)
    (folder / "extra_weights.bin").write_bytes(os.urandom(200_000))
    return folder


def _publish_through(proxy, run: str, lines: list[str], model_dir, max_wait_s: float = 120.0):
    """Iteration 1's data and checkpoint (its weights go through the LFS upload) and the collection."""
    from sppo_hub.hub.endpoint import use_endpoint

    table, pairs, triplets = _iteration_datasets(seed=int.from_bytes(os.urandom(4), "little"))
    with use_endpoint(proxy.url):
        pub = HubPublisher("sppo-user", run, endpoint=proxy.url,
                           retry=HubRetry(RetryPolicy(max_total_wait_s=max_wait_s), on_wait=lines.append))
        refs = [pub.publish_iteration_data(1, table, pairs, triplets, _data_card(1)),
                pub.publish_checkpoint(1, model_dir, _model_card(1))]
        pub.add_to_collection(*refs)
    return pub, refs


def _assert_published_once(local_hub, pub, refs) -> None:
    for ref, message in zip(refs, ("SPPO iteration 1: preference data", "SPPO iteration 1: checkpoint")):
        assert ref.commit_sha == _assert_once(local_hub.api, ref.repo_id, ref.repo_type, message, "iter-1")
    items = local_hub.api.get_collection(pub.collection().slug).items
    assert [i.item_id for i in items] == [r.repo_id for r in refs]


FAULTS = {  # fresh Fault objects per test (they count what they see)
    "429": lambda: [Fault("429", retry_after=1, every=4, limit=6)],
    "5xx-bursts": lambda: [Fault("503", "POST", COMMIT, times=3), Fault("502", "GET", times=2, skip=1),
                           Fault("500", "PUT", LFS_PUT)],
    "reset-lfs-upload": lambda: [Fault("reset_upload", "PUT", LFS_PUT)],
    "commit-reply-lost": lambda: [Fault("drop_reply", "POST", COMMIT, skip=1)],  # the checkpoint's commit
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_publisher_rides_out_each_fault(local_hub, tiny_model_dir, tmp_path, name):
    lines: list[str] = []
    faults = FAULTS[name]()
    with FaultyHubProxy(local_hub.url, faults) as proxy:
        pub, refs = _publish_through(proxy, f"flaky-{name}", lines, unique_checkpoint(tiny_model_dir, tmp_path))
    print(f"\n[{name}] injected: {proxy.summary()}\n  " + "\n  ".join(lines))
    assert all(f.injected >= 1 for f in faults), proxy.summary()
    _assert_published_once(local_hub, pub, refs)
    # one line per wait (a failed HEAD of a file already cached at that commit is answered from the cache: no wait)
    assert lines and all(line.startswith("Hub: ") for line in lines)


def test_publisher_waits_out_a_30s_outage(local_hub, tiny_model_dir, tmp_path):
    """The proxy goes down for 30 s at the checkpoint's commit (connections refused): the backoff (1, 2, 4, 8,
    16 s) outlasts it within the bounded wait and the commit lands once."""
    lines: list[str] = []
    faults = [Fault("down", "POST", COMMIT, skip=1, down_s=30.0)]
    with FaultyHubProxy(local_hub.url, faults) as proxy:
        pub, refs = _publish_through(proxy, "flaky-outage", lines, unique_checkpoint(tiny_model_dir, tmp_path))
    print(f"\n[outage 30 s] injected: {proxy.summary()}\n  " + "\n  ".join(lines))
    assert proxy.counts["down"] == 1 and len(lines) >= 4
    _assert_published_once(local_hub, pub, refs)


def _run_recipe(tmp_path: Path, model_dir: Path, name: str, endpoint: str, **publish) -> Path:
    import yaml

    from test_run import _recipe

    path = _recipe(tmp_path, model_dir, name, endpoint)
    recipe = yaml.safe_load(path.read_text())
    recipe["publish"].update(publish)
    path.write_text(yaml.safe_dump(recipe))
    return path


def _assert_run_published_once(local_hub, name: str, iterations: int = 2) -> None:
    api, repos = local_hub.api, []
    for t in range(1, iterations + 1):
        repos += [(f"sppo-user/{name}-iter{t}-data", "dataset", f"SPPO iteration {t}: preference data"),
                  (f"sppo-user/{name}-iter{t}", "model", f"SPPO iteration {t}: checkpoint")]
    for repo_id, repo_type, message in repos:
        _assert_once(api, repo_id, repo_type, message, f"iter-{repo_id.split('-iter')[1].split('-')[0]}")
    finals = [c for c in api.list_repo_commits(f"sppo-user/{name}-iter{iterations}")
              if c.title == f"SPPO run {name}: final run manifest"]
    assert len(finals) <= 1
    pub = HubPublisher("sppo-user", name, endpoint=local_hub.url)
    assert sorted(i.item_id for i in api.get_collection(pub.collection().slug).items) == sorted(r for r, _, _ in repos)


@pytest.mark.slow
def test_a_two_iteration_run_through_a_flaky_hub_publishes_everything_once(local_hub, tiny_model_dir, tmp_path):
    """What a new user met: ~1 request in 7 answered 429 (Retry-After: 1), 1 in 11 answered 503, one LFS upload
    cut mid-way, one applied commit whose reply is lost. The run finishes by itself."""
    from io import StringIO

    from rich.console import Console

    from sppo_hub.loop.recipe import load_recipe
    from sppo_hub.loop.run import run_from_config

    faults = [Fault("drop_reply", "POST", COMMIT, skip=2), Fault("reset_upload", "PUT", LFS_PUT, skip=1),
              Fault("429", retry_after=1, every=7), Fault("503", every=11)]
    out = StringIO()
    with FaultyHubProxy(local_hub.url, faults) as proxy:
        config = load_recipe(_run_recipe(tmp_path, tiny_model_dir, "flaky-run", proxy.url))
        run_from_config(config, console=Console(file=out, width=200))
    waits = [line.strip() for line in out.getvalue().splitlines() if line.strip().startswith("Hub: ")]
    print(f"\n[2-iteration run] injected: {proxy.summary()}\n  " + "\n  ".join(waits))
    assert all(f.injected >= 1 for f in faults), proxy.summary()
    assert waits
    _assert_run_published_once(local_hub, "flaky-run")


@pytest.mark.slow
def test_an_outage_past_the_retry_budget_ends_in_one_clear_error_then_resume_completes(local_hub, tiny_model_dir,
                                                                                       tmp_path):
    """publish.retry_max_wait_s=2 and the Hub down for 8 s at iteration 2's data commit: the run stops with one
    line naming what failed and --resume; once the Hub is back, --resume publishes the rest, each once."""
    from sppo_hub.commands.errors import describe
    from sppo_hub.hub.retry import HubUnavailableError
    from sppo_hub.loop.recipe import load_recipe
    from sppo_hub.loop.run import run_from_config

    faults = [Fault("down", "POST", COMMIT, skip=2, down_s=8.0)]
    with FaultyHubProxy(local_hub.url, faults) as proxy:
        config = load_recipe(_run_recipe(tmp_path, tiny_model_dir, "flaky-stop", proxy.url, retry_max_wait_s=2.0))
        with pytest.raises(HubUnavailableError) as info:
            run_from_config(config)
        code, message = describe(info.value)
        print(f"\n[outage 8 s, budget 2 s] injected: {proxy.summary()}\n  error: {message}")
        assert code == 1 and "\n" not in message and "--resume" in message and "create_commit" in message
        import time

        time.sleep(8.5)  # the Hub is back
        run_from_config(load_recipe(_run_recipe(tmp_path, tiny_model_dir, "flaky-stop", proxy.url)), resume=True)
    assert proxy.counts["down"] == 1
    _assert_run_published_once(local_hub, "flaky-stop")
