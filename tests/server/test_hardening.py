"""What a hostile client or a careless operator meets: bounded CORS state, 400s naming the parameter
instead of 500s, a server that stops when its models cannot load, slow clients cut off, keys that can match.
"""
import json
import os
import random
import shutil
import socket
import string
import subprocess
import sys
import time

import httpx
import pytest
import uvicorn
from pydantic import ValidationError

from genforge.server import Settings, create_app
from genforge.server.app import CORS
from genforge.server.limits import uvicorn_config

from .conftest import FakeGAN, free_port
from .test_wire import assert_error, post

ORIGIN = "http://example.test"


def cors_layer(app):
    layer = app.middleware_stack
    while not isinstance(layer, CORS):
        layer = layer.app
    return layer


def preflight(server, asked: str):
    return httpx.options(server.url + "/v1/chat/completions", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": asked})


def test_cors_preflights_with_random_header_names_leave_no_state(server):
    baseline = preflight(server, "authorization, x-stainless-lang")
    assert baseline.status_code == 200 and "x-stainless-lang" in baseline.headers["access-control-allow-headers"]
    cors = cors_layer(server.app)
    before = (list(cors.allow_headers), dict(cors.preflight_headers))
    rng = random.Random(0)
    for i in range(30):
        names = ["x-stainless-" + "".join(rng.choices(string.ascii_lowercase, k=12)) for _ in range(600)]
        r = preflight(server, ", ".join(names))
        assert r.status_code == 400 and len(r.content) < 200 and sum(len(v) for v in r.headers.values()) < 2000
        few = ", ".join(names[:20])  # a reasonable preflight: the names asked for are echoed, once
        r = preflight(server, few)
        assert r.status_code == 200 and all(n in r.headers["access-control-allow-headers"] for n in names[:20])
    assert (list(cors.allow_headers), dict(cors.preflight_headers)) == before
    again = preflight(server, "authorization, x-stainless-lang")
    assert again.status_code == 200 and dict(again.headers).keys() == dict(baseline.headers).keys()
    assert again.headers["access-control-allow-headers"] == baseline.headers["access-control-allow-headers"]
    assert preflight(server, "x-not-allowed").status_code == 400


@pytest.mark.parametrize("part", [{"type": "text"}, {"type": "text", "text": None}, {"type": "text", "text": 5},
                                  {"type": "text", "text": ["a"]}, {"type": "text", "text": {"x": 1}}])
def test_chat_text_part_without_a_string_is_400_naming_it(server, part):
    body = {"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}]}
    err = assert_error(post(server, "/v1/chat/completions", body), 400, param="messages.0.content.1.text")
    assert "string" in err["message"]


@pytest.mark.parametrize("field", ["label", "prompt"])
@pytest.mark.parametrize("value", ["²", "5" * 5000, "-" + "9" * 30, "٣"])
def test_gan_class_that_is_no_small_ascii_number_is_400(server, field, value):
    err = assert_error(post(server, "/v1/images/generations", {"model": "digits", field: value}), 400, param=field)
    assert len(err["message"]) < 1200


def test_gan_label_digits_still_work(server):
    r = post(server, "/v1/images/generations", {"model": "digits", "label": " 7 ", "seed": 1})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("body,param,words", [
    ({"model": "tiny", "prompt": "x", "max_tokens": True}, "max_tokens", "integer"),
    ({"model": "tiny", "prompt": "x", "n": 1.0}, "n", "integer"),
    ({"model": "tiny", "prompt": "x", "temperature": float("nan")}, "temperature", "finite"),
    ({"model": "tiny", "prompt": "x", "top_p": float("inf")}, "top_p", "finite"),
])
def test_numbers_are_strict_and_finite(server, body, param, words):
    r = httpx.post(server.url + "/v1/completions", headers={**server.auth(), "content-type": "application/json"},
                   content=json.dumps(body))  # json.dumps writes NaN / Infinity as Python's json reads them
    err = assert_error(r, 400, param=param)
    assert words in err["message"] and "<= 2" not in err["message"]


def test_malformed_json_names_no_parameter(server):
    r = httpx.post(server.url + "/v1/completions", headers={**server.auth(), "content-type": "application/json"},
                   content=b'{"model": "tiny", "prompt": "x",, }')
    err = assert_error(r, 400)
    assert err["param"] is None and "not valid JSON" in err["message"] and "at character" in err["message"]


def test_prompt_error_is_not_doubled(server):
    err = assert_error(post(server, "/v1/completions", {"model": "tiny", "prompt": "你"}), 400, param="prompt")
    assert err["message"].startswith("prompt: character") and "prompt: prompt:" not in err["message"]
    body = {"model": "tiny", "messages": [{"role": "user", "content": "你"}]}
    err = assert_error(post(server, "/v1/chat/completions", body), 400, param="messages")
    assert err["message"].startswith("messages: character") and "prompt:" not in err["message"]


@pytest.mark.parametrize("key", ["", "  ", "clé", " key", "key\n"])
def test_api_keys_that_can_never_match_are_refused(key):
    with pytest.raises(ValidationError, match="API key"):
        Settings(api_key=key)


def test_serve_refuses_an_empty_api_key_and_an_empty_model_name(tiny_run, capsys):
    from genforge.cli import main
    assert main(["serve", str(tiny_run), "--api-key", "", "--port", "0"]) == 2
    assert "API key is empty" in capsys.readouterr().err
    assert main(["serve", f"={tiny_run}", "--port", "0"]) == 2
    assert "needs a model name" in capsys.readouterr().err


def test_serve_exits_nonzero_with_the_reason_when_a_model_fails_to_load(tiny_run, tmp_path):
    run = tmp_path / "broken"
    shutil.copytree(tiny_run, run)
    for name in ("best", "last"):
        ckpt = run / "checkpoints" / f"{name}.safetensors"
        data = ckpt.read_bytes()
        header = 8 + int.from_bytes(data[:8], "little")
        ckpt.write_bytes(data[:header + 100])  # the header is intact, the weights are cut off
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "genforge", "serve", str(run), "--port", str(free_port()),
                          "--device", "cpu"], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2, out.stderr
    assert "genforge: error: genforge serve stopped: loading model 'broken' failed" in out.stderr
    assert "truncated" in out.stderr and "Traceback" not in out.stderr
    assert time.monotonic() - t0 < 60


def test_serve_refuses_an_unknown_device_before_listening(tiny_run, capsys):
    from genforge.cli import main
    assert main(["serve", str(tiny_run), "--device", "tpu", "--port", "0"]) == 2
    assert "device 'tpu'" in capsys.readouterr().err


@pytest.fixture
def slow_limits_server():
    settings = Settings(port=free_port(), read_timeout=0.5)
    app = create_app({"faces": FakeGAN(8, 1)}, settings)
    server = uvicorn.Server(uvicorn_config(app, settings, log_level="warning"))
    import threading
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield settings
    server.should_exit = True
    thread.join(timeout=10)


def closed_within(sock, seconds) -> bytes:
    """What the server sent before it closed the connection, failing if it is still open after `seconds`."""
    sock.settimeout(seconds)
    got = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return got
        got += chunk


def test_slow_clients_are_cut_off(slow_limits_server):
    port = slow_limits_server.port
    with socket.create_connection(("127.0.0.1", port)) as s:  # headers that never finish
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        closed_within(s, 5)
    with socket.create_connection(("127.0.0.1", port)) as s:  # a silent client
        closed_within(s, 5)
    with socket.create_connection(("127.0.0.1", port)) as s:  # a body that never finishes
        s.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"model\":")
        answer = closed_within(s, 5)
        assert b" 408 " in answer.split(b"\r\n")[0] and b'"request_timeout"' in answer
    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200  # the server is fine
