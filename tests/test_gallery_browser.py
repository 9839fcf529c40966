"""The gallery in a real browser (headless Chromium through Playwright): index, run page, live
progress of a running run, new runs appearing, and the kiosk advancing."""

from __future__ import annotations

import os
import shutil
import threading

import pytest
from werkzeug.serving import make_server

import gallery
from logic import runs
from gallery_helpers import image, make_run

CHROMIUM = os.environ.get("ATELIER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"no Chromium at {CHROMIUM} (set ATELIER_CHROMIUM to its path)")


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def serve(tmp_path):
    """Start the gallery on a free port in a thread; returns (base_url, output folder)."""
    servers = []

    def start(output, **kwargs):
        app = gallery.create_app(output, cache_dir=tmp_path / "cache", refresh_s=0, live_poll_ms=250, **kwargs)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(8000)
    yield page
    context.close()


def test_index_and_run_page_render_and_new_runs_appear(serve, page, tmp_path):
    output = tmp_path / "output"
    first = make_run(output, "a lighthouse in a storm", stamp="20260101T000001")
    base = serve(output)
    page.goto(base + "/")
    card = page.locator(f'li[data-run-id="{first.run_id}"]')
    assert "a lighthouse in a storm" in card.inner_text()
    # lazy thumbnails do not hold up the load event: wait for the one made into the cache
    page.wait_for_function("() => document.querySelector('li.card img').naturalWidth > 0")
    page.evaluate("() => { window.notReloaded = true; }")
    second = make_run(output, "a new harbour", stamp="20260101T000002")
    page.locator(f'li[data-run-id="{second.run_id}"]').wait_for()
    assert page.evaluate("() => window.notReloaded") is True
    assert page.locator("li.card").first.get_attribute("data-run-id") == second.run_id
    card.locator("a").first.click()
    page.wait_for_url(f"**/runs/{first.path.name}")  # run URLs name the folder
    assert page.locator("h1.prompt").inner_text() == "a lighthouse in a storm"
    assert page.evaluate("() => document.querySelector('img.full').naturalWidth") == 48
    assert "python -m logic rerun" in page.locator("pre.command").inner_text()


def test_running_run_updates_in_place(serve, page, tmp_path):
    output = tmp_path / "output"
    run = make_run(output, "slowly appearing", status="running")
    image(run.file(runs.PREVIEW), "blue")
    run.update(progress={"step": 3, "total": 20}, eta_s=40)
    base = serve(output)
    page.goto(f"{base}/runs/{run.run_id}")
    assert "step 3 of 20" in page.locator("#progress").inner_text()
    page.evaluate("() => { window.notReloaded = true; }")
    run.update(progress={"step": 12, "total": 20}, eta_s=10)
    page.wait_for_function("() => document.querySelector('#progress').innerText.includes('step 12 of 20')")
    image(run.file(runs.OUTPUT), "green")
    run.update(status="done", progress={"step": 20, "total": 20}, finished=runs.now_iso())
    page.wait_for_function("() => document.querySelector('.run-body').dataset.status === 'done'")
    assert page.evaluate("() => window.notReloaded") is True
    assert page.locator("#progress").count() == 0
    page.wait_for_function("() => document.querySelector('img.full') && document.querySelector('img.full').naturalWidth > 0")


def test_index_progress_of_running_run_updates(serve, page, tmp_path):
    output = tmp_path / "output"
    run = make_run(output, "on the index", status="running")
    base = serve(output)
    page.goto(base + "/")
    bar = f'li[data-run-id="{run.run_id}"] .bar span'
    assert page.locator(bar).get_attribute("style") == "width: 25%"
    run.update(progress={"step": 15, "total": 20})
    page.wait_for_function(f"() => document.querySelector('{bar}').style.width === '75%'")


def test_kiosk_advances_and_shows_new_runs(serve, page, tmp_path):
    output = tmp_path / "output"
    first = make_run(output, "first slide", stamp="20260101T000001")
    second = make_run(output, "second slide", stamp="20260101T000002")
    make_run(output, "never shown: running", status="running")
    base = serve(output, kiosk=True, kiosk_interval_s=1, kiosk_play_video=False)
    page.goto(base + "/")
    kiosk = page.locator("#kiosk")
    page.wait_for_function("() => document.querySelector('#kiosk').dataset.runId")
    shown = {kiosk.get_attribute("data-run-id")}
    page.wait_for_function(f"() => document.querySelector('#kiosk').dataset.runId !== '{next(iter(shown))}'")
    shown.add(kiosk.get_attribute("data-run-id"))
    assert shown == {first.run_id, second.run_id}
    assert page.locator("header").count() == 0
    assert page.evaluate("() => getComputedStyle(document.body).cursor") == "none"
    new = make_run(output, "fresh off the press", stamp="20260101T000003")
    page.wait_for_function(f"() => document.querySelector('#kiosk').dataset.runId === '{new.run_id}'")
    assert page.locator("#caption").inner_text() == "fresh off the press"
    assert page.evaluate("() => document.querySelector('#stage img').complete")


def test_kiosk_plays_the_mp4_then_moves_on(serve, page, tmp_path):
    from PIL import Image

    from logic.media import FrameWriter

    output = tmp_path / "output"
    still = make_run(output, "a still image", stamp="20260101T000001")
    moving = make_run(output, "a moving image", stamp="20260101T000002")
    with FrameWriter(moving.file(runs.ANIM), fps=10) as writer:
        for i in range(8):
            writer.add(Image.new("RGB", (32, 32), (30 * i, 0, 0)))
    moving.update(status="done")
    base = serve(output, kiosk=True, kiosk_interval_s=1, kiosk_play_video=True)
    page.goto(base + "/")
    page.wait_for_function(f"() => document.querySelector('#kiosk').dataset.runId === '{moving.run_id}'")
    page.wait_for_function("() => { const v = document.querySelector('#stage video');"
                           " return v && v.currentTime > 0 && !v.error; }")
    assert "anim.mp4" in page.locator("#stage video").get_attribute("src")
    page.wait_for_function(f"() => document.querySelector('#kiosk').dataset.runId === '{still.run_id}'")
    assert page.locator("#stage img").count() == 1
