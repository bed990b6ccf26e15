"""The local Hub after kill -9: stale git lock files are recovered (at start-up and at run time),
one data dir has one server, and 40 kills under 8 concurrent writers lose no acknowledged commit."""

from __future__ import annotations

import base64
import http.client
import json
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dulwich.objects import Blob
from dulwich.repo import Repo
from huggingface_hub import HfApi, hf_hub_download

from sppo_hub.hub.endpoint import use_endpoint
from sppo_hub.hub.server import start_local_hub

TOKEN = "hf_crash_test_token_0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _commit(port: int, repo: str, path: str, content: bytes, timeout: float = 10) -> tuple[int, dict]:
    body = (json.dumps({"key": "header", "value": {"summary": f"add {path}"}}) + "\n"
            + json.dumps({"key": "file", "value": {"path": path, "encoding": "base64",
                                                   "content": base64.b64encode(content).decode()}}) + "\n").encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", f"/api/models/{repo}/commit/main", body=body,
                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _fsck(git_dir: Path) -> list[str]:
    """Problems `git fsck --full` reports (dangling objects of killed commits are fine); dulwich's
    object check where the git binary is missing."""
    if shutil.which("git"):
        out = subprocess.run(["git", "--git-dir", str(git_dir), "fsck", "--full", "--no-dangling"],
                             capture_output=True, text=True, timeout=60)
        lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()
                 and not line.startswith(("Checking", "notice"))]
        return lines + ([f"git fsck exit {out.returncode}"] if out.returncode else [])
    from dulwich import porcelain

    return [f"{sha!r}: {err}" for sha, err in porcelain.fsck(str(git_dir))]


def test_stale_locks_are_recovered_at_start_up_and_at_run_time(tmp_path):
    data, port = tmp_path / "hub", _free_port()
    with use_endpoint(f"http://127.0.0.1:{port}", token=TOKEN):
        _recover_locks(tmp_path, data, port)
    assert _fsck(data / "models" / "sppo-user" / "locked.git") == []


def _recover_locks(tmp_path: Path, data: Path, port: int) -> None:
    hub = start_local_hub(data, port=port, token=TOKEN)
    api = hub.api
    api.create_repo("sppo-user/locked")
    api.upload_file(path_or_fileobj=b"v1", path_in_repo="a.txt", repo_id="sppo-user/locked")
    hub.stop()
    # What a kill -9 between "write NAME.lock" and "rename it over NAME" leaves behind
    git_dir = data / "models" / "sppo-user" / "locked.git"
    blob = Blob.from_string(b"v2")
    object_lock = git_dir / "objects" / blob.id.decode()[:2] / (blob.id.decode()[2:] + ".lock")
    object_lock.parent.mkdir(exist_ok=True)
    planted = [git_dir / "refs" / "heads" / "main.lock", git_dir / "packed-refs.lock", object_lock]
    for path in planted:
        path.write_bytes(b"half written")
    hub = start_local_hub(data, port=port, token=TOKEN)
    try:
        assert sorted(hub.server.storage.recovered) == sorted(planted)
        hub.api.upload_file(path_or_fileobj=b"v2", path_in_repo="a.txt", repo_id="sppo-user/locked")
        assert Path(hf_hub_download("sppo-user/locked", "a.txt", cache_dir=tmp_path / "c1")).read_bytes() == b"v2"
        # At run time: a lock made by a process that is gone (older than the server) is removed ...
        lock = git_dir / "refs" / "heads" / "main.lock"
        lock.write_bytes(b"x")
        os.utime(lock, (time.time() - 3600, time.time() - 3600))
        assert _commit(port, "sppo-user/locked", "b.txt", b"b")[0] == 200 and not lock.exists()
        # ... a fresh one (an outside git at work) answers 503 "retry", never a 500 with a path
        lock.write_bytes(b"x")
        status, body = _commit(port, "sppo-user/locked", "c.txt", b"c")
        assert status == 503 and "retry" in body["error"] and str(tmp_path) not in json.dumps(body)
        lock.unlink()
        assert _commit(port, "sppo-user/locked", "c.txt", b"c")[0] == 200
        # one data dir, one server: a second process is refused with the owner's pid
        out = subprocess.run([sys.executable, "-m", "sppo_hub", "hub", "serve", "--data-dir", str(data),
                              "--port", "0"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and f"served by another local Hub (pid {os.getpid()})" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        hub.stop()


def _serve(data_dir: str, port: int) -> None:  # the server process (forked from a preloaded forkserver)
    from sppo_hub.hub.server import serve

    serve(data_dir, port=port, token=TOKEN, user="sppo-user")


def _wait_up(port: int, proc, deadline_s: float = 20) -> None:
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert proc.is_alive(), "the local Hub process died at start-up"
            time.sleep(0.01)
    raise RuntimeError("local Hub did not start")


@pytest.mark.slow
def test_forty_kill9_under_eight_writers_lose_no_acknowledged_commit(tmp_path):
    """8 threads commit to 4 repos while the server is killed with SIGKILL 40 times at random moments
    and restarted. Afterwards every repo takes commits, every acknowledged commit and file is there,
    and `git fsck --full` is clean. No request may answer 500 (a stale lock used to cause them)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["sppo_hub.hub.server", "dulwich.repo"])  # restarts in milliseconds
    data, port = tmp_path / "hub", _free_port()
    with use_endpoint(f"http://127.0.0.1:{port}", token=TOKEN):
        _kill_experiment(ctx, tmp_path, data, port)


def _kill_experiment(ctx, tmp_path: Path, data: Path, port: int) -> None:
    repos = [f"sppo-user/crash{n}" for n in range(4)]
    proc = ctx.Process(target=_serve, args=(str(data), port), daemon=True)
    proc.start()
    _wait_up(port, proc)
    api = HfApi(endpoint=f"http://127.0.0.1:{port}", token=TOKEN)
    for repo in repos:
        api.create_repo(repo)
    acked: list[tuple[str, str, str, bytes]] = []  # (repo, commit id, path, content)
    server_errors: list[tuple[int, dict]] = []
    stop = threading.Event()

    def writer(w: int) -> None:
        repo, n = repos[w % len(repos)], 0
        while not stop.is_set():
            n += 1
            path, content = f"w{w}/f{n}.txt", f"writer {w} file {n}".encode()
            try:
                status, body = _commit(port, repo, path, content, timeout=5)
            except (OSError, http.client.HTTPException):
                time.sleep(0.02)  # the server is down: retry with the next file
                continue
            if status == 200:
                acked.append((repo, body["commitOid"], path, content))
            elif status >= 500 and status != 503:
                server_errors.append((status, body))

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(8)]
    for t in threads:
        t.start()
    rng = random.Random(0)
    stale_locks_seen = 0
    try:
        for _kill in range(40):
            time.sleep(rng.uniform(0.05, 0.35))
            proc.kill()
            proc.join(10)
            stale_locks_seen += sum(1 for _ in data.glob("models/*/*.git/**/*.lock"))
            proc = ctx.Process(target=_serve, args=(str(data), port), daemon=True)
            proc.start()
            _wait_up(port, proc)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    try:
        assert server_errors == []
        assert len(acked) > 40, "the writers barely committed: the experiment did not run under load"
        for repo in repos:
            mine = [a for a in acked if a[0] == repo]
            assert {a[1] for a in mine} <= {c.commit_id for c in api.list_repo_commits(repo)}
            assert {a[2] for a in mine} <= set(api.list_repo_files(repo))
            api.upload_file(path_or_fileobj=b"after", path_in_repo="after.txt", repo_id=repo)  # usable
            git = Repo(str(data / "models" / repo.split("/")[0] / (repo.split("/")[1] + ".git")))
            tree = git[git.refs[b"refs/heads/main"]].tree
            for _repo, _sha, path, content in mine:  # every acknowledged file, byte for byte
                _mode, blob_id = git[tree].lookup_path(git.object_store.__getitem__, path.encode())
                assert git[blob_id].as_raw_string() == content
        _repo, _sha, path, content = acked[-1]
        assert Path(hf_hub_download(_repo, path, cache_dir=tmp_path / "c")).read_bytes() == content
    finally:
        proc.kill()
        proc.join(10)
    for repo in repos:
        assert _fsck(data / "models" / repo.split("/")[0] / (repo.split("/")[1] + ".git")) == []
    print(f"40 kills: {len(acked)} acknowledged commits, {stale_locks_seen} stale lock file(s) left by kills "
          "and recovered")
