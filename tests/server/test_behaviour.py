"""Loading (503), back-pressure (429 + Retry-After), wall-clock limits, client disconnects, the CLI."""
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from genforge.cli import main
from genforge.server.state import model_name, name_sources

from .conftest import FakeClassifier, LiveServer, free_port


def test_health_is_503_while_loading_then_200(tiny_run):
    gate = threading.Event()

    def slow_loader(path, device):
        assert gate.wait(30)
        import genforge
        return genforge.load(path, device=device)
    live = LiveServer({"tiny": str(tiny_run)}, loader=slow_loader, wait_ready=False)
    try:
        r = httpx.get(live.url + "/health")
        assert r.status_code == 503 and r.json()["error"]["code"] == "loading" and r.headers["retry-after"]
        r = httpx.post(live.url + "/v1/completions", json={"model": "tiny", "prompt": "x"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "loading"
        gate.set()
        deadline = time.monotonic() + 30
        while httpx.get(live.url + "/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert httpx.post(live.url + "/v1/completions", json={"model": "tiny", "prompt": "x"}).status_code == 200
    finally:
        live.stop()


def test_failed_load_is_reported_not_a_crash(tmp_path):
    live = LiveServer({"missing": str(tmp_path / "nothing")}, wait_ready=False)
    try:
        deadline = time.monotonic() + 30
        while live.state.loading:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = httpx.get(live.url + "/health")
        message = r.json()["error"]["message"]  # names the model, never a file path (/health needs no key)
        assert r.status_code == 503 and "'missing'" in message and "FileNotFoundError" in message
        assert str(tmp_path) not in message and "/" not in message
        assert live.state.load_detail and str(tmp_path / "nothing") in live.state.load_detail
        assert httpx.get(live.url + "/v1/models").status_code == 503
    finally:
        live.stop()


def wait_active(live, n, timeout=10):
    deadline = time.monotonic() + timeout
    while len(live.state.engines["tiny"].active) != n:
        assert time.monotonic() < deadline, "the engine did not pick up the request"
        time.sleep(0.01)


def stream_in_background(live, body):
    """Start a streaming request in a thread; returns (thread, result dict)."""
    out = {}

    def run():
        try:
            with httpx.stream("POST", live.url + "/v1/completions", json=body, timeout=60) as r:
                out["text"] = r.read().decode()
        except httpx.HTTPError as e:  # the server stops under it at the end of the test
            out["error"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_queue_full_and_queue_timeout_are_429_with_retry_after(tiny_run):
    # the queue timeout is long enough for the third request to arrive while the second waits, also on a loaded machine
    live = LiveServer({"tiny": str(tiny_run)}, max_batch=1, max_queue=1, queue_timeout=2.0, max_tokens_limit=10**6)
    try:
        t, out = stream_in_background(live, {"model": "tiny", "prompt": "a", "max_tokens": 10**6, "stream": True})
        wait_active(live, 1)
        waiter = {}
        w = threading.Thread(target=lambda: waiter.update(r=httpx.post(
            live.url + "/v1/completions", json={"model": "tiny", "prompt": "b"}, timeout=30)))
        w.start()
        deadline = time.monotonic() + 10
        while live.state.engines["tiny"].queue_depth != 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        full = httpx.post(live.url + "/v1/completions", json={"model": "tiny", "prompt": "c"})
        assert full.status_code == 429 and full.json()["error"]["code"] == "queue_full"
        assert full.headers["retry-after"] == "1"
        w.join(30)
        assert waiter["r"].status_code == 429 and waiter["r"].json()["error"]["code"] == "queue_timeout"
        assert waiter["r"].headers["retry-after"] == "1"
    finally:
        live.stop()
        t.join(10)


def test_wall_clock_limit_ends_requests(tiny_run):
    live = LiveServer({"tiny": str(tiny_run)}, request_timeout=0.3, max_tokens_limit=10**6)
    try:
        t0 = time.monotonic()
        r = httpx.post(live.url + "/v1/completions", json={"model": "tiny", "prompt": "a", "max_tokens": 10**6})
        assert r.status_code == 504 and r.json()["error"]["code"] == "request_timeout"
        assert time.monotonic() - t0 < 5
        r = httpx.post(live.url + "/v1/completions", json={"model": "tiny", "prompt": "a", "max_tokens": 10**6,
                                                           "stream": True})
        events = [e for e in r.text.split("\n\n") if e]
        assert events[-1] == "data: [DONE]" and '"code":"request_timeout"' in events[-2]
    finally:
        live.stop()


@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_stops_generation(server, stream):
    engine = server.state.engines["tiny"]
    route = "/v1/completions"
    before = server.metric("genforge_client_disconnects_total", route=route)
    tokens_before = engine.tokens_generated
    body = {"model": "tiny", "prompt": "a", "max_tokens": 100_000, "stream": stream}
    if stream:
        with httpx.stream("POST", server.url + route, json=body, headers=server.auth()) as r:
            lines = r.iter_lines()
            for _ in range(5):
                next(lines)
    else:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.url + route, json=body, headers=server.auth(), timeout=0.5)
    deadline = time.monotonic() + 10
    while server.metric("genforge_client_disconnects_total", route=route) < before + 1:
        assert time.monotonic() < deadline, "the disconnect was not noticed"
        time.sleep(0.05)
    wait_active(server, 0)
    generated = engine.tokens_generated - tokens_before
    time.sleep(0.3)
    assert engine.tokens_generated - tokens_before == generated, "generation went on after the client left"
    assert generated < 100_000
    assert server.metric("genforge_active_sequences", model="tiny") == 0


def test_model_names():
    assert model_name("runs/shakespeare") == "shakespeare"
    assert model_name("runs/shakespeare/") == "shakespeare"
    assert model_name("runs/x/checkpoints/best.safetensors") == "x"
    assert model_name("hf:/models/gpt2") == "gpt2"
    assert list(name_sources(["a/run1", "name=b/run1"])) == ["run1", "name"]
    with pytest.raises(ValueError, match="two models are named 'run1'"):
        name_sources(["a/run1", "b/run1"])
    assert list(name_sources([FakeClassifier()])) == ["classifier-0"]


def test_cli_serve(tiny_run, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["serve", str(tiny_run), "--port", "99999"]) == 2
    assert "--port" in capsys.readouterr().err
    env = {**os.environ, "GENFORGE_API_KEY": ""}
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "genforge", "serve", f"shake={tiny_run}", "--port", str(port),
                             "--api-key", "k"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "genforge serve did not come up"
            time.sleep(0.1)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/completions", headers={"Authorization": "Bearer k"},
                       json={"model": "shake", "prompt": "a", "max_tokens": 3})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
    finally:
        proc.terminate()
        proc.wait(20)
