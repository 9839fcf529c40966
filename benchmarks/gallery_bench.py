"""Gallery speed and memory, side by side with the original vqgan-clip-app gallery's approach.

    python benchmarks/gallery_bench.py                 # 10,000 runs, 100,000 prompts for search
    python benchmarks/gallery_bench.py --runs 2000 --search-prompts 20000 --skip-original

Measures, with the server as a subprocess on a synthetic output folder:
- cold start to first page (empty cache: the index is built from every folder);
- warm start to first page (index already built);
- warm page p50/p95 (HTML index pages, /api/runs, a run page) and search over HTTP;
- server peak RSS (VmHWM from /proc/<pid>/status);
- search over an index of --search-prompts prompts (in process, count + first page, no count cache);
- the original gallery's start to first page and peak RSS on the same folder.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SUBJECTS = ["lighthouse", "fox", "castle", "harbour", "forest", "city", "dragon", "garden", "robot", "ocean",
            "mountain", "cathedral", "train", "owl", "desert", "library", "whale", "market", "bridge", "moon"]
STYLES = ["oil painting", "watercolor", "pencil sketch", "unreal engine", "ukiyo-e", "art nouveau",
          "cyberpunk", "baroque", "pixel art", "low poly", "matte painting", "charcoal"]
ARTISTS = ["James Gurney", "Monet", "Hokusai", "Moebius", "Turner", "Klimt", "Zdzislaw Beksinski", "Mucha"]
MOODS = ["in a storm", "at dawn", "at night", "in the fog", "under snow", "in spring", "on fire", "in ruins"]
QUERIES = ["lighthouse", "oil painting", "hokusai", "storm", "beksinski fog", "dra", "whale at night", "zebra"]


def prompt(rng: random.Random) -> str:
    return (f"a {rng.choice(SUBJECTS)} {rng.choice(MOODS)}, {rng.choice(STYLES)}, "
            f"by {rng.choice(ARTISTS)}")


def details_for(rng: random.Random, index: int, run_id: str) -> dict:
    text = prompt(rng)
    mode = rng.choice(["vqgan", "vqgan", "diffusion", "walk"])
    model = {"diffusion": "sd-1.5"} if mode == "diffusion" else {"vqgan": "vqgan_imagenet_f16_16384",
                                                                   "clip": "ViT-B-32:openai"}
    params = {"prompt": text, "steps": 300, "size": [256, 256], "seed": index, "lr": 0.1, "cutn": 32,
              "cut_pow": 1.0, "every": 5, "fps": 15}
    return {"schema": 1, "run_id": run_id, "mode": mode, "status": "done",
            "created": "2026-01-01T00:00:00+00:00", "started": "2026-01-01T00:00:01+00:00",
            "finished": "2026-01-01T00:05:00+00:00", "prompt": text, "params": params,
            "progress": {"step": 300, "total": 300}, "error": None, "model": model, "seed": index,
            "timing": {"load_s": 3.1, "generate_s": 290.0, "median_step_s": 0.96}, "parent_run_id": None}


def encoded_images() -> tuple[bytes, bytes]:
    """One 256x256 PNG with real content and its 128px JPEG thumbnail, reused for every run."""
    image = Image.effect_mandelbrot((256, 256), (-2, -1.5, 1, 1.5), 100).convert("RGB")
    png, jpg = io.BytesIO(), io.BytesIO()
    image.save(png, format="PNG")
    image.resize((128, 128)).save(jpg, format="JPEG", quality=85)
    return png.getvalue(), jpg.getvalue()


def make_folder(output: Path, count: int, seed: int = 0) -> None:
    """``count`` finished runs in the current layout (90% with thumb.jpg, as runs ending now have)."""
    rng = random.Random(seed)
    png, jpg = encoded_images()
    output.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        run_id = f"r{i:07d}"
        folder = output / f"2026{1 + i // 100000:02d}01T{i % 1000000:06d}-{run_id}"
        folder.mkdir()
        (folder / "details.json").write_text(json.dumps(details_for(rng, i, run_id), indent=2))
        (folder / "output.png").write_bytes(png)
        if i % 10:
            (folder / "thumb.jpg").write_bytes(jpg)
    old = time.time_ns() - 3600 * 10**9
    for folder in output.iterdir():
        os.utime(folder, ns=(old, old))


# --- servers as subprocesses ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 600) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """A server subprocess; ``start`` returns seconds from spawn to the first page answered."""

    def __init__(self, argv: list[str]):
        self.port = free_port()
        self.argv = [*argv, "--port", str(self.port)]
        self.proc: subprocess.Popen | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 900) -> float:
        started = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while time.perf_counter() - started < timeout:
            try:
                get(self.base + "/")
                return time.perf_counter() - started
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.argv} exited with {self.proc.returncode}")
                time.sleep(0.01)
        raise TimeoutError(f"{self.argv} gave no page in {timeout} s")

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def timings_ms(urls: list[str]) -> list[float]:
    times = []
    for url in urls:
        started = time.perf_counter()
        get(url)
        times.append((time.perf_counter() - started) * 1000)
    return times


def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# --- measurements --------------------------------------------------------------------------------


def bench_gallery(output: Path, cache: Path, runs: int, per_page: int) -> dict:
    argv = [sys.executable, "gallery.py", str(output), "--cache", str(cache), "-n", str(per_page)]
    result = {}
    cold = Server(argv)
    result["cold_start_s"] = cold.start()
    cold.stop()
    warm = Server(argv)
    result["warm_start_s"] = warm.start()
    rng = random.Random(1)
    pages = max(1, -(-runs // per_page))
    get(warm.base + "/")
    html = timings_ms([f"{warm.base}/?page={rng.randint(1, pages)}" for _ in range(200)])
    api = timings_ms([f"{warm.base}/api/runs?page={rng.randint(1, pages)}" for _ in range(200)])
    run_pages = timings_ms([f"{warm.base}/runs/r{rng.randrange(runs):07d}" for _ in range(100)])
    search = timings_ms([f"{warm.base}/?q={urllib.request.quote(rng.choice(QUERIES))}" for _ in range(100)])
    result.update(page_p50_ms=p(html, .5), page_p95_ms=p(html, .95), api_p50_ms=p(api, .5),
                  run_page_p50_ms=p(run_pages, .5), http_search_p50_ms=p(search, .5),
                  http_search_p95_ms=p(search, .95))
    result["peak_rss_mb"] = warm.peak_rss_mb()
    warm.stop()
    return result


def bench_cold_rss(output: Path, cache: Path, per_page: int) -> float:
    """Peak RSS of a server that built the whole index itself and then served a page."""
    shutil.rmtree(cache, ignore_errors=True)
    server = Server([sys.executable, "gallery.py", str(output), "--cache", str(cache), "-n", str(per_page)])
    server.start()
    rss = server.peak_rss_mb()
    server.stop()
    return rss


def bench_original(output: Path, per_page: int) -> dict:
    server = Server([sys.executable, "benchmarks/original_gallery_ref.py", str(output), "-n", str(per_page)])
    first = server.start()
    second = timings_ms([server.base + "/?page=2"])[0] / 1000
    result = {"start_to_first_page_s": first, "next_page_s": second, "peak_rss_mb": server.peak_rss_mb()}
    server.stop()
    return result


def bench_search(count: int, workdir: Path) -> dict:
    """Search over ``count`` prompts in the index (FTS5), count + first page, counts not cached."""
    from gallery_web.index import RunIndex, row_from_details

    rng = random.Random(2)
    index = RunIndex(workdir / "search-out", workdir / "search.sqlite3")
    started = time.perf_counter()
    for batch in range(0, count, 10000):
        rows = []
        for i in range(batch, min(count, batch + 10000)):
            run_id = f"s{i:07d}"
            files = {"output.png": 1, "thumb.jpg": 1, "@image": "output.png"}
            rows.append(row_from_details(f"20260101T{i:07d}-{run_id}", details_for(rng, i, run_id), files))
        index.add_rows(rows)
    build_s = time.perf_counter() - started
    per_query = {}
    for query in QUERIES:
        times = []
        for _ in range(15):
            index._counts.clear()
            started = time.perf_counter()
            total, rows = index.query(q=query, limit=24)
            times.append((time.perf_counter() - started) * 1000)
        per_query[query] = {"p50_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2),
                            "matches": total}
    return {"prompts": count, "build_s": build_s, "queries": per_query,
            "worst_p50_ms": max(q["p50_ms"] for q in per_query.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--search-prompts", type=int, default=100000)
    parser.add_argument("--per-page", type=int, default=24)
    parser.add_argument("--skip-original", action="store_true")
    parser.add_argument("--keep", metavar="DIR", help="keep the synthetic folder here")
    args = parser.parse_args()
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="gallery-bench-"))
    output, cache = workdir / "output", workdir / "cache"
    results: dict = {"runs": args.runs, "cpus": os.cpu_count()}
    try:
        started = time.perf_counter()
        if not output.is_dir():
            make_folder(output, args.runs)
        results["make_folder_s"] = round(time.perf_counter() - started, 1)
        shutil.rmtree(cache, ignore_errors=True)
        results["gallery"] = bench_gallery(output, cache, args.runs, args.per_page)
        results["gallery"]["cold_build_peak_rss_mb"] = bench_cold_rss(output, cache, args.per_page)
        if args.search_prompts:
            results["search"] = bench_search(args.search_prompts, workdir)
        if not args.skip_original:
            results["original"] = bench_original(output, args.per_page)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(rounded(results), indent=2))


def rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    main()
