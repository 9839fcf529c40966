"""A finished run in a real Chromium: the result with its seed, downloads and loss chart (screenshot)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_app_browser import CHROMIUM, app_url, page  # noqa: F401 - pytest fixtures

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (scripts/setup-tests.sh installs it)")]


def test_a_finished_batch_in_the_browser_shows_seeds_downloads_and_grid(app_url, page, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    from logic import queue

    url, output = app_url
    # queued as the CLI's --queue does: the app's worker runs it once the page is open
    run = queue.enqueue("diffusion", {"prompt": "a castle at dawn", "model": "demo", "demo": True, "size": [64, 64],
                                      "steps": 2, "seed": 40, "batch_size": 2, "safety": False}, output)
    page.goto(url)
    expect(page.get_by_text("Done: 2 images, 2 steps each.")).to_be_visible(timeout=120_000)
    for caption in ("Image 1 of 2 · seed 40", "Image 2 of 2 · seed 41", "All images of the batch side by side"):
        expect(page.get_by_text(caption)).to_be_visible()
    expect(page.get_by_role("button", name="Download image")).to_have_count(2)
    expect(page.get_by_role("button", name="Download the grid")).to_be_visible()
    expect(page.get_by_role("button", name="Download video (mp4)")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download image").nth(1).click()
    saved = tmp_path / "download.png"
    download.value.save_as(saved)
    assert download.value.suggested_filename == f"{run.run_id}-seed41.png"
    assert saved.read_bytes() == (run.path / "image-02-41.png").read_bytes()
    shots = Path(os.environ.get("ATELIER_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 2400})  # the main area scrolls inside the page
    page.screenshot(path=str(shots / "finished-batch.png"), full_page=True)
