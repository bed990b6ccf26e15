"""Git LFS batch API (basic transfer) of the local Hub: batch, signed PUT upload, verify.

Uploads stream to a temp file while hashing; only a complete object whose sha256 matches its oid
is renamed into `lfs/`, so a dropped connection leaves nothing behind.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os

from .storage import HubError

_CHUNK = 1024 * 1024


def batch(h, repo_type: str, repo_id: str) -> None:
    body = h.json_body()
    repo = h.server.storage.get(repo_type, repo_id)
    if body.get("operation", "upload") == "upload":
        h.require_write(repo_id.split("/")[0])
    else:
        h.can_read(repo)
    objects = []
    for obj in body.get("objects", []):
        oid, size = str(obj.get("oid", "")), int(obj.get("size", 0))
        path = h.server.storage.lfs_path(oid)
        entry = {"oid": oid, "size": size, "authenticated": True}
        if body.get("operation", "upload") == "download":
            entry["error"] = {"code": 501, "message": "Download through the resolve URL instead."}
        elif not (path.exists() and path.stat().st_size == size):
            sig = h.server.sign(f"{oid}:{size}")
            entry["actions"] = {
                "upload": {"href": f"{h.base_url}/lfs-upload/{oid}?size={size}&sig={sig}"},
                "verify": {"href": f"{h.base_url}/lfs-verify/{oid}?size={size}&sig={sig}"},
            }
        objects.append(entry)  # no "actions" => already stored, the client skips it
    h.send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            {"Content-Type": "application/vnd.git-lfs+json"})


def _check_signature(h, oid: str) -> int:
    size = h.query.get("size", "")
    expected = h.server.sign(f"{oid}:{size}")
    if not hmac.compare_digest(expected, h.query.get("sig", "")):
        raise HubError(403, "Invalid or missing upload signature: ask the LFS batch endpoint for a fresh URL.")
    return int(size)


def upload(h, oid: str) -> None:
    """PUT body -> temp file (hashed on the way) -> rename to the content address if it matches."""
    length = int(h.headers.get("Content-Length") or 0)
    try:
        size = _check_signature(h, oid)
    except HubError:
        h.body()
        raise
    storage = h.server.storage
    target = storage.lfs_path(oid)
    tmp = storage.new_tmp_file()
    digest, remaining = hashlib.sha256(), length
    try:
        with open(tmp, "wb") as f:
            while remaining > 0:
                chunk = h.rfile.read(min(_CHUNK, remaining))
                if not chunk:
                    raise HubError(400, "Upload interrupted: the body ended early.")
                remaining -= len(chunk)
                digest.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        h._body = b""  # drained
        if length != size or digest.hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match oid {oid} / size {size}.")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    except OSError as err:
        # A write failed mid-body (disk full): read the rest of the body off the kept-alive
        # connection so the error answer reaches the client (the dispatcher's drain would wait
        # for bytes already consumed).
        while remaining > 0:
            chunk = h.rfile.read(min(_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
        h._body = b""
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        raise HubError(507, f"The local Hub could not store the upload ({err.strerror}); free disk space and retry.") from err
    finally:
        if tmp.exists():
            tmp.unlink()
    h.send(200, {})


def verify(h, oid: str) -> None:
    body = h.json_body()
    _check_signature(h, oid)
    path = h.server.storage.lfs_path(oid)
    if not path.exists() or path.stat().st_size != int(body.get("size", -1)):
        raise HubError(404, f"LFS object {oid} is missing or has the wrong size.")
    h.send(200, {})
