"""Property-based: generated request bodies for every route never get a 500 or a traceback, and every
failure has the error shape {"error": {"message", "type", "param", "code"}}.

Bounded: a few dozen examples per route, small max_tokens, so the file runs in well under a minute.
"""
import json
import math

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

MODELS = ["tiny", "digits", "faces", "t2i", "sentiment", "nope"]
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12) | st.sampled_from(["", "²", "5" * 5000, "7", "a handwritten 7", "\x00", "你"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
small_counts = st.integers(-2, 4) | json_values  # never a long generation


def model_for(*names):
    """Mostly a model the route serves (so the body reaches the route's own checks), sometimes anything."""
    return st.sampled_from(names) | st.sampled_from(names) | st.sampled_from(MODELS) | json_values


sampling = {"temperature": json_values | st.floats(0, 2), "top_p": json_values | st.floats(0, 1),
            "top_k": small_counts, "n": small_counts, "stop": json_values, "seed": json_values,
            "stream": st.booleans() | json_values, "stream_options": json_values, "logit_bias": json_values,
            "presence_penalty": json_values, "frequency_penalty": json_values, "user": json_values,
            "unknown_field": json_values}
part = st.fixed_dictionaries({"type": st.sampled_from(["text", "text", "image_url"]) | json_values},
                             optional={"text": json_values})
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "user", "tool"])},
    optional={"content": st.lists(part, max_size=3) | st.lists(part | json_values, max_size=3) | json_values,
              "tool_calls": json_values, "name": json_values})

BASE = {  # a valid, quick request per route; examples change one to three of its fields
    "/v1/completions": {"model": "tiny", "prompt": "Sp", "max_tokens": 2},
    "/v1/chat/completions": {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    "/v1/images/generations": {"model": "digits", "n": 1},
    "/v1/classify": {"model": "sentiment", "input": "good film"},
}
SPECIAL = {"prompt": json_values | st.lists(st.integers(-5, 300), max_size=5), "max_tokens": small_counts,
           "max_completion_tokens": small_counts, "logprobs": small_counts, "top_logprobs": small_counts,
           "best_of": small_counts, "messages": st.lists(message, min_size=1, max_size=3),
           "size": st.sampled_from(["8x8", "16x16", "auto", "0x0"]), "label": json_values,
           "input": json_values | st.lists(st.text(max_size=20), max_size=3), **sampling}
FIELDS = {
    "/v1/completions": ["model", *["prompt"] * 5, "max_tokens", "logprobs", "echo", "suffix", "best_of", *sampling],
    "/v1/chat/completions": ["model", *["messages"] * 12, "max_tokens", "max_completion_tokens", "logprobs",
                             "top_logprobs", "tools", "tool_choice", "response_format", "parallel_tool_calls", *sampling],
    "/v1/images/generations": ["model", *["prompt", "label"] * 4, "n", "size", "response_format", "seed",
                               "output_format", "user", "unknown_field"],
    "/v1/classify": ["model", "input", "unknown_field"],
}


def bodies(path: str):
    """The route's valid body with one to three fields replaced (or removed) by generated values."""
    def field(name):
        value = SPECIAL.get(name, json_values) | json_values if name != "model" else model_for(BASE[path]["model"])
        return st.tuples(st.just(name), value | st.just(KeyError))

    def apply(changes):
        body = dict(BASE[path])
        for name, value in changes:
            body.pop(name, None) if value is KeyError else body.__setitem__(name, value)
        return body
    return st.lists(st.sampled_from(FIELDS[path]).flatmap(field), min_size=1, max_size=3).map(apply)


BODIES = {path: bodies(path) for path in BASE}


def check(r: httpx.Response):
    assert r.status_code != 500 and r.status_code < 600, r.text
    assert "Traceback" not in r.text
    if r.status_code >= 400:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}, err
        assert isinstance(err["message"], str) and err["message"] and len(err["message"]) < 5000
        assert err["param"] is None or isinstance(err["param"], str)
    elif r.headers.get("content-type", "").startswith("text/event-stream"):
        assert r.text.endswith("data: [DONE]\n\n")
        for event in r.text.split("\n\n")[:-2]:
            obj = json.loads(event.removeprefix("data: "))
            if "error" in obj:
                assert set(obj["error"]) == {"message", "type", "param", "code"}


def send(server, path: str, body) -> httpx.Response:
    data = json.dumps(body, allow_nan=True)  # NaN / Infinity as Python clients may send them
    return httpx.post(server.url + path, content=data, timeout=60,
                      headers={**server.auth(), "content-type": "application/json"})


@SETTINGS
@given(body=BODIES["/v1/completions"])
@example(body={"model": "tiny", "prompt": "x", "max_tokens": True, "temperature": float("nan")})
def test_completions_bodies(server, body):
    check(send(server, "/v1/completions", body))


@SETTINGS
@given(body=BODIES["/v1/chat/completions"])
@example(body={"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text"}]}]})  # once a 500
@example(body={"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]})
def test_chat_bodies(server, body):
    check(send(server, "/v1/chat/completions", body))


@SETTINGS
@given(body=BODIES["/v1/images/generations"])
@example(body={"model": "digits", "label": "²"})  # once a 500: "²".isdigit() but int("²") fails
@example(body={"model": "digits", "prompt": "5" * 5000})
def test_image_bodies(server, body):
    check(send(server, "/v1/images/generations", body))


@SETTINGS
@given(body=BODIES["/v1/classify"])
def test_classify_bodies(server, body):
    check(send(server, "/v1/classify", body))


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/v1/completions", "/v1/chat/completions", "/v1/images/generations", "/v1/classify"]),
       raw=st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()))
def test_any_body_bytes(server, path, raw):
    check(httpx.post(server.url + path, content=raw, timeout=60,
                     headers={**server.auth(), "content-type": "application/json"}))


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
       path=st.sampled_from(["/v1/models", "/v1/models/", "/health", "/metrics", "/v1/nothing", "/v1/models/tiny"])
       | st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="?#%"), max_size=20).map(
           lambda s: "/v1/models/" + s))
def test_any_method_and_path(server, method, path):
    r = httpx.request(method, server.url + path, headers=server.auth(), timeout=60)
    assert r.status_code != 500 and "Traceback" not in r.text
    if r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json"):
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert math.isfinite(r.elapsed.total_seconds())
