"""A bounded load test: 32 concurrent clients (streaming and not) for GENFORGE_LOAD_SECONDS (default 10 s);
every request must succeed, and the engine must have batched them."""
import asyncio
import json
import os
import time

import httpx
import pytest

SECONDS = float(os.environ.get("GENFORGE_LOAD_SECONDS", "10"))
CLIENTS = 32


@pytest.mark.load
def test_32_concurrent_clients_zero_errors(server):
    engine = server.state.engines["tiny"]
    steps0, tokens0 = engine.steps, engine.tokens_generated
    errors, done, ttfts = [], [], []

    async def client(i, http):
        n = 0
        while time.monotonic() < deadline:
            n += 1
            body = {"model": "tiny", "prompt": "First Citizen:"[: 1 + (i + n) % 14], "max_tokens": 16 + (i * 7 + n) % 17,
                    "seed": i * 1000 + n}
            t0 = time.monotonic()
            try:
                if (i + n) % 2:
                    async with http.stream("POST", "/v1/completions", json={**body, "stream": True}) as r:
                        if r.status_code != 200:
                            errors.append((r.status_code, (await r.aread())[:200]))
                            continue
                        text, last = "", None
                        async for line in r.aiter_lines():
                            if line.startswith("data: {"):
                                if not text:
                                    ttfts.append(time.monotonic() - t0)
                                chunk = json.loads(line[6:])
                                assert "error" not in chunk, line
                                text += chunk["choices"][0]["text"]
                            last = line or last
                        assert last == "data: [DONE]" and len(text) == body["max_tokens"], (last, text)
                else:
                    r = await http.post("/v1/completions", json=body)
                    if r.status_code != 200:
                        errors.append((r.status_code, r.text[:200]))
                        continue
                    assert r.json()["usage"]["completion_tokens"] == body["max_tokens"]
                done.append(time.monotonic() - t0)
            except Exception as e:  # noqa: BLE001 - any failure counts
                errors.append(repr(e))

    async def main():
        limits = httpx.Limits(max_connections=CLIENTS + 4)
        async with httpx.AsyncClient(base_url=server.url, headers=server.auth(), timeout=60, limits=limits) as http:
            await asyncio.gather(*(client(i, http) for i in range(CLIENTS)))

    deadline = time.monotonic() + SECONDS
    asyncio.run(main())
    assert errors == [], errors[:5]
    assert len(done) >= CLIENTS
    tokens, steps = engine.tokens_generated - tokens0, engine.steps - steps0
    # one request at a time gives ~1.04 tokens per step (a request's first token comes from its prefill). The
    # engine decodes as soon as anything waits: in its own process it is faster than this 1-layer model's HTTP
    # path can feed it (~1.8 rows per step seen; 2+ when the engine shared the server's GIL and lagged)
    assert tokens / max(steps, 1) > 1.5, f"{tokens} tokens in {steps} decode steps: requests were not batched"
    print(f"\nload: {len(done)} requests, {tokens} tokens in {SECONDS:.0f}s, {tokens / max(steps, 1):.1f} tokens/step, "
          f"median TTFT {sorted(ttfts)[len(ttfts) // 2] * 1000:.0f} ms")
