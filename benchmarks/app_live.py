"""What watching a run costs: one demo VQGAN run started from the browser, with the page kept open
or closed right after the start. Prints the run's generate time and median step for each.

Usage: python benchmarks/app_live.py [--steps 60] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app_start import CHROMIUM_ARGS, ROOT, free_port, wait_for_health


def run_once(browser, keep_open: bool, steps: int, size: int) -> dict:
    output = Path(tempfile.mkdtemp())
    port = free_port()
    env = {**os.environ, "ATELIER_OUTPUT": str(output)}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                               "--server.headless", "true"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_health(f"http://127.0.0.1:{port}/_stcore/health")
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}")
        page.get_by_role("button", name="Run").wait_for(timeout=120_000)
        for label, value in (("Width", size), ("Height", size), ("Steps (-1 = until stopped)", steps)):
            field = page.get_by_role("spinbutton", name=label)
            field.fill(str(value))
            field.press("Tab")
        page.get_by_role("button", name="Run").click()
        page.get_by_text("it/s").wait_for(timeout=120_000)
        if not keep_open:
            page.close()
        return wait_for_end(output)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(output, ignore_errors=True)


def wait_for_end(output: Path, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for details_file in output.glob("*/details.json"):
            details = json.loads(details_file.read_text())
            if details.get("status") in ("done", "stopped", "failed"):
                return details
        time.sleep(0.5)
    raise RuntimeError("the run did not finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        for keep_open in (False, True):
            timing = run_once(browser, keep_open, args.steps, args.size)["timing"]
            print(f"page {'open' if keep_open else 'closed'}: {args.steps} steps at {args.size}x{args.size}, "
                  f"generate {timing['generate_s']:.1f} s, median step {timing['median_step_s']:.3f} s")
        browser.close()


if __name__ == "__main__":
    main()
