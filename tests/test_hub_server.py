"""The local Hub against the unmodified huggingface_hub client: repos, commits (inline + LFS),
downloads, refs, auth, concurrency, and a server killed mid-commit."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, HfFileSystem, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError

from sppo_hub.hub.endpoint import use_endpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_repo_lifecycle_inline_and_lfs(local_hub, tmp_path):
    api = local_hub.api
    repo = "sppo-user/lifecycle"
    url = api.create_repo(repo)
    assert url == f"{local_hub.url}/{repo}"
    assert api.create_repo(repo, exist_ok=True) == url
    folder = tmp_path / "up"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("hello")
    big = os.urandom(10 * 1024 * 1024 + 17)  # above the Hub's 10 MB limit: LFS basic transfer
    (folder / "sub" / "weights.bin").write_bytes(big)
    info = api.upload_folder(repo_id=repo, folder_path=folder, commit_message="add files")
    assert api.list_repo_files(repo) == [".gitattributes", "a.txt", "sub/weights.bin"]
    lfs_file = next(f for f in api.list_repo_tree(repo, recursive=True) if f.path == "sub/weights.bin")
    assert lfs_file.lfs.sha256 == hashlib.sha256(big).hexdigest() and lfs_file.size == len(big)
    assert Path(hf_hub_download(repo, "sub/weights.bin")).read_bytes() == big
    assert Path(hf_hub_download(repo, "a.txt", revision=info.oid)).read_text() == "hello"
    # Range reads (what datasets / HfFileSystem do)
    with HfFileSystem(endpoint=local_hub.url, token=local_hub.token).open(f"{repo}/sub/weights.bin", "rb") as f:
        f.seek(1000)
        assert f.read(64) == big[1000:1064]
    snap = Path(snapshot_download(repo, revision=info.oid))
    assert (snap / "a.txt").read_text() == "hello" and (snap / "sub" / "weights.bin").stat().st_size == len(big)
    paths = {p.path: p for p in api.get_paths_info(repo, ["a.txt", "sub", "missing.txt"])}
    assert set(paths) == {"a.txt", "sub"} and paths["a.txt"].size == 5
    # re-uploading unchanged files makes no commit
    assert api.upload_folder(repo_id=repo, folder_path=folder).oid == info.oid
    # branches, tags, history
    api.create_branch(repo, branch="dev")
    api.create_tag(repo, tag="v1", revision=info.oid)
    api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id=repo, revision="dev")
    refs = api.list_repo_refs(repo)
    assert {b.name for b in refs.branches} == {"main", "dev"} and refs.tags[0].target_commit == info.oid
    assert [c.title for c in api.list_repo_commits(repo, revision="dev")][:2] == ["Upload dev.txt with huggingface_hub",
                                                                               "add files"]
    assert "dev.txt" not in api.list_repo_files(repo)
    api.delete_tag(repo, tag="v1")
    api.delete_branch(repo, branch="dev")
    assert api.list_repo_refs(repo).tags == []
    api.delete_file("a.txt", repo_id=repo)
    assert not api.file_exists(repo, "a.txt") and api.file_exists(repo, "sub/weights.bin")
    assert api.model_info(repo).sha == api.list_repo_commits(repo)[0].commit_id
    api.delete_repo(repo)
    assert not api.repo_exists(repo)


def test_dataset_and_space_repos_variables_and_collections(local_hub):
    api = local_hub.api
    api.create_repo("sppo-org/ds", repo_type="dataset", private=True)
    assert api.dataset_info("sppo-org/ds").private is True
    assert not HfApi(endpoint=local_hub.url, token=False).repo_exists("sppo-org/ds", repo_type="dataset")
    api.create_repo("sppo-user/app", repo_type="space", space_sdk="gradio")
    api.add_space_variable("sppo-user/app", "MODEL_REPO", "sppo-user/m")
    api.add_space_secret("sppo-user/app", "HF_TOKEN", "hf_secret_value_123")
    assert api.get_space_variables("sppo-user/app")["MODEL_REPO"].value == "sppo-user/m"
    assert set(api.get_space_secrets("sppo-user/app")) == {"HF_TOKEN"}
    stored = b"".join(p.read_bytes() for p in Path(local_hub.data_dir).rglob("*") if p.is_file())
    assert b"hf_secret_value_123" not in stored  # secret values never reach the disk
    coll = api.create_collection("my run", namespace="sppo-org")
    api.add_collection_item(coll.slug, "sppo-org/ds", "dataset", note="first")
    api.add_collection_item(coll.slug, "sppo-user/app", "space")
    got = api.get_collection(coll.slug)
    assert [(i.item_id, i.position, i.note) for i in got.items] == [("sppo-org/ds", 0, "first"), ("sppo-user/app", 1, None)]
    assert api.create_collection("my run", namespace="sppo-org", exists_ok=True).slug == coll.slug
    assert coll.slug in [c.slug for c in api.list_collections(owner="sppo-org")]


def test_auth_errors_and_invalid_ids(local_hub):
    anonymous = HfApi(endpoint=local_hub.url, token=False)
    with pytest.raises(HfHubHTTPError) as err:
        anonymous.create_repo("sppo-user/nope")
    assert err.value.response.status_code == 401
    wrong = HfApi(endpoint=local_hub.url, token="hf_wrong")
    with pytest.raises(HfHubHTTPError) as err:
        wrong.whoami()
    assert err.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as err:
        local_hub.api.create_repo("someone-else/model")
    assert err.value.response.status_code == 403 and "namespace" in str(err.value)
    local_hub.api.create_repo("sppo-user/guarded")
    with pytest.raises(HfHubHTTPError) as err:
        anonymous.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="sppo-user/guarded")
    assert err.value.response.status_code == 401
    # the server validates ids itself (not only the client): raw request with a bad name
    host, port = local_hub.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    conn.request("POST", "/api/repos/create", body=json.dumps({"name": "bad--name", "organization": "sppo-user"}),
                 headers={"Authorization": f"Bearer {local_hub.token}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    body = resp.read().decode()
    assert resp.status == 400 and "Invalid repo id" in body and local_hub.token not in body


def test_parent_commit_and_concurrent_commits(local_hub):
    api = local_hub.api
    repo = "sppo-user/concurrent"
    api.create_repo(repo)
    head = api.model_info(repo).sha
    api.upload_file(path_or_fileobj=b"1", path_in_repo="one.txt", repo_id=repo)
    with pytest.raises(HfHubHTTPError) as err:  # stale parent: refused, nothing written
        api.create_commit(repo, [CommitOperationAdd("two.txt", b"2")], commit_message="stale", parent_commit=head)
    assert err.value.response.status_code == 412
    assert "two.txt" not in api.list_repo_files(repo)
    errors = []

    def commit(i: int) -> None:
        try:
            api.create_commit(repo, [CommitOperationAdd(f"f{i}.txt", str(i).encode())], commit_message=f"c{i}")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {f"f{i}.txt" for i in range(6)} <= set(api.list_repo_files(repo))
    assert len(api.list_repo_commits(repo)) == 2 + 6  # initial + one.txt + six serialised commits


def _start_server(data_dir: Path, port: int, token: str, log, max_file_bytes: int | None = None) -> subprocess.Popen:
    env = dict(os.environ, SPPO_HUB_TOKEN=token)

    def limit_file_size() -> None:  # a "full disk": writes past the limit fail with EFBIG
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    proc = subprocess.Popen([sys.executable, "-m", "sppo_hub", "hub", "serve", "--data-dir", str(data_dir),
                             "--port", str(port), "--user", "sppo-user"], env=env, stdout=log, stderr=log,
                            preexec_fn=limit_file_size if max_file_bytes else None)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("local Hub subprocess did not start")


def test_server_killed_mid_commit_leaves_repo_unchanged(tmp_path):
    token = "hf_kill_test_token_0123456789"
    data_dir, port, log_path = tmp_path / "hub", _free_port(), tmp_path / "server.log"
    api = HfApi(endpoint=f"http://127.0.0.1:{port}", token=token)
    with use_endpoint(api.endpoint), open(log_path, "wb") as log:
        proc = _start_server(data_dir, port, token, log)
        try:
            api.create_repo("sppo-user/atomic")
            api.upload_file(path_or_fileobj=b"v1", path_in_repo="weights.txt", repo_id="sppo-user/atomic")
            before = (api.model_info("sppo-user/atomic").sha, api.list_repo_files("sppo-user/atomic"))
            # an ndjson commit whose body is only half sent, and an LFS upload cut short
            conn = http.client.HTTPConnection("127.0.0.1", port)
            line = json.dumps({"key": "header", "value": {"summary": "half"}}) + "\n"
            body = (line + json.dumps({"key": "file", "value": {"path": "weights.txt", "encoding": "base64",
                                                                "content": "djI=" * 50_000}}) + "\n").encode()
            conn.putrequest("POST", "/api/models/sppo-user/atomic/commit/main")
            for k, v in {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson",
                         "Content-Length": str(len(body))}.items():
                conn.putheader(k, v)
            conn.endheaders()
            conn.send(body[: len(body) // 2])
            # ... and a large LFS object half uploaded through the URL the batch API signs
            blob = os.urandom(4 * 1024 * 1024)
            oid = hashlib.sha256(blob).hexdigest()
            lfs = http.client.HTTPConnection("127.0.0.1", port)
            lfs.request("POST", "/sppo-user/atomic.git/info/lfs/objects/batch",
                        body=json.dumps({"operation": "upload", "objects": [{"oid": oid, "size": len(blob)}]}),
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            href = json.loads(lfs.getresponse().read())["objects"][0]["actions"]["upload"]["href"]
            lfs.putrequest("PUT", href.split(str(port), 1)[1])
            lfs.putheader("Content-Length", str(len(blob)))
            lfs.endheaders()
            lfs.send(blob[: len(blob) // 2])
            deadline = time.time() + 10
            while not any(data_dir.glob("tmp/upload-*")) and time.time() < deadline:
                time.sleep(0.05)
            assert any(data_dir.glob("tmp/upload-*"))  # the upload is in flight, being written to disk
            time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        proc = _start_server(data_dir, port, token, log)
        try:
            assert (api.model_info("sppo-user/atomic").sha, api.list_repo_files("sppo-user/atomic")) == before
            assert not list(data_dir.glob(f"lfs/*/{oid}")) and not list(data_dir.glob("tmp/upload-*"))
            assert Path(hf_hub_download("sppo-user/atomic", "weights.txt", cache_dir=tmp_path / "c")).read_bytes() == b"v1"
            api.upload_file(path_or_fileobj=b"v2", path_in_repo="weights.txt", repo_id="sppo-user/atomic")  # retry works
            assert len(api.list_repo_commits("sppo-user/atomic")) == 3
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
    # the token never appears in the server's output or on its disk
    assert token.encode() not in log_path.read_bytes()
    assert all(token.encode() not in p.read_bytes() for p in data_dir.rglob("*") if p.is_file())


def test_full_disk_gives_a_clear_error_and_no_partial_commit(tmp_path):
    token = "hf_disk_full_token_abcdef"
    data_dir, port = tmp_path / "hub", _free_port()
    api = HfApi(endpoint=f"http://127.0.0.1:{port}", token=token)
    with use_endpoint(api.endpoint), open(tmp_path / "server.log", "wb") as log:
        proc = _start_server(data_dir, port, token, log, max_file_bytes=512 * 1024)
        try:
            api.create_repo("sppo-user/full")
            before = api.model_info("sppo-user/full").sha
            # big.txt goes inline in the commit body; big.bin goes to LFS (*.bin in .gitattributes)
            # (the client wraps an LFS upload error in a RuntimeError)
            for name in ("big.txt", "big.bin"):
                with pytest.raises((HfHubHTTPError, RuntimeError)) as err:
                    api.upload_file(path_or_fileobj=os.urandom(2 * 1024 * 1024), path_in_repo=name,
                                    repo_id="sppo-user/full")
                http_err = err.value if isinstance(err.value, HfHubHTTPError) else err.value.__cause__
                assert isinstance(http_err, HfHubHTTPError), err.value
                assert http_err.response.status_code == 507 and "disk" in str(http_err)
                assert api.model_info("sppo-user/full").sha == before
                assert api.list_repo_files("sppo-user/full") == [".gitattributes"]
            api.upload_file(path_or_fileobj=b"small", path_in_repo="small.txt", repo_id="sppo-user/full")
            assert api.list_repo_files("sppo-user/full") == [".gitattributes", "small.txt"]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)


def test_use_endpoint_reaches_huggingface_hub_transformers_and_datasets(local_hub):
    import datasets.config
    from huggingface_hub import constants, hf_api

    from sppo_hub.hub.endpoint import use_endpoint

    # the session fixture made the local Hub current everywhere the endpoint is cached
    assert constants.ENDPOINT == hf_api.api.endpoint == datasets.config.HF_ENDPOINT == local_hub.url
    assert constants.HF_HUB_DISABLE_XET and not constants.HF_HUB_OFFLINE and os.environ["HF_ENDPOINT"] == local_hub.url
    with use_endpoint("http://127.0.0.1:9") as url:  # nested switch, then restored
        assert constants.ENDPOINT == datasets.config.HF_ENDPOINT == url == "http://127.0.0.1:9"
        assert constants.HUGGINGFACE_CO_URL_TEMPLATE.startswith(url)
    assert constants.ENDPOINT == datasets.config.HF_ENDPOINT == local_hub.url
    with pytest.raises(ValueError, match="endpoint"):
        use_endpoint("127.0.0.1:8000")
    # module-level helpers (no endpoint argument) go to the local Hub too
    local_hub.api.create_repo("sppo-user/module-level")
    from huggingface_hub import list_repo_files

    assert list_repo_files("sppo-user/module-level") == [".gitattributes"]


def test_datasets_push_to_hub_and_gitattributes_lfs_patterns(local_hub):
    """push_to_hub preuploads each parquet shard from a temp file it deletes before the commit: the
    server must answer "lfs" for *.parquet (from the repo's .gitattributes, as the Hub does)."""
    import datasets

    from sppo_hub.hub.server.lfs import lfs_rules, matches_lfs

    rows = {"prompt": ["a", "b", "c"], "score": [0.5, 1.0, -2.0]}
    datasets.Dataset.from_dict(rows).push_to_hub("sppo-user/pushed", token=local_hub.token)
    assert datasets.load_dataset("sppo-user/pushed", split="train").to_dict() == rows
    splits = {"train": {"x": [1, 2, 3], "y": ["p", "q", "r"]}, "test": {"x": [4], "y": ["s"]}}
    datasets.DatasetDict({k: datasets.Dataset.from_dict(v) for k, v in splits.items()}).push_to_hub(
        "sppo-user/pushed-splits", token=local_hub.token)
    loaded = datasets.load_dataset("sppo-user/pushed-splits")
    assert set(loaded) == set(splits) and all(loaded[k].to_dict() == v for k, v in splits.items())
    tree = list(local_hub.api.list_repo_tree("sppo-user/pushed-splits", repo_type="dataset", recursive=True))
    parquet = [f for f in tree if f.path.endswith(".parquet")]
    assert len(parquet) == 2 and all(f.lfs for f in parquet)  # small, but LFS by pattern
    # a small file not matching any pattern stays inline
    small = [f for f in tree if f.path in (".gitattributes", "README.md")]
    assert small and not any(f.lfs for f in small)
    rules = lfs_rules("*.bin filter=lfs diff=lfs merge=lfs -text\nkeep/*.bin -filter\n"
                      "/data/** filter=lfs\n# comment\n")
    assert matches_lfs("a/b/w.bin", rules) and not matches_lfs("keep/w.bin", rules)
    assert matches_lfs("data/x/y.txt", rules) and not matches_lfs("other/data/y.txt", rules)
    assert not matches_lfs("w.txt", rules) and not matches_lfs("w.bin", [])


def test_bad_paths_and_folder_deletes(local_hub):
    api = local_hub.api
    repo = "sppo-user/paths"
    api.create_repo(repo)
    api.create_commit(repo, [CommitOperationAdd("docs/a.md", b"a"), CommitOperationAdd("docs/b.md", b"b"),
                             CommitOperationAdd("keep.txt", b"k")], commit_message="files")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(repo, [CommitOperationAdd("docs", b"clash")], commit_message="file over a folder")
    assert err.value.response.status_code == 400 and "folder" in str(err.value)
    from huggingface_hub import CommitOperationDelete

    api.create_commit(repo, [CommitOperationDelete("docs/")], commit_message="drop docs")
    assert api.list_repo_files(repo) == [".gitattributes", "keep.txt"]
