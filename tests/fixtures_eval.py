"""Evaluation fixtures: a small OpenAI-compatible chat-completions server on loopback.

It stands in for a judge model behind an endpoint (vLLM / OpenAI): the unmodified `openai` client and
alpaca_eval's own OpenAI decoder talk to it over HTTP. Behaviour is set per test through `.reply`,
`.fail_next` (answer HTTP 503 that many times) and `.requests` (what it received).
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class _Judge:
    def __init__(self):
        self.reply = "The answer is helpful. Rating: [[7]]"
        self.p_first_token = 0.7  # P("m") for alpaca_eval's logprob annotators
        self.fail_next = 0
        self.requests: list[dict] = []


def _handler(state: _Judge):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            state.requests.append(body)
            if state.fail_next > 0:
                state.fail_next -= 1
                self._send(503, {"error": {"message": "judge overloaded", "type": "server_error"}},
                           {"retry-after-ms": "10"})  # the openai client's retries wait this long
                return
            if body.get("logprobs"):
                p = state.p_first_token
                top = [{"token": "m", "logprob": math.log(p), "bytes": None},
                       {"token": "M", "logprob": math.log(1 - p), "bytes": None}]
                content = "m"
                logprobs = {"content": [{"token": "m", "logprob": math.log(p), "bytes": None, "top_logprobs": top}]}
            else:
                content, logprobs = state.reply, None
            self._send(200, {
                "id": "chatcmpl-local", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "judge"),
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })

        def _send(self, code: int, payload: dict, headers: dict | None = None):
            data = json.dumps(payload).encode()
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def judge_endpoint():
    """(base_url, state) of a running OpenAI-compatible judge server."""
    state = _Judge()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def alpaca_dir(shared_data_dir):
    return shared_data_dir / "alpaca_eval"


@pytest.fixture(scope="session")
def mt_bench_dir(shared_data_dir):
    return shared_data_dir / "mt_bench"
