"""One clear line (and an exit code) for each kind of failure a command can end in.

The CLI prints `sppo-hub <command>: error: <message>` and exits 2 for input the user can fix (a bad
value, file, recipe key, repo id) and 1 for the environment (a missing optional extra, an endpoint
that does not answer, a disk error). No traceback unless `--debug` or SPPO_HUB_DEBUG=1; an unknown
exception prints its type and first line and says how to see the traceback.
"""

from __future__ import annotations

import json

USAGE, FAILURE, INTERRUPTED = 2, 1, 130

# Optional dependencies -> the extra that installs them (pyproject.toml [project.optional-dependencies]).
EXTRAS = {"vllm": "vllm", "gradio": "space", "gradio_client": "space", "alpaca_eval": "eval", "lm_eval": "eval",
          "openai": "eval", "pandas": "eval"}


class UserError(Exception):
    """An error caused by the user's input: printed as one clear line, exit code 2."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _root(err: BaseException) -> BaseException:
    """The innermost cause: library wrappers (datasets' DatasetGenerationError) hide the useful message."""
    seen = set()
    while (err.__cause__ or err.__context__) is not None and id(err) not in seen:
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return err


def _hub_error(err: BaseException) -> tuple[int, str] | None:
    try:
        from huggingface_hub import errors as hf
    except ImportError:  # pragma: no cover - a core dependency
        return None
    if isinstance(err, hf.RevisionNotFoundError):
        return USAGE, f"no such revision on the Hub ({_first_line(err)}); check the branch, tag or commit."
    if isinstance(err, hf.GatedRepoError):
        return USAGE, f"gated repo: accept its terms on the Hub and set HF_TOKEN ({_first_line(err)})."
    if isinstance(err, hf.RepositoryNotFoundError):
        return USAGE, (f"repo not found on the Hub ({_first_line(err)}); check the id, or set HF_TOKEN if it is "
                       "private.")
    if isinstance(err, hf.EntryNotFoundError):
        return USAGE, f"file not found in the repo ({_first_line(err)})."
    if isinstance(err, (hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError)):
        return USAGE, (f"{_first_line(err)}; HF_HUB_OFFLINE=1 allows only what is in the local cache: download it "
                       "first or give a local path.")
    if isinstance(err, hf.HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        hint = "; set HF_TOKEN to a valid write token" if status in (401, 403) else ""
        return FAILURE, f"the Hub refused the request (HTTP {status}): {_first_line(err)}{hint}."
    return None


def _connection_error(err: BaseException) -> tuple[int, str] | None:
    names = {cls.__name__ for cls in type(err).__mro__}
    if names & {"ConnectError", "ConnectTimeout", "ConnectionError", "ConnectionRefusedError", "TimeoutException",
                "ReadTimeout", "RemoteProtocolError", "URLError"}:
        url = ""
        try:
            url = f" {err.request.url}"  # httpx errors carry the request
        except Exception:
            pass
        return FAILURE, (f"cannot reach{url or ' the endpoint'} ({type(err).__name__}: {_first_line(err)}); "
                         "check the URL (--endpoint / HF_ENDPOINT) and the network, or use --local-hub.")
    return None


def describe(err: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for an exception that ended a command."""
    if isinstance(err, UserError):
        return USAGE, str(err)
    if type(err).__name__ == "HubUnavailableError":  # sppo_hub.hub.retry: the message says what failed and what next
        return FAILURE, _first_line(err)
    found = _hub_error(err) or _connection_error(err)
    if found:
        return found
    if isinstance(err, ImportError):
        name = (getattr(err, "name", None) or "").split(".")[0]
        if "pip install" in str(err):
            return FAILURE, _first_line(err)
        extra = EXTRAS.get(name)
        install = f"pip install 'sppo-hub[{extra}]'" if extra else f"pip install {name or 'the missing package'}"
        return FAILURE, f"{name or 'a package'} is not installed ({_first_line(err)}); install it with `{install}`."
    if isinstance(err, json.JSONDecodeError):
        return USAGE, f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}."
    kind = type(err).__name__
    if kind == "SafetensorError":
        return USAGE, (f"a weights file is corrupt or not safetensors ({_first_line(err)}); save or download the "
                       "model again.")
    if kind == "DatasetGenerationError":  # datasets could not parse an input file: say why
        root = _root(err)
        return USAGE, f"cannot read the input data: {type(root).__name__}: {_first_line(root)}"
    if isinstance(err, StopIteration):
        return USAGE, "an input file is empty; give a file with at least one row."
    if isinstance(err, (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)):
        # Our own validation raises these with a message that names the field and the fix.
        return USAGE, str(err).strip() or kind
    if isinstance(err, PermissionError):
        return FAILURE, f"permission denied: {err.filename or _first_line(err)}; choose a folder you can write to."
    if isinstance(err, OSError):
        hint = "; free some disk space" if getattr(err, "errno", None) == 28 else ""
        return FAILURE, f"{kind}: {_first_line(err)}{hint}."
    return FAILURE, f"{kind}: {_first_line(err)[:300]} (an unexpected error: rerun with --debug for the traceback)"


class reading:
    """`with reading("--generated", path): load(path)`: any failure to read an input names its flag and path."""

    def __init__(self, flag: str, path) -> None:
        self.flag, self.path = flag, path

    def __enter__(self):
        check_jsonl(self.flag, self.path)
        return self

    def __exit__(self, kind, err, tb) -> bool:
        if err is None or isinstance(err, (UserError, KeyboardInterrupt)):
            return False
        text = str(err)
        if isinstance(err, (ValueError, FileNotFoundError)) and self.flag in text:
            return False  # the loader already named the flag
        if kind.__name__ == "DatasetGenerationError" or isinstance(err, StopIteration):
            root = _root(err)
            why = f"{type(root).__name__}: {_first_line(root)}" if not isinstance(root, StopIteration) else "it is empty"
        else:
            why = describe(err)[1]
        raise UserError(f"{self.flag} {self.path}: cannot read it ({why})") from None


def check_jsonl(flag: str, path) -> None:
    """A .jsonl input that is empty or has a broken line fails with the line number, before a library parses it."""
    from pathlib import Path

    path = Path(str(path)) if path is not None else None
    if path is None or path.suffix != ".jsonl" or not path.is_file():
        return
    empty = True
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            empty = False
            try:
                json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{flag} {path}: line {number} is not valid JSON ({err.msg}); "
                                "write one JSON object per line") from None
    if empty:
        raise UserError(f"{flag} {path}: the file is empty")
