"""Git LFS batch API (basic transfer) of the local Hub: batch, signed PUT upload, verify.

Uploads stream to a temp file while hashing; only a complete object whose sha256 matches its oid
is renamed into `lfs/`, so a dropped connection leaves nothing behind.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import hmac
import os

from .validation import HubError, field, size_field

_CHUNK = 1024 * 1024
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1\n"
# Patterns written into a new repo's .gitattributes, like the Hub's default: preupload answers "lfs"
# for paths matching them (and for any file of 10 MB or more), so binaries never go inline.
GITATTRIBUTES = "".join(
    f"{p} filter=lfs diff=lfs merge=lfs -text\n"
    for p in ("*.bin", "*.safetensors", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.onnx", "*.parquet",
              "*.arrow", "*.gguf", "*.msgpack", "*.npy", "*.npz", "*.zip", "*.tar.gz", "*.png")
)


def lfs_rules(gitattributes: str) -> list[tuple[str, bool]]:
    """(pattern, is_lfs) for each .gitattributes line that sets or unsets the `filter` attribute."""
    rules = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        for attr in fields[1:]:
            if attr == "filter=lfs":
                rules.append((fields[0], True))
            elif attr in ("-filter", "!filter") or attr.startswith("filter="):
                rules.append((fields[0], False))
    return rules


def matches_lfs(path: str, rules: list[tuple[str, bool]]) -> bool:
    """Whether `path` gets `filter=lfs` from `rules` (git's rule: the last matching line wins).

    A pattern without '/' matches the file name at any depth; one with '/' matches the whole path
    from the repo root ('**/' and '/**' as in git, '*' otherwise also crossing '/': close enough here).
    """
    name = path.rsplit("/", 1)[-1]
    result = False
    for pattern, is_lfs in rules:
        pat = pattern.lstrip("/")
        if "/" not in pattern:
            hit = fnmatch.fnmatchcase(name, pat)
        elif pat.startswith("**/"):
            hit = fnmatch.fnmatchcase(path, pat[3:]) or fnmatch.fnmatchcase(path, pat)
        else:
            hit = fnmatch.fnmatchcase(path, pat)
        if hit:
            result = is_lfs
    return result


def lfs_pointer(oid: str, size: int) -> bytes:
    return LFS_POINTER_PREFIX + f"oid sha256:{oid}\nsize {size}\n".encode()


def parse_lfs_pointer(data: bytes) -> tuple[str, int] | None:
    """(sha256, size) when `data` is a git-lfs pointer file, else None."""
    if not data.startswith(LFS_POINTER_PREFIX) or len(data) > 512:
        return None
    fields = dict(line.split(" ", 1) for line in data.decode().splitlines()[1:] if " " in line)
    try:
        return fields["oid"].removeprefix("sha256:"), int(fields["size"])
    except (KeyError, ValueError):
        return None


def batch(h, repo_type: str, repo_id: str) -> None:
    body = h.json_body()
    operation = field(body, "operation", str, "upload")
    if operation not in ("upload", "download"):
        raise HubError(400, f"LFS batch operation {operation!r}: use 'upload' or 'download'.")
    if operation == "upload":
        h.require_write(repo_id.split("/")[0])
        h.server.storage.get(repo_type, repo_id)
    else:
        h.readable_repo(repo_type, repo_id)
    objects = []
    for obj in field(body, "objects", list, []):
        if not isinstance(obj, dict):
            raise HubError(400, "LFS batch 'objects' must be a list of {oid, size} objects.")
        oid, size = field(obj, "oid", str, required=True), size_field(obj)
        path = h.server.storage.lfs_path(oid)
        entry = {"oid": oid, "size": size, "authenticated": True}
        if operation == "download":
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
    """PUT body -> temp file (hashed on the way) -> rename to the content address if it matches.

    The signature is checked before a byte of the body is read (the URL is the credential)."""
    size = _check_signature(h, oid)
    length = h._length
    if length != size:
        raise HubError(400, f"Upload of {length} bytes for an object of {size} bytes: send the whole object.")
    storage = h.server.storage
    target = storage.lfs_path(oid)
    tmp = storage.new_tmp_file()
    digest = hashlib.sha256()
    chunks = h.body_chunks(_CHUNK)
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                digest.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        h._body = b""  # consumed
        if digest.hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match oid {oid} / size {size}.")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        # Disk full mid-body: read the rest off the kept-alive connection so the answer reaches the client.
        for _chunk in chunks:
            pass
        h._body = b""
        raise HubError(507, f"The local Hub could not store the upload ({err.strerror}); free disk space and retry.") from err
    finally:
        if tmp.exists():
            tmp.unlink()
    h.send(200, {})


def verify(h, oid: str) -> None:
    body = h.json_body()
    _check_signature(h, oid)
    path = h.server.storage.lfs_path(oid)
    if not path.exists() or path.stat().st_size != size_field(body):
        raise HubError(404, f"LFS object {oid} is missing or has the wrong size.")
    h.send(200, {})


# Requests these serve carry their own credential (a signed URL) or only read: no token needed to send a body.
batch.anonymous = upload.anonymous = verify.anonymous = True
upload.signed_upload = True
