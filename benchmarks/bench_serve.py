"""Load test of `humanseg serve` on loopback: a fixed number of requests at 1, 4 and 16
concurrent clients, in one bounded run.

    .venv/bin/python benchmarks/bench_serve.py [--requests 160] [--concurrency 1 4 16]
        [--photos ../shared/data/eg1800/images] [--serve_args "--backend onnxruntime ..."]

A server process is started on a free 127.0.0.1 port (never another interface) with the packaged
model; each client keeps one HTTP connection and posts real photos (raw body, `output=mask`) in
turn. Per level: requests per second, p50 / p99 latency, errors (any non-200 answer or failed
request), and the server's resident memory before and after (VmRSS from /proc) plus its peak
(VmHWM). A level that runs past --level_timeout stops early and its unsent requests count as
errors. Figures depend on the machine's load; levels of one run are comparable.
"""

from __future__ import annotations

import argparse
import http.client
import shlex
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from humanseg.deploy.serve import running_server
from humanseg.io import list_images

DEFAULT_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "eg1800" / "images"


@dataclass(frozen=True)
class LevelResult:
    """One concurrency level: latencies of the successful requests and what went wrong."""

    clients: int
    seconds: float
    latencies: list[float]
    errors: int
    rss_before_mb: float
    rss_after_mb: float
    peak_mb: float


def memory_mb(pid: int, field: str) -> float:
    """A memory figure of process `pid` from /proc/PID/status (VmRSS, VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def client(base: str, bodies: list[bytes], jobs: list[int], deadline: float,
           lock: threading.Lock, latencies: list[float], errors: list[str]) -> None:
    """Post the photos of `jobs` one after another on one keep-alive connection."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    for index in jobs:
        if time.monotonic() > deadline:
            with lock:
                errors.append("not sent: level timeout")
            continue
        started = time.perf_counter()
        try:
            connection.request("POST", "/v1/segment?output=mask", bodies[index % len(bodies)],
                               {"Content-Type": "image/jpeg"})
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
            ok, response = False, error
        with lock:
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors.append(str(getattr(response, "status", response)))
    connection.close()


def run_level(base: str, pid: int, bodies: list[bytes], clients: int, requests: int,
              level_timeout: float) -> LevelResult:
    """`requests` requests spread over `clients` concurrent connections."""
    lock, latencies, errors = threading.Lock(), [], []
    rss_before = memory_mb(pid, "VmRSS")
    deadline = time.monotonic() + level_timeout
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(client, base, bodies, list(range(worker, requests, clients)),
                               deadline, lock, latencies, errors) for worker in range(clients)]
        for future in futures:
            future.result()  # a client that crashed is a failed benchmark, not a silent gap
    seconds = time.perf_counter() - started
    return LevelResult(clients, seconds, latencies, len(errors), rss_before,
                       memory_mb(pid, "VmRSS"), memory_mb(pid, "VmHWM"))


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=160, help="requests per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--num_photos", type=int, default=16)
    parser.add_argument("--serve_args", default="", help="extra `humanseg serve` options")
    parser.add_argument("--level_timeout", type=float, default=300.0, help="seconds per level")
    args = parser.parse_args()

    photos = list_images(args.photos)[: args.num_photos]
    bodies = [photo.read_bytes() for photo in photos]
    print(f"{len(bodies)} photos from {args.photos}, {args.requests} requests per level, "
          f"server: humanseg serve {args.serve_args}".rstrip())
    with running_server(shlex.split(args.serve_args)) as (base, process):
        warmup = run_level(base, process.pid, bodies, 1, 8, args.level_timeout)
        if warmup.errors:
            raise SystemExit(f"warm-up failed: {warmup.errors} errors")
        results = [run_level(base, process.pid, bodies, clients, args.requests,
                             args.level_timeout) for clients in args.concurrency]
    print("| clients | requests | errors | req/s | p50 ms | p99 ms | RSS before MiB "
          "| RSS after MiB | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        done = result.latencies
        p50 = statistics.median(done) * 1000 if done else float("nan")
        p99 = percentile(done, 0.99) * 1000 if done else float("nan")
        print(f"| {result.clients} | {len(done) + result.errors} | {result.errors} "
              f"| {len(done) / result.seconds:.1f} | {p50:.1f} | {p99:.1f} "
              f"| {result.rss_before_mb:.0f} | {result.rss_after_mb:.0f} "
              f"| {result.peak_mb:.0f} |")
    if any(result.errors for result in results):
        raise SystemExit("errors during the load test")


if __name__ == "__main__":
    main()
