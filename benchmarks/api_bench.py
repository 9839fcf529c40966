"""What the HTTP API and the shared queue cost: time from a POST to the run being queued and to it
starting, and the API's overhead on a whole demo run. Goals: under 50 ms to queued; under 2% of a
run's time.

1. To queued: ``POST /api/v1/runs`` against a server that only queues (``--no-worker``), so
   nothing else runs meanwhile; the client's round trip (checking the settings, making the run
   folder, the index entry) — median and 95th percentile.
2. To started: against a server that runs the queue, one run at a time; from the client's POST to
   the worker's ``device_time.from`` (same machine, same clock).
3. Overhead on a run: ``/sdapi/v1/txt2img`` (synchronous, as A1111 clients call it) from request to
   answer, minus the run's own time on the device (``device_time``): queueing, picking it up,
   noticing the end, and sending the image back.

Runs are spaced 2 s apart: right after a run the process spends a while in ``free_memory``'s full
garbage collection (part of every run's life, in the CLI too), which would otherwise be counted
against the next request. ``--back-to-back`` leaves the pause out to show that cost.

Usage: python benchmarks/api_bench.py [--device cpu] [--posts 30] [--runs 5] [--steps 20] [--size 256]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(output: Path, device: str, worker: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "logic", "serve", "--port", str(port), "--device", device, "--demo",
               "--output", str(output)] + ([] if worker else ["--no-worker"])
    process = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/api/v1/health", timeout=1).ok:
                return process, base
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not start")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(60)


def details_of(folder: str) -> dict:
    return json.loads((Path(folder) / "details.json").read_text())


def params(args, seed: int) -> dict:
    return {"prompt": "a lighthouse in a storm", "demo": True, "steps": args.steps, "size": [args.size, args.size],
            "seed": seed}


def time_to_queued(args, session: requests.Session, base: str) -> list[float]:
    times = []
    for i in range(args.posts):
        started = time.perf_counter()
        answer = session.post(base + "/api/v1/runs", json={"mode": "diffusion", "params": params(args, i)})
        times.append(time.perf_counter() - started)
        assert answer.status_code == 201 and answer.json()["status"] == "queued", answer.text
    return times


PAUSE_S = 2.0  # between runs: the previous run's memory release (a full gc.collect) is the run's cost, not the API's


def time_to_started(args, session: requests.Session, base: str) -> list[float]:
    delays = []
    for i in range(args.runs):
        time.sleep(PAUSE_S)
        sent = time.time()
        run = session.post(base + "/api/v1/runs", json={"mode": "diffusion", "params": params(args, i)}).json()
        while (details := details_of(run["folder"]))["status"] not in ("done", "stopped", "failed"):
            time.sleep(0.02)
        delays.append(details["device_time"]["from"] - sent)
    return delays


def overhead(args, session: requests.Session, base: str) -> list[tuple[float, float]]:
    """(whole request seconds, the run's device seconds) per synchronous txt2img."""
    found = []
    for i in range(args.runs):
        time.sleep(PAUSE_S)
        started = time.perf_counter()
        answer = session.post(base + "/sdapi/v1/txt2img", json={"prompt": "a lighthouse", "steps": args.steps,
                                                                "width": args.size, "height": args.size, "seed": i})
        whole = time.perf_counter() - started
        info = json.loads(answer.json()["info"])
        window = details_of(info["folder"])["device_time"]
        found.append((whole, window["to"] - window["from"]))
    return found


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return f"median {statistics.median(values) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--posts", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--back-to-back", action="store_true", help="no pause between runs")
    args = parser.parse_args()
    global PAUSE_S
    PAUSE_S = 0.0 if args.back_to_back else PAUSE_S
    session = requests.Session()
    with tempfile.TemporaryDirectory() as folder:
        process, base = start_server(Path(folder) / "queue-only", args.device, worker=False)
        try:
            time_to_queued(args, session, base)  # warm-up: first imports, first folder
            queued = time_to_queued(args, session, base)
        finally:
            stop_server(process)
        process, base = start_server(Path(folder) / "with-worker", args.device, worker=True)
        try:
            overhead(argparse.Namespace(**{**vars(args), "runs": 1}), session, base)  # warm-up: the model loads
            starts = time_to_started(args, session, base)
            runs = overhead(args, session, base)
        finally:
            stop_server(process)
    print(f"device {args.device}; demo SD, {args.steps} steps at {args.size}x{args.size}")
    print(f"POST /api/v1/runs -> queued:   {ms(queued)}")
    print(f"POST -> run started (worker):  {ms(starts)}")
    extra = [whole - device for whole, device in runs]
    share = [(whole - device) / device for whole, device in runs]
    print(f"txt2img request - device time: {ms(extra)}; run on the device: median "
          f"{statistics.median(d for _, d in runs):.2f} s; overhead median {statistics.median(share) * 100:.1f}% "
          f"of the run")


if __name__ == "__main__":
    main()
