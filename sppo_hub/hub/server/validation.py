"""Validation of what a client sends the local Hub: names, paths, headers, JSON and ndjson bodies.

Every check raises a `HubError` with a 4xx status and a message that says what a valid value looks
like, so malformed input never reaches storage (and never answers 500).
"""

from __future__ import annotations

import base64
import binascii
import json
import re

MAX_PATH_CHARS = 1024  # whole path in a repo
MAX_PATH_PART_CHARS = 255  # one folder or file name (a file system limit)
MAX_REF_CHARS = 255
_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


class HubError(Exception):
    """An error with an HTTP status and (optionally) the Hub's X-Error-Code header value."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def validate_repo_id(repo_id: str) -> tuple[str, str]:
    """Split `namespace/name`, raising a 400 HubError that says what a valid id looks like."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2 or not all(_NAME_RE.fullmatch(p) for p in parts) or any(
        "--" in p or ".." in p or p.lower().endswith(".git") for p in parts
    ):
        shown = repo_id[:200] if isinstance(repo_id, str) else repo_id
        raise HubError(
            400,
            f"Invalid repo id {shown!r}: use 'namespace/name' with letters, digits, '-', '_', '.' "
            "(at most 96 characters each, no '--' or '..', not starting or ending with '-' or '.', "
            "not ending in '.git').",
        )
    return parts[0], parts[1]


def check_path(path: str) -> None:
    """Reject paths a git tree cannot hold, that escape the repo, or that a file system refuses."""
    if not isinstance(path, str):
        raise HubError(400, f"Invalid path in repo {path!r}: expected a string like 'folder/file.txt'.")
    parts = path.split("/")
    if (not path or path.startswith("/") or len(path) > MAX_PATH_CHARS
            or any(p in ("", ".", "..") or p.lower() == ".git" or len(p) > MAX_PATH_PART_CHARS for p in parts)
            or any(c in path for c in "\x00\r\n")):
        raise HubError(400, f"Invalid path in repo {path[:200]!r}: use a relative path like 'folder/file.txt' "
                            f"(no empty, '.', '..' or '.git' parts, no line breaks, at most {MAX_PATH_CHARS} "
                            f"characters and {MAX_PATH_PART_CHARS} per part).")


def check_ref_name(name: str) -> None:
    """Branch and tag names git accepts (a subset of git-check-ref-format)."""
    if (not isinstance(name, str) or not name or len(name) > MAX_REF_CHARS or _REF_FORBIDDEN.search(name)
            or ".." in name or "@{" in name or name.startswith(("/", ".", "-")) or name.endswith((".lock", "/", "."))
            or "//" in name or "/." in name):
        shown = name[:200] if isinstance(name, str) else name
        raise HubError(400, f"Invalid ref name {shown!r}: use letters, digits, '-', '_', '.', '/' "
                            f"(at most {MAX_REF_CHARS} characters, no '..', not ending in '.lock').")


def content_length(value: str | None, limit: int) -> int:
    """The request's Content-Length: 400 when it is not a non-negative integer, 413 above `limit`."""
    if value is None or value == "":
        return 0
    if not value.strip().isdigit():
        raise HubError(400, f"Invalid Content-Length {value[:40]!r}: expected a non-negative integer.")
    length = int(value)
    if length > limit:
        raise HubError(413, f"Request body of {length} bytes is over this local Hub's limit of {limit} bytes "
                            "(start it with a larger --max-body-bytes / --max-upload-bytes).")
    return length


def json_object(raw: bytes) -> dict:
    """A JSON request body that must be an object ({} when empty)."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HubError(400, f"Request body is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise HubError(400, f"Request body must be a JSON object, not {type(data).__name__}.")
    return data


def field(body: dict, key: str, kind: type | tuple, default=None, required: bool = False):
    """`body[key]` checked against `kind` (400 naming the field otherwise)."""
    if key not in body or body[key] is None:
        if required:
            raise HubError(400, f"Field {key!r} is required.")
        return default
    value = body[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise HubError(400, f"Field {key!r} must be {names}, not {type(value).__name__}.")
    return value


def size_field(body: dict, key: str = "size") -> int:
    value = field(body, key, int, required=True)
    if value < 0:
        raise HubError(400, f"Field {key!r} must be >= 0.")
    return value


def parse_commit(raw: bytes) -> tuple[dict, list[tuple[str, dict]]]:
    """(header, [(operation, value), ...]) of an ndjson commit body; 400 for any malformed line."""
    header, operations = {}, []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise HubError(400, f"Commit body line {n} is not valid JSON ({err}): send one JSON object per line.") \
                from err
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise HubError(400, f"Commit body line {n} must be an object {{\"key\": ..., \"value\": {{...}}}}.")
        key, value = item.get("key"), item["value"]
        if key == "header":
            for name in ("summary", "description", "parentCommit"):
                field(value, name, str)
            header = value
        elif key in ("file", "lfsFile", "deletedFile", "deletedFolder"):
            check_path(field(value, "path", str, required=True).strip("/") if key == "deletedFolder"
                       else field(value, "path", str, required=True))
            operations.append((key, value))
        else:
            raise HubError(400, f"Unknown commit operation {key!r} on line {n}: use header, file, lfsFile, "
                                "deletedFile or deletedFolder.")
    if not operations:
        raise HubError(400, "Empty commit: it has no file to add, change or delete.")
    return header, operations


def decode_file(value: dict) -> bytes:
    """The content of an inline `file` operation (base64): 400 for another encoding or invalid base64."""
    encoding = field(value, "encoding", str, "base64")
    if encoding != "base64":
        raise HubError(400, f"File {value['path']!r}: encoding {encoding!r} is not supported; use base64.")
    content = field(value, "content", str, required=True)
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as err:
        raise HubError(400, f"File {value['path']!r}: content is not valid base64 ({err}); nothing was committed.") \
            from err


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a `Range: bytes=a-b` header (None without one); 400 malformed, 416 unsatisfiable."""
    if not header:
        return None
    m = _RANGE_RE.fullmatch(header.strip())
    if not m or not (m.group(1) or m.group(2)):
        raise HubError(400, f"Invalid Range header {header[:80]!r}: use one range, 'bytes=first-last', "
                            "'bytes=first-' or 'bytes=-suffix'.")
    first, last = m.group(1), m.group(2)
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            raise HubError(400, f"Invalid Range header {header!r}: the last byte is before the first.")
    else:
        start, end = max(size - int(last), 0), size - 1
    if start >= size and size or (not size and first and start > 0):
        raise HubError(416, f"Range {header} not satisfiable for {size} bytes")
    return start, end
