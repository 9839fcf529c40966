"""App start to first served page, with no model loaded (models load on first use).

Starts `streamlit run app.py` headless, then measures with a real Chromium:
  - server up: process start -> /_stcore/health answers
  - first page: process start -> the sidebar's "Run" button is visible (the script has run once)
  - the server's RSS then, which shows no model was loaded.
Usage: python benchmarks/app_start.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the app did not start")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_once(browser, workdir: Path) -> tuple[float, float, float]:
    port = free_port()
    env = {**os.environ, "ATELIER_OUTPUT": str(workdir / "output"), "ATELIER_ASSETS": str(workdir / "assets")}
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                               "--server.headless", "true"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_health(f"http://127.0.0.1:{port}/_stcore/health")
        up = time.perf_counter() - started
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}")
        page.get_by_role("button", name="Run").wait_for(timeout=120_000)
        first_page = time.perf_counter() - started
        page.close()
        return up, first_page, rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    results = []
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as tmp:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for _ in range(args.repeat):
            results.append(measure_once(browser, Path(tmp)))
        browser.close()
    ups, pages, rss = zip(*results)
    print(f"app start, {args.repeat} runs: server up median {statistics.median(ups):.2f} s; "
          f"first page rendered median {statistics.median(pages):.2f} s (min {min(pages):.2f} s); "
          f"server RSS {statistics.median(rss):.0f} MB, no model loaded")


if __name__ == "__main__":
    main()
