"""The local Hub against hostile and malformed requests, over raw HTTP (http.client, sockets) and
through huggingface_hub: limits (auth before body, size caps, timeouts, a bounded pool),
validation (400 instead of 500), no existence leak, racing tags, and `hub serve` argument errors."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from sppo_hub.cli import main
from sppo_hub.hub.endpoint import use_endpoint
from sppo_hub.hub.server import ServerLimits, start_local_hub

TOKEN = "hf_hostile_test_token_abcdef"
LIMITS = ServerLimits(max_body_bytes=1024 * 1024, idle_timeout=1.5, request_timeout=2.5, max_workers=8)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = start_local_hub(tmp_path_factory.mktemp("hostile-hub"), token=TOKEN, limits=LIMITS)
    with use_endpoint(hub.url, token=TOKEN):
        hub.api.create_repo("sppo-user/target")
        hub.api.upload_file(path_or_fileobj=b"0123456789", path_in_repo="data.txt", repo_id="sppo-user/target")
        hub.api.create_repo("sppo-user/secret", private=True)
        yield hub
    hub.stop()


def _port(hub) -> int:
    return hub.server.server_address[1]


def raw(hub, method: str, path: str, body: bytes | str | None = None, token: str | None = TOKEN,
        headers: dict | None = None) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", _port(hub), timeout=10)
    all_headers = {"Authorization": f"Bearer {token}"} if token else {}
    all_headers.update(headers or {})
    conn.request(method, path, body=body, headers=all_headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    try:
        payload = json.loads(data) if data else {}
    except json.JSONDecodeError:
        payload = {"raw": data.decode(errors="replace")}
    return resp.status, dict(resp.getheaders()), payload


def _head_only(hub, head: str, wait: float = 5.0) -> tuple[bytes, float]:
    """Send a request head without its body; return what the server answers and how fast."""
    with socket.create_connection(("127.0.0.1", _port(hub))) as s:
        s.settimeout(wait)
        start = time.monotonic()
        s.sendall(head.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data, time.monotonic() - start


def _commit_body(*ops: dict, header: dict | None = None) -> bytes:
    lines = [{"key": "header", "value": header or {"summary": "test"}}, *ops]
    return "".join(json.dumps(x) + "\n" for x in lines).encode()


def _file(path: str, content: bytes | str) -> dict:
    text = content if isinstance(content, str) else base64.b64encode(content).decode()
    return {"key": "file", "value": {"path": path, "encoding": "base64", "content": text}}


COMMIT = "/api/models/sppo-user/target/commit/main"


def test_auth_before_body_and_content_length_limits(hub):
    """A 100 MB body is never read: without a token, with a wrong one, or over the cap, the answer
    comes at once, with only the head sent; a bad Content-Length is 400."""
    big = "Content-Length: 100000000\r\nContent-Type: application/json\r\n"
    for auth, status in (("", b"401"), ("Authorization: Bearer hf_wrong\r\n", b"401"),
                         (f"Authorization: Bearer {TOKEN}\r\n", b"413")):
        answer, took = _head_only(hub, f"POST /api/repos/create HTTP/1.1\r\nHost: x\r\n{auth}{big}\r\n")
        assert answer.split()[1] == status and took < 2.0, (auth, answer[:200])
    for value, status in (("-5", b"400"), ("abc", b"400"), ("1" * 30, b"413")):
        answer, _ = _head_only(hub, f"POST {COMMIT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                                    f"Content-Length: {value}\r\n\r\n")
        assert answer.split()[1] == status, (value, answer[:200])
    answer, _ = _head_only(hub, f"POST {COMMIT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n")
    assert answer.split()[1] == b"411"
    # Expect: 100-continue invites the body only from a caller with the token
    expect = "POST /api/repos/create HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\nExpect: 100-continue\r\n"
    assert _head_only(hub, expect + "\r\n")[0].startswith(b"HTTP/1.1 401")
    assert _head_only(hub, expect + f"Authorization: Bearer {TOKEN}\r\n\r\n")[0].startswith(b"HTTP/1.1 100")
    # huggingface_hub: an inline file over the cap is refused with the limit named
    with pytest.raises(HfHubHTTPError) as err:
        hub.api.create_commit("sppo-user/target", [CommitOperationAdd("big.txt", b"x" * 2_000_000)],
                              commit_message="too big")
    assert err.value.response.status_code == 413 and "limit" in str(err.value)
    assert hub.api.list_repo_files("sppo-user/target") == [".gitattributes", "data.txt"]


def test_idle_and_slow_clients_are_cut_off(hub):
    # idle: connected, sends nothing
    with socket.create_connection(("127.0.0.1", _port(hub))) as s:
        s.settimeout(10)
        start = time.monotonic()
        assert s.recv(100) == b"" and time.monotonic() - start < LIMITS.idle_timeout + 2
    # slow: one header byte every 0.5 s (never idle) is cut at the request deadline
    with socket.create_connection(("127.0.0.1", _port(hub))) as s:
        s.settimeout(10)
        start, closed = time.monotonic(), False
        for byte in (b"GET /api/whoami-v2 HTTP/1.1\r\nX-Slow: " + b"a" * 40):
            try:
                s.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.25)
            if time.monotonic() - start > LIMITS.request_timeout + 3:
                break
        if not closed:
            s.settimeout(3)
            try:
                closed = s.recv(100) == b""
            except ConnectionResetError:
                closed = True
        assert closed and time.monotonic() - start < LIMITS.request_timeout + 3
    # slow body: the body's deadline passes and the answer is 408
    with socket.create_connection(("127.0.0.1", _port(hub))) as s:
        s.settimeout(10)
        s.sendall(f"POST {COMMIT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "Content-Length: 100000\r\n\r\n".encode())
        start, answer = time.monotonic(), b""
        while time.monotonic() - start < LIMITS.request_timeout + 4 and not answer:
            try:
                s.sendall(b"x")
                s.settimeout(0.3)
                answer = s.recv(200)
            except TimeoutError:
                continue
            except OSError:
                break
        assert answer.startswith(b"HTTP/1.1 408") or answer == b""
    assert raw(hub, "GET", "/api/whoami-v2")[0] == 200  # still serving


def test_bounded_worker_pool_answers_503_beyond_its_queue(tmp_path):
    small = start_local_hub(tmp_path / "small", token=TOKEN,
                            limits=ServerLimits(max_workers=2, max_pending=2, idle_timeout=3, request_timeout=3))
    try:
        idle = []  # clients that start a request and stall: 2 hold the workers, then the queue fills up
        while not small.server._pending.full() and len(idle) < 20:
            idle.append(socket.create_connection(("127.0.0.1", small.server.server_address[1])))
            idle[-1].sendall(b"GET /api/whoami-v2 HTTP/1.1\r\n")
            time.sleep(0.1)
        assert small.server._pending.full()
        answer, took = _head_only(small, "GET /api/whoami-v2 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After" in answer and took < 1.0
        for s in idle:
            s.close()
        deadline = time.time() + 10
        while time.time() < deadline:  # the pool frees up as soon as the idle clients are gone
            try:
                if raw(small, "GET", "/api/whoami-v2")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert raw(small, "GET", "/api/whoami-v2")[0] == 200
        assert len(small.server._workers) == 2 and threading.active_count() < 200
        # idle kept-alive connections give their worker up at once when others are waiting
        idle = [socket.create_connection(("127.0.0.1", small.server.server_address[1])) for _ in range(2)]
        time.sleep(0.3)
        start = time.monotonic()
        assert raw(small, "GET", "/api/whoami-v2")[0] == 200 and time.monotonic() - start < 2.5
        for s in idle:
            s.close()
    finally:
        small.stop()


@pytest.mark.parametrize("body, message", [
    (b'{"key": "header", "value": {}}\n{not json', "line 2 is not valid JSON"),
    (b'[1, 2]\n', "must be an object"),
    (_commit_body(_file("bad.txt", "!!not base64!!")), "not valid base64"),
    (_commit_body({"key": "deletedFolder", "value": {"path": "/"}}), "Invalid path"),
    (_commit_body({"key": "deletedFolder", "value": {"path": ""}}), "Invalid path"),
    (_commit_body(), "Empty commit"),
    (_commit_body(_file("line\nbreak.txt", b"x")), "Invalid path"),
    (_commit_body(_file(".GIT/config", b"x")), "Invalid path"),
    (_commit_body(_file("sub/.Git/hooks", b"x")), "Invalid path"),
    (_commit_body(_file("a" * 300 + ".txt", b"x")), "Invalid path"),
    (_commit_body(_file("d/" * 600 + "f", b"x")), "Invalid path"),
    (_commit_body({"key": "file", "value": {"path": 5}}), "'path' must be str"),
    (_commit_body({"key": "lfsFile", "value": {"path": "w.bin", "oid": "0" * 64, "size": "big"}}), "'size' must be int"),
    (_commit_body({"key": "rename", "value": {"path": "x"}}), "Unknown commit operation"),
])
def test_malformed_commits_are_400_and_commit_nothing(hub, body, message):
    head = hub.api.model_info("sppo-user/target").sha
    status, headers, payload = raw(hub, "POST", COMMIT, body, headers={"Content-Type": "application/x-ndjson"})
    assert status == 400 and message in payload["error"], payload
    assert hub.api.model_info("sppo-user/target").sha == head


@pytest.mark.parametrize("method, path, body, message", [
    ("POST", "/api/repos/create", b"{not json", "not valid JSON"),
    ("POST", "/api/repos/create", b'"a string"', "must be a JSON object"),
    ("POST", "/api/repos/create", json.dumps({"name": "bad\nname"}), "Invalid repo id"),
    ("POST", "/api/repos/create", json.dumps({"name": "name\n"}), "Invalid repo id"),
    ("POST", "/api/repos/create", json.dumps({"name": "x" * 500}), "Invalid repo id"),
    ("POST", "/api/repos/create", json.dumps({"name": "repo.GIT"}), "Invalid repo id"),
    ("POST", "/api/repos/create", json.dumps({"name": ["list"]}), "'name' must be str"),
    ("POST", "/api/models/sppo-user/target/preupload/main", json.dumps({"files": [{"path": "a", "size": -1}]}),
     "'size' must be >= 0"),
    ("POST", "/api/models/sppo-user/target/preupload/main", json.dumps({"files": [{"path": ".git/x", "size": 1}]}),
     "Invalid path"),
    ("POST", "/api/models/sppo-user/target/tag/main", json.dumps({"tag": "v1\n"}), "Invalid ref name"),
    ("POST", "/api/models/sppo-user/target/branch/" + "b" * 300, b"{}", "Invalid ref name"),
    ("POST", "/api/models/sppo-user/target/paths-info/main", json.dumps({"paths": [1, 2]}), "'paths'"),
    ("POST", "/sppo-user/target.git/info/lfs/objects/batch", json.dumps({"objects": [{"oid": "x", "size": 1}]}),
     "Invalid LFS oid"),
])
def test_malformed_requests_are_400(hub, method, path, body, message):
    status, _headers, payload = raw(hub, method, path, body, headers={"Content-Type": "application/json"})
    assert status == 400 and message in payload["error"], payload


@pytest.mark.parametrize("value, status", [("bytes=abc", 400), ("bytes=5-2", 400), ("bytes=-", 400),
                                           ("items=0-1", 400), ("bytes=50-60", 416), ("bytes=2-4", 206),
                                           ("bytes=-3", 206)])
def test_range_headers(hub, value, status):
    got, headers, payload = raw(hub, "GET", "/sppo-user/target/resolve/main/data.txt", headers={"Range": value})
    assert got == status, payload
    if status == 206:
        assert headers["Content-Range"] in ("bytes 2-4/10", "bytes 7-9/10")


def test_private_and_missing_repos_look_the_same_without_the_token(hub):
    anonymous = HfApi(endpoint=hub.url, token=False)
    answers = []
    for repo in ("sppo-user/secret", "sppo-user/no-such-repo"):
        for method, path in (("GET", f"/api/models/{repo}"), ("GET", f"/api/models/{repo}/tree/main"),
                             ("GET", f"/{repo}/resolve/main/README.md"), ("GET", f"/{repo}"),
                             ("POST", f"/{repo}.git/info/lfs/objects/batch")):
            status, headers, payload = raw(hub, method, path, token=None,
                                           body=json.dumps({"operation": "download", "objects": []}) if method ==
                                           "POST" else None)
            answers.append((method, path.replace(repo, "<repo>"), status, headers.get("X-Error-Code"),
                            payload["error"].replace(repo, "<repo>")))
        with pytest.raises(RepositoryNotFoundError) as err:
            anonymous.model_info(repo)
        answers.append(str(err.value).split("Request ID")[0].replace(repo, "<repo>").split("\n")[-2:])
    half = len(answers) // 2
    assert answers[:half] == answers[half:]
    assert all(a[2] == 401 for a in answers[: half - 1])
    # reads with a body need no token on a public repo (as on the Hub)
    status, _h, listed = raw(hub, "POST", "/api/models/sppo-user/target/paths-info/main", token=None,
                             body=json.dumps({"paths": ["data.txt"]}), headers={"Content-Type": "application/json"})
    assert status == 200 and listed[0]["path"] == "data.txt"
    assert raw(hub, "POST", "/api/validate-yaml", json.dumps({"content": "---\na: 1\n---\n"}), token=None)[0] == 200
    assert raw(hub, "POST", "/api/repos/create", json.dumps({"name": "x"}), token=None)[0] == 401
    # with the token: the private repo reads, the missing one is a plain 404
    assert hub.api.model_info("sppo-user/secret").private is True
    assert raw(hub, "GET", "/api/models/sppo-user/no-such-repo")[0] == 404


def test_racing_create_tag_has_one_winner_and_409s(hub):
    results: list = []

    def create(i: int) -> None:
        try:
            if i % 2:
                hub.api.create_tag("sppo-user/target", tag="race")
                results.append(200)
            else:
                status, _h, payload = raw(hub, "POST", "/api/models/sppo-user/target/tag/main",
                                          json.dumps({"tag": "race"}))
                results.append((status, payload))
        except HfHubHTTPError as err:
            results.append((err.response.status_code, err.response.json()))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = [r if isinstance(r, int) else r[0] for r in results]
    assert sorted(statuses) == [200] + [409] * 7, results
    data_dir = str(hub.data_dir)
    assert all(data_dir not in json.dumps(r) for r in results if not isinstance(r, int))
    assert [t.name for t in hub.api.list_repo_refs("sppo-user/target").tags].count("race") == 1


def test_hub_client_sees_400_for_bad_paths_and_ids(hub):
    with pytest.raises(HfHubHTTPError) as err:
        hub.api.upload_file(path_or_fileobj=b"x", path_in_repo="dir/.GIT/x", repo_id="sppo-user/target")
    assert err.value.response.status_code == 400
    with pytest.raises((HfHubHTTPError, ValueError)):
        hub.api.create_repo("sppo-user/" + "n" * 200)
    assert hub.api.list_repo_files("sppo-user/target")[:2] == [".gitattributes", "data.txt"]


@pytest.mark.parametrize("args, named", [
    (["--data-dir", "{file}", "--port", "0"], "is a file"),
    (["--data-dir", "{file}/sub", "--port", "0"], "is a file"),
    (["--data-dir", "{dir}", "--port", "70000"], "--port 70000"),
    (["--data-dir", "{dir}", "--port", "-1"], "--port -1"),
    (["--data-dir", "{dir}", "--workers", "0"], "--workers"),
])
def test_hub_serve_argument_errors(args, named, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    argv = [a.format(file=tmp_path / "file", dir=tmp_path / "d") for a in args]
    assert main(["hub", "serve", *argv]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_publishing_to_an_unreachable_endpoint_is_one_clear_line(tmp_path, capsys):
    import numpy as np
    from safetensors.numpy import save_file

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(ckpt / "model.safetensors"))
    (ckpt / "config.json").write_text("{}")
    (ckpt / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["hub", "publish-model", str(ckpt), "--org", "sppo-user", "--run", "r", "--iteration", "1",
                 "--base-model", "org/base", "--endpoint", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot reach the Hub at http://127.0.0.1:{port}" in err and "Traceback" not in err


def test_garbage_on_every_route_is_never_a_500(hub):
    """Every route gets malformed bodies (broken JSON, wrong types for every known field, bad bytes):
    each answer is a 2xx/4xx, never a 5xx, and the repos stay intact."""
    import itertools
    import random

    hub.api.create_repo("sppo-user/fuzz-space", repo_type="space", space_sdk="gradio", exist_ok=True)
    slug = hub.api.create_collection("fuzz", namespace="sppo-user", exists_ok=True).slug
    head = hub.api.model_info("sppo-user/target").sha
    repo, space = "/api/models/sppo-user/target", "/api/spaces/sppo-user/fuzz-space"
    routes = [("POST", "/api/repos/create"), ("POST", "/api/validate-yaml"), ("GET", "/api/models"),
              ("GET", repo), ("POST", f"{repo}/preupload/main"), ("POST", f"{repo}/commit/main"),
              ("GET", f"{repo}/tree/main"), ("POST", f"{repo}/paths-info/main"), ("GET", f"{repo}/commits/main"),
              ("POST", f"{repo}/branch/fz"), ("DELETE", f"{repo}/branch/fz"), ("POST", f"{repo}/tag/main"),
              ("DELETE", f"{repo}/tag/fz"), ("PUT", f"{repo}/settings"), ("POST", "/api/collections"),
              ("POST", f"/api/collections/{slug}/items"), ("DELETE", f"/api/collections/{slug}/items/x"),
              ("POST", f"{space}/variables"), ("DELETE", f"{space}/variables"), ("POST", f"{space}/secrets"),
              ("GET", f"{space}/runtime"), ("POST", "/sppo-user/target.git/info/lfs/objects/batch"),
              ("POST", "/lfs-verify/" + "0" * 64), ("PUT", "/lfs-upload/" + "0" * 64),
              ("GET", "/sppo-user/target/resolve/main/data.txt"), ("GET", "/sppo-user/target/tree/main/..%2f.."),
              ("GET", "/sppo-user/target/blob/main/%00"), ("GET", f"/collections/{slug}")]
    values = [None, 1, -1, "x", "", [], {}, [1], {"a": 1}, True, 1.5, "a\nb", "../..", "/", "\x00"]
    keys = ["name", "type", "organization", "content", "files", "paths", "startingPoint", "tag", "private",
            "title", "namespace", "item", "key", "value", "objects", "operation", "size", "oid", "path"]
    bodies = [b"", b"{", b"[]", b"null", b"1", b"\xff\xfe", b'{"key": "header"}\n',
              b'{"key": "file", "value": {"path": "a", "content": 5}}\n']
    rng = random.Random(0)
    for _ in range(30):
        body = {rng.choice(keys): rng.choice(values) for _ in range(rng.randint(1, 4))}
        for key in ("files", "objects", "item"):
            if key in body and rng.random() < 0.5:
                body[key] = [{rng.choice(keys): rng.choice(values)}] if key != "item" else {"id": rng.choice(values)}
        bodies.append(json.dumps(body).encode())
    failures = []
    for (method, path), body in itertools.product(routes, bodies):
        status, _headers, payload = raw(hub, method, path, body, headers={"Content-Type": "application/json"})
        if status >= 500:
            failures.append((method, path, body[:80], payload))
    assert failures == []
    assert hub.api.model_info("sppo-user/target").sha == head
    assert hub.api.list_repo_files("sppo-user/target")[:2] == [".gitattributes", "data.txt"]
