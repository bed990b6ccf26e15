"""Retrying Hub calls through a flaky Hub: 429 with Retry-After, 5xx, dropped connections, an outage.

huggingface_hub retries some requests itself (`utils.http_backoff`: the LFS batch, the LFS PUT of a file,
preupload, pagination, downloads; 5 retries, Retry-After respected), but not the others (`create_repo`,
`list_repo_refs`, `create_tag`, the commit POST, collections) and never the commit POST: it is not
idempotent. `HubRetry` is the layer above that it lacks (written here because huggingface_hub has no
public retry wrapper for a whole API call): it retries a call on the same transient failures that
huggingface_hub's own backoff retries on, with exponential backoff that waits at least what
Retry-After (or the `ratelimit` header) asks, within a bounded total wait, and reports every wait as one
line. A call that is not idempotent gives `recover`, asked before each retry whether the failed
attempt was applied after all (a commit whose reply was lost): then its result is used and nothing is
sent again. huggingface_hub's own retries inside a call are shown the same way (`library_waits`).
"""

from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

# The status codes huggingface_hub's http_backoff retries on (utils/_http.py _DEFAULT_RETRY_ON_STATUS_CODES).
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)
# httpx's transient transport failures (refused, reset, timed out, closed without an answer), by class name so
# this module does not import httpx; the same family huggingface_hub's http_backoff retries on.
TRANSIENT_ERRORS = ("TimeoutException", "NetworkError", "RemoteProtocolError", "ConnectionError")


class HubUnavailableError(RuntimeError):
    """The Hub kept failing past the retry budget: the message says what failed and how to go on."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long a flaky Hub is waited for before a stage fails (then `--resume` goes on where it stopped)."""

    max_total_wait_s: float = 300.0  # all waits of one call together
    base_wait_s: float = 1.0  # first wait; doubled after each failure
    max_wait_s: float = 30.0  # longest single wait, unless Retry-After asks for more (up to what is left)
    max_attempts: int = 12

    def __post_init__(self):
        if self.max_total_wait_s < 0 or self.base_wait_s <= 0 or self.max_wait_s <= 0 or self.max_attempts < 1:
            raise ValueError(f"{self}: waits must be positive and max_attempts at least 1.")


def transient(err: BaseException) -> tuple[bool, float | None, str]:
    """(retry?, seconds the server asked to wait or None, a short description) for a failed Hub call."""
    if type(err).__name__ == "LocalEntryNotFoundError" and err.__cause__ is not None:
        # hf_hub_download turns a failed HEAD (5xx, 429, refused) into "not in the local cache": judge the cause
        return transient(err.__cause__)
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        if status not in TRANSIENT_STATUS:
            return False, None, f"HTTP {status}"
        return True, asked_wait(getattr(response, "headers", {}) or {}), f"HTTP {status}"
    names = {cls.__name__ for cls in type(err).__mro__}
    if names & set(TRANSIENT_ERRORS) or isinstance(err, (ConnectionError, TimeoutError)):
        return True, None, type(err).__name__
    return False, None, type(err).__name__


def asked_wait(headers) -> float | None:
    """Seconds a 429/503 asks to wait: the IETF `ratelimit` header (as huggingface_hub parses it) or Retry-After."""
    from huggingface_hub.utils import parse_ratelimit_headers

    info = parse_ratelimit_headers(headers)
    if info is not None and info.remaining == 0:
        return float(info.reset_in_seconds)
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is not None and str(value).strip().isdigit():
        return float(str(value).strip())
    return None  # an HTTP-date Retry-After is not used (huggingface_hub ignores it too): plain backoff then


class HubRetry:
    """`retry.call("create_commit me/x", api.create_commit, ...)`: the call, retried through transient failures."""

    def __init__(self, policy: RetryPolicy | None = None, on_wait: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.policy = policy or RetryPolicy()
        self.on_wait = on_wait or (lambda line: None)
        self.sleep = sleep
        self.waits = 0  # every wait so far (this layer's), for tests and the summary

    def call(self, what: str, fn: Callable[..., Any], *args, recover: Callable[[], Any] | None = None, **kwargs):
        """`fn(*args, **kwargs)`, retried; `recover()` (if given) returns the result of an attempt that was applied
        although it failed, or None to send it again. huggingface_hub's own waits inside are reported too."""
        with library_waits(self.on_wait):
            return self._call(what, fn, args, kwargs, recover)

    def _call(self, what, fn, args, kwargs, recover):
        p, waited, wait = self.policy, 0.0, self.policy.base_wait_s
        for attempt in range(1, p.max_attempts + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - anything not transient is raised at once, unchanged
                retry, asked, why = transient(err)
                if not retry:
                    raise
                pause = max(wait, asked + 1.0 if asked is not None else 0.0)  # +1 s as huggingface_hub does
                pause = min(pause, max(p.max_wait_s, asked + 1.0 if asked is not None else 0.0))
                if attempt == p.max_attempts or waited + pause > p.max_total_wait_s:
                    raise HubUnavailableError(
                        f"{what}: the Hub still fails after {attempt} attempt(s) over {waited:.0f} s of waiting "
                        f"(last: {why}); nothing half-published is kept: rerun with --resume when the Hub answers "
                        "(publish.retry_max_wait_s waits longer).") from err
                self.on_wait(f"Hub: {what} failed ({why}); retrying in {pause:.1f} s "
                             f"(attempt {attempt + 1}/{p.max_attempts})")
                self.sleep(pause)
                self.waits += 1
                waited += pause
                wait = min(p.max_wait_s, wait * 2)
                if recover is not None:
                    done = self.call(f"{what} (checking whether it was applied)", recover)
                    if done is not None:
                        self.on_wait(f"Hub: {what} had been applied before its reply was lost; not sent again")
                        return done
        raise AssertionError("unreachable")  # pragma: no cover


_LIBRARY_FAILED = re.compile(r"^(?:HTTP Error (?P<status>\d+)|'(?P<err>.*)') thrown while requesting (?P<req>\S+ \S+)")
_LIBRARY_WAIT = re.compile(r"(?:Waiting|Retrying in) (?P<s>[\d.]+)s(?: before retry)? \[Retry (?P<n>\d+)/(?P<m>\d+)\]")


class _LibraryWaits(logging.Handler):
    """huggingface_hub's http_backoff logs 'HTTP Error 503 thrown while requesting PUT <url>' then 'Retrying in
    1s [Retry 1/5]': each pair becomes one line through `on_wait`."""

    def __init__(self, on_wait: Callable[[str], None]):
        super().__init__(logging.WARNING)
        self.on_wait, self.last = on_wait, "a request"

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if m := _LIBRARY_FAILED.match(text):
            method, url = m["req"].split(" ", 1)
            path = re.sub(r"^https?://[^/]+", "", url).split("?")[0]
            self.last = f"{method} {path[:80]} ({'HTTP ' + m['status'] if m['status'] else m['err'][:60]})"
        elif m := _LIBRARY_WAIT.search(text):
            self.on_wait(f"Hub: {self.last} failed; huggingface_hub retries in {float(m['s']):.1f} s "
                         f"(attempt {int(m['n']) + 1}/{int(m['m']) + 1})")


@contextmanager
def library_waits(on_wait: Callable[[str], None]):
    """Within the block, huggingface_hub's own backoff waits are shown through `on_wait` (one line each) and not
    through its logger, whatever the library log level (`quiet_libraries` sets ERROR)."""
    log = logging.getLogger("huggingface_hub.utils._http")
    if any(isinstance(h, _LibraryWaits) for h in log.handlers):  # nested: the outer block reports already
        yield
        return
    handler, saved = _LibraryWaits(on_wait), (log.level, log.propagate)
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]
