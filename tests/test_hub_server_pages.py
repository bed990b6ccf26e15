"""Every link the local Hub (and huggingface_hub against it) prints opens: repo, dataset, Space,
tree, blob, commit, history, collection and index pages answer 200 with HTML (or JSON on request)."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

from huggingface_hub import CommitOperationAdd

CARD = """---
license: apache-2.0
---
# Demo model

Trained with **SPPO**. <script>alert("x")</script>

![plot](plot.png) [data](https://example.org)
"""


def _get(url: str, token: str | None = None, accept: str | None = None) -> tuple[int, dict, bytes]:
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if accept:
        headers["Accept"] = accept
    conn.request("GET", split.path + (f"?{split.query}" if split.query else ""), headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_printed_urls_answer_200(local_hub):
    api = local_hub.api
    model_url = api.create_repo("sppo-user/pages-model")
    info = api.create_commit("sppo-user/pages-model", [CommitOperationAdd("README.md", CARD.encode()),
                                                       CommitOperationAdd("eval/results.json", b'{"a": 1}')],
                             commit_message="card")
    data_url = api.create_repo("sppo-user/pages-data", repo_type="dataset")
    space_url = api.create_repo("sppo-user/pages-space", repo_type="space", space_sdk="gradio")
    collection = api.create_collection("pages run", namespace="sppo-user")
    api.add_collection_item(collection.slug, "sppo-user/pages-model", "model")
    api.add_collection_item(collection.slug, "sppo-user/pages-data", "dataset")
    urls = [str(model_url), str(data_url), str(space_url), info.commit_url, collection.url, local_hub.url + "/",
            f"{model_url}/tree/main/eval", f"{model_url}/blob/main/eval/results.json",
            f"{model_url}/commits/main", f"{local_hub.url}/sppo-user", f"{local_hub.url}/datasets"]
    assert str(data_url).startswith(f"{local_hub.url}/datasets/") and collection.url.startswith(local_hub.url)
    for url in urls:
        status, headers, body = _get(url)
        assert status == 200 and headers["content-type"].startswith("text/html"), (url, status, body[:300])
        assert "script-src" not in headers["content-security-policy"]  # no script may run
    status, _, page = _get(str(model_url))
    text = page.decode()
    assert "<strong>SPPO</strong>" in text and "<script>" not in text and "eval/" in text
    assert "resolve/main/" in text  # relative images/links in the card resolve to repo files
    assert "sppo-user/pages-data" in _get(collection.url)[2].decode()
    status, _, raw = _get(f"{model_url}?format=json")
    listed = json.loads(raw)
    assert status == 200 and {f["path"] for f in listed["files"]} == {".gitattributes", "README.md", "eval"}
    assert json.loads(_get(f"{model_url}/commit/{info.oid}", accept="application/json")[2])["commits"][0]["id"] \
        == info.oid


def test_private_and_missing_pages_look_the_same(local_hub):
    api = local_hub.api
    url = api.create_repo("sppo-user/pages-private", private=True)
    missing = str(url).replace("pages-private", "pages-missing")
    hidden, absent = _get(str(url)), _get(missing)
    assert hidden[0] == absent[0] == 401
    assert hidden[2].replace(b"pages-private", b"X") == absent[2].replace(b"pages-missing", b"X")
    assert _get(str(url), token=local_hub.token)[0] == 200
    assert b"pages-private" not in _get(local_hub.url + "/")[2]
