"""`streamlit run app.py` headless, opened in a real Chromium: a demo generation shows its image."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (scripts/setup-tests.sh installs it)")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_url(tmp_path, atelier_dirs):
    port = free_port()
    env = {**os.environ, "ATELIER_OUTPUT": str(tmp_path / "output")}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
         "--server.address", "127.0.0.1"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_http(url + "/_stcore/health")
        yield url, tmp_path / "output"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for_http(url, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer")


@pytest.fixture
def page():
    """A Chromium page of the size the app is designed for."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1400, "height": 1000})
        browser.close()


def fill_demo_run(page, prompt: str, steps: str) -> None:
    page.get_by_role("textbox", name="Prompt", exact=True).fill(prompt)
    for label, value in (("Width", "48"), ("Height", "48"), ("Steps (-1 = until stopped)", steps)):
        field = page.get_by_role("spinbutton", name=label)
        field.fill(value)
        field.press("Tab")
    page.get_by_role("button", name="Run").click()


def click_stop_until_stopped(page) -> None:
    """Press Stop as a person would: again if nothing happened. The progress panel is redrawn every
    second, and a click that lands while its button is being replaced is lost (1 run in 5 here)."""
    from playwright.sync_api import Error, expect

    stopped = page.get_by_text("Stopped at step")
    for _ in range(6):
        try:
            page.get_by_role("button", name="Stop", exact=True).first.click(timeout=5_000)
            expect(stopped).to_be_visible(timeout=15_000)
            return
        except (AssertionError, Error):
            if stopped.is_visible():
                return
    raise AssertionError("Stop never stopped the run")


def test_demo_generation_in_the_browser(app_url, page):
    from playwright.sync_api import expect

    url, output = app_url
    page.goto(url)
    expect(page.get_by_text("Demo models.")).to_be_visible(timeout=60_000)
    fill_demo_run(page, "a red fox", "6")
    expect(page.get_by_text("Done: 6 steps.")).to_be_visible(timeout=180_000)
    image = page.locator("[data-testid='stImage'] img").first
    expect(image).to_be_visible()
    assert page.evaluate("(img) => img.naturalWidth", image.element_handle()) == 48
    page.screenshot(path=str(output.parent / "app.png"), full_page=True)
    finished = [d for d in output.iterdir() if (d / "output.png").is_file()]
    assert len(finished) == 1 and (finished[0] / "anim.mp4").is_file()


def test_reloading_the_page_reattaches_to_the_running_job_and_stop_keeps_it(app_url, page):
    from playwright.sync_api import expect

    url, output = app_url
    page.goto(url)
    fill_demo_run(page, "a lighthouse", "-1")
    expect(page.get_by_text("it/s").first).to_be_visible(timeout=120_000)

    page.reload()  # a new session: the page must find the run in the server's worker
    expect(page.get_by_text("it/s").first).to_be_visible(timeout=60_000)
    expect(page.get_by_role("img", name="Live preview").or_(page.get_by_text("Live preview"))).to_be_visible()
    click_stop_until_stopped(page)
    run_dir = next(d for d in output.iterdir() if not d.name.startswith("."))  # .queue is the queue index
    details = json.loads((run_dir / "details.json").read_text())
    assert details["status"] == "stopped" and details["progress"]["step"] > 0
    assert (run_dir / "output.png").is_file() and (run_dir / "anim.mp4").is_file()


def test_use_these_settings_on_a_recent_run_fills_the_sidebar(app_url, page):
    from PIL import Image
    from playwright.sync_api import expect

    from logic import runs

    url, output = app_url
    made = []
    for mode, request in (("vqgan", {"prompt": "a quiet harbour", "steps": 33, "seed": 9, "size": [64, 48]}),
                          ("diffusion", {"prompt": "a castle at dawn", "steps": 4, "seed": 5, "model": "demo"})):
        run = runs.create_run(output, mode, request)
        Image.new("RGB", (64, 48), "teal").save(run.file(runs.THUMB))
        run.update(status=runs.DONE, seed=request["seed"])
        made.append(run)
    page.goto(url)
    expect(page.get_by_text("Recent runs")).to_be_visible(timeout=60_000)
    page.locator("[data-testid='stSidebar']").get_by_text("Stable Diffusion", exact=True).click()
    expect(page.get_by_role("textbox", name="Negative prompt")).to_be_visible(timeout=30_000)
    page.get_by_role("textbox", name="Negative prompt").fill("blurry, text")  # typed, never run
    # While the page reruns after the mode switch, the old copy of the list can still be on it.
    button = page.locator(f".st-key-reuse_recent_{made[0].run_id}_settings").get_by_role("button", name="Use these settings")
    expect(button).to_have_count(1, timeout=30_000)
    button.click()
    expect(page.get_by_text(f"The settings of run {made[0].run_id} are in the sidebar")).to_be_visible(timeout=30_000)
    expect(page.get_by_role("textbox", name="Negative prompt")).to_have_count(0, timeout=30_000)  # SD's sidebar gone
    expect(page.get_by_role("textbox", name="Prompt")).to_have_value("a quiet harbour")
    expect(page.get_by_role("spinbutton", name="Steps (-1 = until stopped)")).to_have_value("33")
    expect(page.get_by_role("textbox", name="Seed (empty = random)")).to_have_value("9")
    page.screenshot(path=str(output.parent / "reuse.png"), full_page=True)
    page.locator("[data-testid='stSidebar']").get_by_text("Stable Diffusion", exact=True).click()
    expect(page.get_by_role("textbox", name="Negative prompt")).to_have_value("blurry, text", timeout=30_000)


@pytest.fixture
def demo_only_assets(tmp_path, monkeypatch):
    """An assets folder with only the demo models (the session's holds other tests' models, a refused
    pickle among them, and the sidebar would start at the first installed one)."""
    from logic import settings

    assets = tmp_path / "assets"
    assets.mkdir()
    if settings.demo_dir().is_dir():  # built already: copied, not built again
        shutil.copytree(settings.demo_dir(), assets / "demo")
    monkeypatch.setenv("ATELIER_ASSETS", str(assets))
    return assets


def test_inpaint_mask_painted_on_the_canvas_reaches_the_run(demo_only_assets, app_url, page, tmp_path):
    """Stable Diffusion, Inpaint: upload an image, paint a stroke on the canvas with the mouse, run the
    demo model; the run's saved mask is white where the stroke went and black elsewhere."""
    import numpy as np
    from PIL import Image
    from playwright.sync_api import expect

    url, output = app_url
    shots = Path(os.environ.get("ATELIER_SHOTS", tmp_path))
    image_path = tmp_path / "to-inpaint.png"
    Image.new("RGB", (64, 64), (40, 120, 200)).save(image_path)
    page.goto(url)
    page.get_by_text("Stable Diffusion", exact=True).click()
    page.get_by_text("Inpaint", exact=True).click()
    page.get_by_role("region", name="Image to inpaint").locator("input[type='file']").set_input_files(str(image_path))
    canvas = page.locator("canvas.upper-canvas")
    expect(canvas).to_be_visible(timeout=60_000)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * 0.2, y)
    page.mouse.down()
    for step in range(1, 11):  # a stroke from 20% to 60% of the width, through the middle
        page.mouse.move(box["x"] + box["width"] * (0.2 + 0.04 * step), y)
    page.mouse.up()
    page.screenshot(path=str(shots / "inpaint-stroke.png"), full_page=True)
    page.get_by_role("textbox", name="Prompt", exact=True).fill("a red fox")
    for label, value in (("Steps", "2"), ("Width", "64"), ("Height", "64")):
        field = page.get_by_role("spinbutton", name=label, exact=True)
        field.fill(value)
        field.press("Tab")
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_text("Done", exact=False).first).to_be_visible(timeout=180_000)
    expect(page.locator("[data-testid='stImage'] img").first).to_be_visible()
    page.screenshot(path=str(shots / "inpaint-done.png"), full_page=True)
    # the newest run (other tests of this module made runs in the same output folder)
    run_dir = max((d for d in output.iterdir() if not d.name.startswith(".")), key=lambda d: d.name)
    details = json.loads((run_dir / "details.json").read_text())
    assert details["task"] == "inpaint"
    mask = np.asarray(Image.open(run_dir / "inputs" / "mask.png").convert("L"))
    assert mask.shape == (64, 64)
    assert mask[32, 16:36].min() == 255          # under the stroke (20% to 60% of the width, brush 24/240)
    assert mask[:20].max() == 0 and mask[44:].max() == 0 and mask[:, 50:].max() == 0   # far from it
