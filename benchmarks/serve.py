"""Serving throughput and latency: `genforge serve` under 1, 4, 16 and 64 concurrent streaming clients.

    python benchmarks/serve.py [--run RUN] [--seconds 20] [--max-tokens 64] [--clients 1 4 16 64]
                               [--rounds 6 --round-seconds 5 --round-clients 1 16] [--paired 200]
                               [--engine process thread]

Without --run, a `small`-preset character GPT is trained for --train-seconds on tiny Shakespeare
($GENFORGE_DATASETS/tinyshakespeare/input.txt, else a built-in text) so the text is not noise;
speed does not depend on the weights. The server runs as a subprocess (`genforge serve`); the
clients run here, on the same machine (they share its CPU with the server). Each client loops:
one streaming completion of --max-tokens tokens, then the next, for --seconds per level.
Reported per level: aggregate generated tokens/s, per-request latency p50/p99, time to first
token p50/p99, and the ratio of aggregate throughput to the 1-client rate. As a reference, the
same model's batch-1 sampling speed in-process (no HTTP; `genforge sample`'s path, 1 thread and the
server's thread count) is measured first, over requests of the same length.

--rounds N then alternates, N times in the same invocation, short measurements (--round-seconds each) of
in-process batch-1 sampling (in the main thread, and in a worker thread as the engine runs it) and of
the server under --round-clients streaming clients, so each "HTTP / in-process" ratio compares rates
measured seconds apart on a host whose speed drifts by minutes; it prints each round's ratios and their
median, min and max.

--paired N alternates single requests, N pairs of (one in-process batch-1 request in the main thread, one
streaming HTTP request of the same prompt, seed and length): each pair's ratio compares two requests a
fraction of a second apart, which is what holds on a host whose speed swings within seconds. Printed: the
median (and quartiles) of the per-pair ratios, the ratio of the pooled rates, and the ratio of the fastest
tenth of each (the rates when nothing else on the host interferes).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))] if xs else float("nan")


def train_small(out: Path, seconds: float) -> Path:
    from genforge.families import gpt
    data = Path(os.environ.get("GENFORGE_DATASETS", "../shared/datasets")) / "tinyshakespeare" / "input.txt"
    if not data.exists():
        data = out.parent / "corpus.txt"
        data.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 2000)
    run, _ = gpt.train(preset="small", overrides={"data": {"path": str(data)},
                                                  "train": {"max_seconds": seconds, "samples": False}},
                       out=out, progress=False)
    return run.path


def direct_speed(run: Path, tokens: int, requests: int, threads: int) -> float:
    """Batch-1 sampling in-process, as `genforge sample` runs it (GPTPipeline.stream), no server: `requests`
    generations of `tokens` tokens each (what one streaming client asks for), with `threads` torch threads."""
    import genforge
    import torch
    torch.set_num_threads(threads)
    pipe = genforge.load(run, device="cpu")
    for _ in pipe.stream("ROMEO:", max_new_tokens=8, seed=0):  # warm-up
        pass
    t0 = time.perf_counter()
    for i in range(requests):
        for _ in pipe.stream("ROMEO:", max_new_tokens=tokens, seed=i, temperature=0.8, top_k=None):
            pass
    return requests * tokens / (time.perf_counter() - t0)


def timed_rate(pipe, tokens: int, seconds: float, in_thread: bool) -> float:
    """Batch-1 sampling for `seconds` (whole requests of `tokens` tokens), in this thread or a worker thread."""
    out = []

    def work():
        n, t0 = 0, time.perf_counter()
        while not n or time.perf_counter() - t0 < seconds:
            for _ in pipe.stream("ROMEO:", max_new_tokens=tokens, seed=n, temperature=0.8, top_k=None):
                pass
            n += 1
        out.append(n * tokens / (time.perf_counter() - t0))
    if in_thread:
        t = threading.Thread(target=work)
        t.start()
        t.join()
    else:
        work()
    return out[0]


def rounds(urls: dict[str, str], run: Path, args) -> None:
    """Alternate in-process sampling and HTTP clients (each server in turn: --engine process thread), `args.rounds`
    times; print each round and a summary per server."""
    import genforge
    import torch
    torch.set_num_threads(args.threads or 1)  # the server's threads
    pipe = genforge.load(run, device="cpu")
    timed_rate(pipe, 8, 0.5, False)  # warm-up
    print(f"\n{args.rounds} alternating rounds, {args.round_seconds:g} s per measurement "
          f"(in-process main thread, worker thread, then {', '.join(map(str, args.round_clients))} client(s)):")
    one, many = args.round_clients[0], args.round_clients[-1]
    head = f"| round | engine | in-process main / worker | {one} client | {one} client / main | / worker |"
    if many != one:
        head += f" {many} clients | {many} / {one} | TTFT p99 at {many} (ms) |"
    print(head + "\n|" + " ---: |" * (head.count("|") - 1))
    ratios = {e: {"main": [], "worker": [], "scale": [], "ttft": []} for e in urls}
    for r in range(args.rounds):
        main_rate = timed_rate(pipe, args.max_tokens, args.round_seconds, False)
        worker_rate = timed_rate(pipe, args.max_tokens, args.round_seconds, True)
        for engine, url in urls.items():
            lv = {c: asyncio.run(level(url, c, args.round_seconds, args.max_tokens)) for c in args.round_clients}
            base, rs = lv[one]["tokens_per_s"], ratios[engine]
            rs["main"].append(base / main_rate)
            rs["worker"].append(base / worker_rate)
            line = (f"| {r + 1} | {engine} | {main_rate:,.0f} / {worker_rate:,.0f} | {base:,.0f} | "
                    f"{base / main_rate:.0%} | {base / worker_rate:.0%} |")
            if many != one:
                rs["scale"].append(lv[many]["tokens_per_s"] / base)
                rs["ttft"].append(lv[many]["ttft_p99"] * 1000)
                line += f" {lv[many]['tokens_per_s']:,.0f} | {rs['scale'][-1]:.1f}x | {rs['ttft'][-1]:.0f} |"
            print(line, flush=True)
    names = {"main": f"{one} client / in-process main thread", "worker": f"{one} client / in-process worker thread",
             "scale": f"{many} clients / {one} client", "ttft": f"TTFT p99 at {many} clients (ms)"}
    for engine, rs in ratios.items():
        for key, xs in rs.items():
            if xs:
                fmt = (lambda x: f"{x:.0f}") if key == "ttft" else (lambda x: f"{x:.2f}")
                print(f"--engine {engine}: {names[key]}: median {fmt(statistics.median(xs))}, min {fmt(min(xs))}, "
                      f"max {fmt(max(xs))}")


def paired(url: str, run: Path, args) -> None:
    """N pairs of one in-process request and one HTTP request, alternating; per-pair ratios of their rates."""
    import genforge
    import torch
    torch.set_num_threads(args.threads or 1)  # the server's threads
    pipe = genforge.load(run, device="cpu")
    timed_rate(pipe, 8, 0.5, False)  # warm-up

    async def one_http(http, seed):
        body = {"model": "bench", "prompt": "ROMEO:", "max_tokens": args.max_tokens, "stream": True,
                "temperature": 0.8, "seed": seed}
        t0 = time.perf_counter()
        async with http.stream("POST", "/v1/completions", json=body) as r:
            async for _ in r.aiter_lines():
                pass
        return time.perf_counter() - t0

    async def run_pairs():
        local, remote = [], []
        async with httpx.AsyncClient(base_url=url, timeout=300) as http:
            await one_http(http, 0)
            for i in range(args.paired):
                t0 = time.perf_counter()
                for _ in pipe.stream("ROMEO:", max_new_tokens=args.max_tokens, seed=i, temperature=0.8, top_k=None):
                    pass
                local.append(time.perf_counter() - t0)
                remote.append(await one_http(http, i))
        return local, remote
    local, remote = asyncio.run(run_pairs())
    ratios = sorted(a / b for a, b in zip(local, remote))  # HTTP rate / in-process rate, pair by pair
    q = statistics.quantiles(ratios, n=4)
    tenth = max(1, len(local) // 10)
    fast = sum(sorted(local)[:tenth]) / sum(sorted(remote)[:tenth])
    print(f"\n{args.paired} pairs of {args.max_tokens}-token requests (in-process main thread, then one HTTP stream):")
    print(f"in-process {args.max_tokens * len(local) / sum(local):,.0f} tokens/s, HTTP "
          f"{args.max_tokens * len(remote) / sum(remote):,.0f} tokens/s")
    print(f"HTTP / in-process per pair: median {statistics.median(ratios):.0%} (quartiles {q[0]:.0%}-{q[2]:.0%}); "
          f"pooled {sum(local) / sum(remote):.0%}; fastest tenth of each {fast:.0%}")


async def level(url: str, clients: int, seconds: float, max_tokens: int) -> dict:
    latencies, ttfts, tokens = [], [], 0
    errors = 0

    async def client(i: int, http: httpx.AsyncClient):
        nonlocal tokens, errors
        n = 0
        while time.monotonic() < deadline:
            n += 1
            body = {"model": "bench", "prompt": "ROMEO:", "max_tokens": max_tokens, "stream": True,
                    "temperature": 0.8, "seed": i * 100_000 + n,
                    "stream_options": {"include_usage": True}}
            t0, first, got = time.monotonic(), None, 0
            async with http.stream("POST", "/v1/completions", json=body) as r:
                if r.status_code != 200:
                    errors += 1
                    await r.aread()
                    continue
                async for line in r.aiter_lines():
                    if not line.startswith("data: {"):
                        continue
                    if first is None and '"text":""' not in line:  # parse only what is needed: the client
                        first = time.monotonic() - t0                # shares the CPU with the server
                    if '"usage"' in line:  # the last chunk: real token counts
                        got = json.loads(line[6:])["usage"]["completion_tokens"]
            latencies.append(time.monotonic() - t0)
            ttfts.append(first if first is not None else float("nan"))
            tokens += got

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        t_start = time.monotonic()
        deadline = t_start + seconds
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        wall = time.monotonic() - t_start
    return {"clients": clients, "requests": len(latencies), "errors": errors, "tokens": tokens,
            "tokens_per_s": tokens / wall, "latency_p50": percentile(latencies, 50),
            "latency_p99": percentile(latencies, 99), "ttft_p50": percentile(ttfts, 50),
            "ttft_p99": percentile(ttfts, 99)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="a trained GPT run (default: train the small preset briefly)")
    ap.add_argument("--train-seconds", type=float, default=60)
    ap.add_argument("--seconds", type=float, default=20, help="seconds per concurrency level")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads in the server (0 = torch's default)")
    ap.add_argument("--rounds", type=int, default=0, help="alternating in-process / HTTP rounds after the levels")
    ap.add_argument("--round-seconds", type=float, default=5, help="seconds per measurement in a round")
    ap.add_argument("--stream-interval", type=float, help="the server's --stream-interval (default: its own)")
    ap.add_argument("--paired", type=int, default=0, help="alternating single-request pairs after the rounds")
    ap.add_argument("--engine", nargs="+", choices=["process", "thread"], default=["process"],
                    help="the server's --engine; several: one server each, measured in turn in every round (the "
                    "levels and --paired use the first)")
    ap.add_argument("--round-clients", type=int, nargs="+", default=[1, 16], help="client counts in each round")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="genforge-serve-bench-"))
    run = Path(args.run) if args.run else train_small(tmp / "small", args.train_seconds)
    print(f"model: {run}", flush=True)
    import torch
    threads = args.threads or torch.get_num_threads()
    direct = {t: direct_speed(run, args.max_tokens, 20, t) for t in sorted({1, threads})}
    print("in-process batch-1 sampling (genforge sample's path), " + "; ".join(
        f"{t} thread{'s' if t > 1 else ''}: {r:.0f} tokens/s" for t, r in direct.items()), flush=True)

    urls, servers = {}, []
    try:
        for engine in args.engine:  # one server per engine, all started before anything is measured
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            urls[engine] = f"http://127.0.0.1:{port}"
            servers.append(subprocess.Popen(
                [sys.executable, "-m", "genforge", "serve", f"bench={run}", "--port", str(port), "--max-batch",
                 str(args.max_batch), "--device", "cpu", "--engine", engine]
                + (["--threads", str(args.threads)] if args.threads else [])
                + (["--stream-interval", str(args.stream_interval)] if args.stream_interval is not None else []),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 120
        for url, server in zip(urls.values(), servers):
            while True:
                try:
                    if httpx.get(url + "/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("genforge serve did not start")
                time.sleep(0.2)
            asyncio.run(level(url, 2, 3, args.max_tokens))  # warm-up
        url = urls[args.engine[0]]
        rows = []
        for c in args.clients:
            row = asyncio.run(level(url, c, args.seconds, args.max_tokens))
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.rounds:
            rounds(urls, run, args)
        if args.paired:
            paired(url, run, args)
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
    base = rows[0]["tokens_per_s"]
    best = max(direct.values())
    print(f"\none streaming client: {base:.0f} tokens/s = {base / best:.0%} of the best in-process batch-1 rate "
          f"({best:.0f})")
    print("\n| clients | requests | errors | tokens/s | x 1 client | latency p50 / p99 (s) | TTFT p50 / p99 (ms) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['tokens_per_s']:.0f} | "
              f"{r['tokens_per_s'] / base:.1f}x | {r['latency_p50']:.2f} / {r['latency_p99']:.2f} | "
              f"{r['ttft_p50'] * 1000:.0f} / {r['ttft_p99'] * 1000:.0f} |")


if __name__ == "__main__":
    main()
