"""Plain HTML pages at the URLs the local Hub (and huggingface_hub) print, so every link opens.

`/{id}`, `/datasets/{id}`, `/spaces/{id}` (+ `/tree/{rev}/{path}`, `/blob/{rev}/{path}`,
`/commit/{sha}`, `/commits/{rev}`), `/collections/{slug}`, a namespace `/{name}` and the index `/`.
The card is rendered with markdown-it (rich's dependency) with raw HTML disabled, every value is
escaped, and a Content-Security-Policy forbids scripts: cards are user content. Add `?format=json`
(or send `Accept: application/json`) to get the same data as JSON. Hand-written: no library serves
a browsable view of bare git repos that matches the Hub's URL layout.
"""

from __future__ import annotations

import html
from urllib.parse import quote

from .validation import HubError

_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}"
          "table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}"
          "pre{background:#f6f6f6;padding:1em;overflow:auto}code{background:#f6f6f6}.muted{color:#777}"
          "img{max-width:100%}")


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _link(h, path: str) -> str:
    return f"{h.base_url}/{quote(path)}"


def _render_markdown(text: str) -> str:
    if text.startswith("---") and text.count("---") >= 2:  # YAML metadata is shown apart, as on the Hub
        text = text.split("---", 2)[2]
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        return f"<pre>{_e(text)}</pre>"
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def _send_page(h, title: str, body: str, data: dict, base: str | None = None) -> None:
    wants_json = h.query.get("format") == "json" or "application/json" in (h.headers.get("Accept") or "")
    if wants_json:
        h.send(200, data)
        return
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)} · local Hub</title>"
            + (f"<base href='{_e(base)}'>" if base else "")
            + f"<style>{_STYLE}</style></head><body><p class='muted'><a href='{_e(h.base_url)}/'>local Hub</a>"
            f" (sppo-hub, offline development server)</p>{body}</body></html>").encode()
    h.send(200, headers={"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": _CSP,
                         "X-Content-Type-Options": "nosniff"}, raw=page)


def _visible_repos(h, types=("model", "dataset", "space"), namespace: str | None = None) -> list[tuple[str, str]]:
    out = []
    for repo_type in types:
        for rid in h.server.storage.list(repo_type):
            if namespace and not rid.startswith(namespace + "/"):
                continue
            if h.server.storage.get(repo_type, rid).settings.get("private") and h.identity() is None:
                continue
            out.append((repo_type, rid))
    return out


def index(h, types=("model", "dataset", "space"), namespace: str | None = None) -> None:
    repos = _visible_repos(h, types, namespace)
    if namespace and not repos:
        raise HubError(404, f"Nothing public under {namespace!r} on this local Hub.")
    rows = "".join(f"<tr><td>{_e(t)}</td><td><a href='{_e(_link(h, _PREFIX[t] + rid))}'>{_e(rid)}</a></td></tr>"
                   for t, rid in repos)
    title = namespace or "local Hub"
    body = f"<h1>{_e(title)}</h1><table><tr><th>type</th><th>repo</th></tr>{rows}</table>"
    if not namespace:
        body += ("<p class='muted'>Clients: <code>HF_ENDPOINT=" + _e(h.base_url) + " HF_HUB_DISABLE_XET=1</code></p>")
    _send_page(h, title, body, {"repos": [{"type": t, "id": rid} for t, rid in repos]})


def repo_page(h, repo_type: str, repo_id: str, revision: str = "main", path: str = "") -> None:
    from .routes import _open

    repo = _open(h, repo_type, repo_id)
    sha = repo.resolve(revision)
    entries = repo.list_tree(sha, path.strip("/"), recursive=False)
    base = f"{_PREFIX[repo_type]}{repo_id}"
    card = ""
    readme = repo.entry(sha, "README.md") if not path else None
    if readme is not None and readme.type == "file" and not readme.lfs:
        card = _render_markdown(repo.read_blob(readme.oid).decode("utf-8", "replace"))
    rows = []
    for e in sorted(entries, key=lambda e: (e.type != "directory", e.path)):
        view = "tree" if e.type == "directory" else "blob"
        href = _link(h, f"{base}/{view}/{revision}/{e.path}")
        raw = "" if e.type == "directory" else \
            f" <a class='muted' href='{_e(_link(h, f'{base}/resolve/{revision}/{e.path}'))}'>download</a>"
        size = "" if e.type == "directory" else f"{e.size:,} bytes" + (" (LFS)" if e.lfs else "")
        rows.append(f"<tr><td><a href='{_e(href)}'>{_e(e.path.rsplit('/', 1)[-1])}"
                    f"{'/' if e.type == 'directory' else ''}</a>{raw}</td><td>{_e(size)}</td></tr>")
    refs = repo.refs()
    ref_links = " ".join(f"<a href='{_e(_link(h, f'{base}/tree/{n}'))}'>{_e(n)}</a>"
                         for kind in ("branches", "tags") for n in refs[kind])
    last = repo.history(sha)[:1]
    title = f"{repo_type} {repo_id}"
    body = (f"<h1>{_e(repo_id)}</h1><p class='muted'>{_e(repo_type)} · revision {_e(revision)} "
            f"(<a href='{_e(_link(h, f'{base}/commit/{sha}'))}'>{_e(sha[:12])}</a>, "
            f"<a href='{_e(_link(h, f'{base}/commits/{revision}'))}'>history</a>)"
            + (f" · {_e(last[0]['title'])}" if last else "") + f"</p><p>refs: {ref_links}</p>"
            + (f"<h2>/{_e(path)}</h2>" if path else "")
            + f"<table>{''.join(rows)}</table>" + (f"<hr>{card}" if card else ""))
    data = {"id": repo_id, "type": repo_type, "revision": revision, "sha": sha, "path": path,
            "files": [e.to_json() for e in entries]}
    # Relative links and images in the card resolve to the repo's files, as they do on the Hub.
    _send_page(h, title, body, data, base=_link(h, f"{base}/resolve/{revision}/"))


def blob_page(h, repo_type: str, repo_id: str, revision: str, path: str) -> None:
    from .routes import _open

    repo = _open(h, repo_type, repo_id)
    sha = repo.resolve(revision)
    entry = repo.entry(sha, path)
    if entry is None:
        raise HubError(404, f"Entry {path!r} not found in {repo_id}@{revision}", "EntryNotFound")
    if entry.type == "directory":
        repo_page(h, repo_type, repo_id, revision, path)
        return
    base = f"{_PREFIX[repo_type]}{repo_id}"
    download = _link(h, f"{base}/resolve/{revision}/{path}")
    content = ""
    if not entry.lfs and entry.size <= 1 << 20:
        text = repo.read_blob(entry.oid)
        content = f"<pre>{_e(text.decode('utf-8', 'replace'))}</pre>" if b"\x00" not in text else ""
    body = (f"<h1><a href='{_e(_link(h, base))}'>{_e(repo_id)}</a> / {_e(path)}</h1>"
            f"<p>{entry.size:,} bytes{' (LFS)' if entry.lfs else ''} · <a href='{_e(download)}'>download</a></p>"
            + (content or "<p class='muted'>binary or large file: use the download link</p>"))
    _send_page(h, f"{repo_id}/{path}", body, {"id": repo_id, "revision": revision, **entry.to_json()})


def commits_page(h, repo_type: str, repo_id: str, revision: str, single: bool = False) -> None:
    from .routes import _open

    repo = _open(h, repo_type, repo_id)
    sha = repo.resolve(revision)
    history = repo.history(sha)[: 1 if single else 200]
    base = f"{_PREFIX[repo_type]}{repo_id}"
    rows = "".join(f"<tr><td><a href='{_e(_link(h, base + '/tree/' + c['id']))}'>{_e(c['id'][:12])}</a></td>"
                   f"<td>{_e(c['title'])}</td><td>{_e(c['authors'][0]['user'])}</td><td>{_e(c['date'])}</td></tr>"
                   for c in history)
    message = f"<pre>{_e(history[0]['message'])}</pre>" if single and history and history[0]["message"] else ""
    body = (f"<h1><a href='{_e(_link(h, base))}'>{_e(repo_id)}</a> · "
            f"{'commit' if single else 'history of'} {_e(revision)}</h1><table>{rows}</table>{message}")
    _send_page(h, f"{repo_id} commits", body, {"id": repo_id, "commits": history})


def collection_page(h, slug: str) -> None:
    from .collections import _get

    c = _get(h, slug)
    rows = "".join(f"<tr><td>{_e(i['type'])}</td><td><a href='{_e(_link(h, _PREFIX.get(i['type'], '') + i['id']))}'>"
                   f"{_e(i['id'])}</a></td><td>{_e((i.get('note') or {}).get('text', ''))}</td></tr>"
                   for i in sorted(c["items"], key=lambda i: i["position"]))
    body = (f"<h1>{_e(c['title'])}</h1><p class='muted'>collection by {_e(c['owner'])} · updated "
            f"{_e(c.get('lastUpdated', ''))}</p><p>{_e(c.get('description') or '')}</p><table>{rows}</table>")
    _send_page(h, c["title"], body, c)


def route(method: str, parts: list[str]):
    """(handler, args) for a page URL, or (None, ()) when the path is not one."""
    if method not in ("GET", "HEAD"):
        return None, ()
    if parts in ([], [""]):
        return index, ()
    if parts[0] == "collections" and len(parts) == 3:
        return collection_page, (f"{parts[1]}/{parts[2]}",)
    repo_type = {"datasets": "dataset", "spaces": "space", "models": "model"}.get(parts[0], "model")
    rest = parts[1:] if parts[0] in ("datasets", "spaces", "models") else parts
    if not rest:
        return index, ((repo_type,),)
    if len(rest) == 1:
        return index, (("model", "dataset", "space"), rest[0])
    repo_id, view, tail = f"{rest[0]}/{rest[1]}", rest[2] if len(rest) > 2 else "", rest[3:]
    if view == "" and len(rest) == 2:
        return repo_page, (repo_type, repo_id)
    if view == "tree" and tail:
        return repo_page, (repo_type, repo_id, tail[0], "/".join(tail[1:]))
    if view == "blob" and len(tail) >= 2:
        return blob_page, (repo_type, repo_id, tail[0], "/".join(tail[1:]))
    if view in ("commit", "commits") and len(tail) == 1:
        return (lambda h, *a: commits_page(h, *a, single=view == "commit")), (repo_type, repo_id, tail[0])
    return None, ()

