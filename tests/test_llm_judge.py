"""LLM-as-judge: local one-forward-pass verdict logits (batched, left padded) and an OpenAI-compatible
endpoint served by a real HTTP server on loopback (retries, errors, API key from an env var)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from sppo_hub.judges import JudgeConfig, load_judge
from sppo_hub.judges.llm_judge import LLMJudge
from sppo_hub.core.preference import pairwise_probabilities

PROMPTS = ["What is the capital of France?", "hi"]
RESPONSES = [["Paris.", "The capital of France is Paris, a large city.", "Rome"], ["Hello! How can I help?", "no"]]


@pytest.fixture(scope="module")
def local_judge(sharp_model_dir):
    return LLMJudge(str(sharp_model_dir), batch_size=8, show_progress=False)


def test_local_tables_are_verdict_log_odds(local_judge):
    import torch

    tables = local_judge.pairwise_tables(PROMPTS, RESPONSES)
    assert [t.shape for t in tables] == [(3, 3), (2, 2)]
    assert local_judge.output_kind == "logits" and all(np.all(np.diag(t) == 0) for t in tables)
    # one pair by hand, unpadded: log p(A) - log p(B) at the answer position
    tok, model = local_judge.tokenizer, local_judge.model
    ids = tok(tok.apply_chat_template(local_judge.messages(PROMPTS[0], RESPONSES[0][1], RESPONSES[0][2]),
                                      add_generation_prompt=True, tokenize=False),
              add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, -1], -1)
    a, b = (torch.logsumexp(logprobs[v], 0).item() for v in local_judge.verdict_ids)
    assert tables[0][1, 2] == pytest.approx(a - b, abs=1e-4)
    assert tables[0][1, 2] != pytest.approx(tables[0][2, 1], abs=1e-6)  # the orders are two different readings
    P = pairwise_probabilities(tables[0], kind="logits")
    assert np.allclose(P + P.T, 1.0)


def test_batched_and_prefix_cached_equal_one_at_a_time(local_judge):
    """Left-padded batches and the shared-prefix KV cache give what one unpadded pass per pair gives."""
    cached = local_judge.pairwise_tables(PROMPTS, RESPONSES)
    local_judge.share_prefix = False
    try:
        batched = local_judge.pairwise_tables(PROMPTS, RESPONSES)
        local_judge.batch_size = 1
        single = local_judge.pairwise_tables(PROMPTS, RESPONSES)
    finally:
        local_judge.batch_size, local_judge.share_prefix = 8, True
    for x, y, z in zip(cached, batched, single):
        np.testing.assert_allclose(x, z, atol=1e-4)
        np.testing.assert_allclose(y, z, atol=1e-4)


def test_long_responses_are_truncated_with_one_warning(sharp_model_dir):
    judge = LLMJudge(str(sharp_model_dir), max_length=200, show_progress=False)
    long = "Paris is the capital of France. " * 40
    with pytest.warns(UserWarning, match="truncated") as caught:
        tables = judge.pairwise_tables(PROMPTS[:1], [[long, long + "!", "short"]])
    assert len([w for w in caught if "truncated" in str(w.message)]) == 1
    assert np.isfinite(tables[0]).all()
    assert len(judge._encode_local(PROMPTS[0], long, long)) <= 200  # the judge input fits its window
    assert len(judge._encode_local(long, long, long)) <= 200  # a long prompt is cut too
    judge.max_length = 20
    with pytest.raises(ValueError, match="judge.max_length: 20 tokens cannot hold the judge template"):
        judge.pairwise_tables(PROMPTS[:1], [["a", "b"]])


def test_load_judge_builds_it_from_config(sharp_model_dir):
    judge = load_judge(JudgeConfig(type="llm", model=str(sharp_model_dir), batch_size=4))
    assert isinstance(judge, LLMJudge) and judge.batch_size == 4
    with pytest.raises(ValueError, match="judge.model"):
        LLMJudge(None)


class _Endpoint(BaseHTTPRequestHandler):
    """/v1/chat/completions with logprobs: 'A' is favoured when response A is the longer one."""

    fail_first = 0
    requests: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.requests.append((self.headers.get("Authorization"), body))
        if cls.fail_first > 0:
            cls.fail_first -= 1
            self._send(503, {"error": {"message": "overloaded"}}, {"retry-after-ms": "10"})
            return
        if body["model"] == "no-such-model":
            self._send(404, {"error": {"message": "model not found"}})
            return
        text = body["messages"][0]["content"]
        a = text.split("[Response A]\n")[1].split("\n\n[Response B]")[0]
        b = text.split("[Response B]\n")[1].split("\n\nAnswer")[0]
        la, lb = (-0.2, -1.8) if len(a) > len(b) else (-1.8, -0.2)
        top = [{"token": "A", "logprob": la, "bytes": None}, {"token": " B", "logprob": lb, "bytes": None}]
        self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "length",
                                      "message": {"role": "assistant", "content": "A"},
                                      "logprobs": {"content": [{"token": "A", "logprob": la, "bytes": None,
                                                                "top_logprobs": top}]}}]})

    def _send(self, code, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    _Endpoint.requests, _Endpoint.fail_first = [], 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_endpoint_judge_reads_verdict_logprobs_with_retries(endpoint, monkeypatch):
    monkeypatch.setenv("SPPO_TEST_JUDGE_KEY", "sk-test-secret")
    _Endpoint.fail_first = 2  # the first two requests get 503: the openai client retries them (Retry-After)
    judge = LLMJudge("judge-model", base_url=endpoint, api_key_env="SPPO_TEST_JUDGE_KEY", batch_size=1,
                     show_progress=False)
    assert judge._client.max_retries == 5 and judge._client.timeout == 60.0
    [table] = judge.pairwise_tables(PROMPTS[:1], [["short", "a much longer answer"]])
    assert table[1, 0] == pytest.approx(1.6) and table[0, 1] == pytest.approx(-1.6)
    assert len(_Endpoint.requests) == 4
    auth, body = _Endpoint.requests[-1]
    assert auth == "Bearer sk-test-secret" and body["max_tokens"] == 1 and body["logprobs"] is True
    assert body["model"] == "judge-model"
    # a refusal (404: unknown model) is not retried and names the endpoint
    refusing = LLMJudge("no-such-model", base_url=endpoint, batch_size=1, show_progress=False)
    n = len(_Endpoint.requests)
    with pytest.raises(RuntimeError, match="refused the request"):
        refusing.pairwise_tables(PROMPTS[:1], [["a", "b"]])
    assert len(_Endpoint.requests) - n == 2  # one per ordered pair, none retried
    # the 503s are retried, then give up with a clear error
    _Endpoint.fail_first = 10
    flaky = LLMJudge("judge-model", base_url=endpoint, max_retries=1, batch_size=1, show_progress=False)
    with pytest.raises(RuntimeError, match="failed 2 times"):
        flaky.pairwise_tables(PROMPTS[:1], [["a", "b"]])


def test_unreachable_endpoint_fails_clearly_after_retries(monkeypatch):
    judge = LLMJudge("m", base_url="http://127.0.0.1:9/v1", max_retries=2, timeout=2, show_progress=False)
    with pytest.raises(RuntimeError, match=r"127\.0\.0\.1:9/v1 failed 3 times .*server is running"):
        judge.pairwise_tables(["p"], [["a", "b"]])
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR is not set"):
        LLMJudge("m", base_url="http://127.0.0.1:9/v1", api_key_env="NO_SUCH_KEY_VAR")
