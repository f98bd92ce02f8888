"""Raw HTTP checks: SSE framing and [DONE], the error shape for every failure, auth, CORS, body limit."""
import json

import httpx
import pytest

from .conftest import KEY


def post(server, path, body, **kw):
    return httpx.post(server.url + path, headers={**server.auth(), **kw.pop("headers", {})}, json=body, **kw)


def assert_error(r, status, param=None, code=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


def test_sse_framing_and_done(server):
    r = post(server, "/v1/completions", {"model": "tiny", "prompt": "Sp", "max_tokens": 6, "stream": True,
                                         "stream_options": {"include_usage": True}, "n": 2})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.endswith("data: [DONE]\n\n")
    events = r.text.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    finals = [ch for c in chunks for ch in c["choices"] if ch["finish_reason"]]
    assert sorted(ch["index"] for ch in finals) == [0, 1]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12


def test_chat_stream_framing(server):
    r = post(server, "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                                              "max_completion_tokens": 4, "stream": True})
    events = [e for e in r.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop")


@pytest.mark.parametrize("body, param", [
    ({"model": "tiny", "prompt": "x", "temperature": 3}, "temperature"),
    ({"model": "tiny", "prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"model": "tiny", "prompt": "x", "max_tokens": 10**6}, "max_tokens"),
    ({"model": "tiny", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": "tiny", "prompt": "x", "top_p": 0}, "top_p"),
    ({"model": "tiny", "prompt": "x", "n": 0}, "n"),
    ({"model": "tiny", "prompt": "x", "presence_penalty": 1}, "presence_penalty"),
    ({"model": "tiny", "prompt": "x", "logit_bias": {"1": 5}}, "logit_bias"),
    ({"model": "tiny", "prompt": "x", "best_of": 3}, "best_of"),
    ({"model": "tiny", "prompt": "x", "echo": True, "logprobs": 1}, "echo"),
    ({"model": "tiny", "prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
    ({"model": "tiny", "prompt": "x", "frobnicate": 1}, "frobnicate"),
    ({"model": "tiny", "prompt": [10**6]}, "prompt"),
    ({"model": "tiny", "prompt": "\u4e2d"}, "prompt"),
    ({"model": "tiny"}, "prompt"),
])
def test_invalid_completion_params_are_400_naming_the_param(server, body, param):
    assert_error(post(server, "/v1/completions", body), 400, param=param)


@pytest.mark.parametrize("body, param", [
    ({"model": "tiny", "messages": []}, "messages"),
    ({"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools"),
    ({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages.0.content"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x" * 100}]}, "messages"),
])
def test_invalid_chat_params(server, body, param):
    assert_error(post(server, "/v1/chat/completions", body), 400, param=param)


def test_error_shapes(server):
    assert_error(post(server, "/v1/completions", {"model": "nope", "prompt": "x"}), 404, "model", "model_not_found")
    assert_error(post(server, "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user",
                                                                                       "content": "x" * 70}]}),
                 400, "messages", "context_length_exceeded")
    assert_error(httpx.post(server.url + "/v1/completions", headers={**server.auth(),
                 "content-type": "application/json"}, content=b"{not json"), 400)
    assert_error(httpx.post(server.url + "/v1/completions", headers=server.auth(), json=[1, 2]), 400)
    assert_error(httpx.get(server.url + "/v1/nothing", headers=server.auth()), 404)
    assert_error(httpx.get(server.url + "/v1/completions", headers=server.auth()), 405)
    assert_error(post(server, "/v1/images/generations", {"model": "digits", "response_format": "url"}), 400,
                 "response_format")
    assert_error(post(server, "/v1/images/generations", {"model": "digits", "label": "eleven"}), 400, "label")
    assert_error(post(server, "/v1/images/generations", {"model": "t2i"}), 400, "prompt")
    assert_error(post(server, "/v1/images/generations", {"model": "digits", "n": 10_000}), 400, "n")
    assert_error(post(server, "/v1/classify", {"model": "tiny", "input": "x"}), 400, "model")
    assert_error(post(server, "/v1/classify", {"model": "sentiment", "input": []}), 400, "input")


def test_oversized_body_is_413(server):
    big = {"model": "tiny", "prompt": "x" * 2_000_000}
    assert_error(post(server, "/v1/completions", big), 413, code="body_too_large")

    def chunks():  # no content-length: counted while reading
        yield b'{"model": "tiny", "prompt": "'
        for _ in range(300):
            yield b"x" * 10_000
        yield b'"}'
    r = httpx.post(server.url + "/v1/completions", headers={**server.auth(), "content-type": "application/json"},
                   content=chunks())
    assert_error(r, 413)


def test_api_key(server):
    assert_error(httpx.get(server.url + "/v1/models"), 401, code="invalid_api_key")
    assert_error(httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer nope"}), 401)
    assert_error(httpx.get(server.url + "/metrics"), 401)
    assert httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(server.url + "/health").status_code == 200  # exempt
    assert httpx.get(server.url + "/").status_code == 200  # the playground page asks for the key itself


def test_cors_preflight_is_answered_before_auth(server):
    asked = "authorization, content-type, x-stainless-lang, x-stainless-retry-count, x-stainless-os"
    r = httpx.options(server.url + "/v1/chat/completions", headers={
        "Origin": "http://example.test", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": asked})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "http://example.test"
    allowed = r.headers["access-control-allow-headers"].lower()
    assert all(h.strip() in allowed for h in asked.split(","))
    r = httpx.get(server.url + "/v1/models", headers={"Origin": "http://example.test", **server.auth()})
    assert r.headers["access-control-allow-origin"] == "http://example.test"
    r = httpx.options(server.url + "/v1/models", headers={"Origin": "http://evil.test",
                                                          "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers


def test_metrics_text(server):
    post(server, "/v1/completions", {"model": "tiny", "prompt": "x", "max_tokens": 3})
    text = httpx.get(server.url + "/metrics", headers=server.auth()).text
    for name in ("genforge_requests_total", "genforge_requests_in_flight", "genforge_queue_depth",
                 "genforge_request_latency_seconds_bucket", "genforge_time_to_first_token_seconds_bucket",
                 "genforge_tokens_generated_total", "genforge_client_disconnects_total"):
        assert name in text, name
    assert server.metric("genforge_requests_total", route="/v1/completions", method="POST", status="200") >= 1
    assert server.metric("genforge_requests_total", route="/v1/completions", status="400") >= 1
