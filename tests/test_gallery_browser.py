"""The gallery in a real browser (headless Chromium through Playwright): index, run page, live
progress of a running run, new runs appearing, stars, copy buttons, and the kiosk crossfading.

Set GALLERY_SHOTS=<folder> to keep screenshots of the run page, the index and the kiosk there."""

from __future__ import annotations

import os
import shutil
import threading

import pytest
from werkzeug.serving import make_server

import gallery
from logic import runs
from gallery_helpers import image, make_run
from test_gallery import _sd_batch_run

SHOTS = os.environ.get("GALLERY_SHOTS")


def shot(page, name: str) -> None:
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)

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
    assert "python -m logic rerun" in page.locator("pre.command").text_content()  # in the collapsed details


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
    moving = make_run(output, "a moving image", mode="walk", stamp="20260101T000002")  # a walk's video is its result
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
    assert page.locator("#stage .layer.visible img").count() == 1


def test_run_page_copy_star_and_chart(serve, browser, tmp_path, monkeypatch):
    monkeypatch.delenv("ATELIER_APP_URL", raising=False)
    output = tmp_path / "output"
    run, text = _sd_batch_run(output)
    run.append_metrics([{"step": i, "loss": 1.5 / (i + 1) + 0.3, "loss/a red fox in snow": 1.5 / (i + 1) + 0.3}
                        for i in range(40)])
    base = serve(output)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    page.set_default_timeout(8000)
    try:
        page.goto(f"{base}/runs/{run.path.name}")
        page.wait_for_function("() => document.querySelector('.hero img.full').naturalWidth > 0")
        hero = page.locator(".hero img.full").bounding_box()
        assert hero["width"] >= 500  # the image large, not its 64 pixels
        assert page.locator(".key-settings th").first.inner_text() == "Prompt"
        assert page.locator("details.more").get_attribute("open") is None  # the rest is collapsed
        assert not page.locator("details.more table").is_visible()
        assert page.locator(".chart polyline").count() == 1
        assert page.locator(".chart .axis-label").all_text_contents() == ["step", "loss"]
        assert page.locator(".batch img").count() == 3
        shot(page, "run-page")
        page.get_by_role("button", name="Copy parameters").click()
        page.wait_for_function("() => document.querySelector('button.copy.copied')")
        assert page.evaluate("() => navigator.clipboard.readText()") == text
        page.get_by_role("button", name="Copy prompt").click()
        page.wait_for_function("t => navigator.clipboard.readText().then(c => c === t)", arg="a red fox in snow")
        assert page.locator("#open-in-app").get_attribute("href") == f"http://localhost:8501/?from={run.run_id}"
        page.evaluate("() => { window.notReloaded = true; }")
        page.locator("button.star").click()
        page.wait_for_function("() => document.querySelector('button.star').getAttribute('aria-pressed') === 'true'")
        assert page.evaluate("() => window.notReloaded") is True  # posted in the background
        page.reload()
        assert page.locator("button.star").get_attribute("aria-pressed") == "true"  # kept by the gallery
        page.locator("details.more summary").click()
        assert page.locator("pre.parameters").inner_text() == text
        shot(page, "run-page-details-open")
        # Without navigator.clipboard (a page opened over plain http from another machine): the fallback
        bare = context.new_page()
        bare.add_init_script("Object.defineProperty(Navigator.prototype, 'clipboard', {get: () => undefined});"
                             "document.addEventListener('copy', () => { window.copied = String(getSelection()) ||"
                             " document.activeElement.value; });")
        bare.goto(f"{base}/runs/{run.path.name}")
        bare.get_by_role("button", name="Copy parameters").click()
        bare.wait_for_function("() => window.copied !== undefined")
        assert bare.evaluate("() => window.copied") == text
        assert bare.locator("button.copy.copied").count() == 1
    finally:
        context.close()


def test_index_shows_failed_runs_as_small_cards_and_filters_starred(serve, page, tmp_path):
    output = tmp_path / "output"
    done = make_run(output, "a lighthouse in a storm", stamp="20260101T000001")
    failed = make_run(output, "a cathedral of glass", status="failed", image_file=False, stamp="20260101T000002",
                      error="Out of GPU memory at 2048x2048 (needs 14.2 GB, 7.8 GB free): try a smaller size.")
    page.set_viewport_size({"width": 1100, "height": 700})
    base = serve(output)
    page.goto(base + "/")
    page.wait_for_function("() => document.querySelector('li.card img').naturalWidth > 0")
    card = page.locator(f'li[data-run-id="{failed.run_id}"]')
    assert "Out of GPU memory" in card.locator(".error-text").inner_text()
    assert card.locator("img").count() == 0
    done_box = page.locator(f'li[data-run-id="{done.run_id}"]').bounding_box()
    assert card.bounding_box()["height"] < done_box["height"]  # small, not a black square tile
    shot(page, "index-failed-card")
    page.locator(f'li[data-run-id="{done.run_id}"] button.star').click()
    page.wait_for_function(f"() => document.querySelector('li[data-run-id=\"{done.run_id}\"]').classList.contains('is-starred')")
    page.get_by_label("starred only").check()  # submits the one search form
    page.wait_for_url("**starred=1**")
    assert [c.get_attribute("data-run-id") for c in page.locator("li.card").all()] == [done.run_id]
    page.fill("header input[type=search]", "cathedral")
    page.get_by_label("starred only").uncheck()
    page.wait_for_function("() => document.querySelectorAll('li.card').length === 1 && !location.search.includes('starred')")
    assert page.locator("li.card").first.get_attribute("data-run-id") == failed.run_id


def test_kiosk_crossfades_between_two_layers(serve, page, tmp_path):
    output = tmp_path / "output"
    make_run(output, "a white page " + "with a long caption " * 3, stamp="20260101T000001")
    image(next(output.glob("*-*")) / runs.OUTPUT, "white", 64)
    make_run(output, "a dark night", stamp="20260101T000002")
    base = serve(output, kiosk=True, kiosk_interval_s=3, kiosk_play_video=False)
    page.set_viewport_size({"width": 960, "height": 540})
    page.goto(base + "/")
    assert page.locator("#stage .layer").count() == 2
    page.wait_for_function("() => document.querySelectorAll('#stage .layer.visible').length === 1")
    first = page.evaluate("() => document.querySelector('#stage .layer.visible').id")
    # Sample both layers' opacity every frame until the other layer is fully shown.
    samples = page.evaluate("""(first) => new Promise(resolve => {
        const seen = [];
        const tick = () => {
            const [a, b] = ['layer-a', 'layer-b'].map(id => +getComputedStyle(document.getElementById(id)).opacity);
            seen.push([a, b]);
            const other = first === 'layer-a' ? b : a;
            if (other === 1 && seen.length > 2) resolve(seen); else requestAnimationFrame(tick);
        };
        tick();
    })""", first)
    between = [pair for pair in samples if 0 < pair[0] < 1 and 0 < pair[1] < 1]
    assert between, "the layers never showed at once: a cut, not a crossfade"
    assert page.evaluate("() => getComputedStyle(document.getElementById('layer-a')).transitionProperty") == "opacity"
    caption = page.locator("#caption")
    style = page.evaluate("() => { const s = getComputedStyle(document.getElementById('caption'));"
                          " return [s.textShadow, s.backgroundColor]; }")
    assert style[0] != "none" and style[1].startswith("rgba(0, 0, 0")
    page.wait_for_function("() => document.querySelector('#caption').innerText.startsWith('a white page')"
                           " && getComputedStyle(document.querySelector('#stage .layer.visible')).opacity === '1'")
    shot(page, "kiosk-caption-on-white")
    assert caption.is_visible()
