"""The gallery over real run folders: listing, search, run pages, JSON twins, security, the index."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

import pytest

import gallery
from gallery_web.index import fts_query
from logic import runs
from gallery_helpers import age, dead_owner, image, make_legacy, make_run, make_runs, snapshot


@pytest.fixture
def output(tmp_path) -> Path:
    folder = tmp_path / "output"
    folder.mkdir()
    return folder


def client_for(output: Path, tmp_path: Path, **kwargs):
    app = gallery.create_app(output, cache_dir=tmp_path / "cache", refresh_s=0, **kwargs)
    return app.test_client()


def card_ids(html: str) -> list[str]:
    return re.findall(r'data-run-id="([^"]+)"', html)


# --- index page and /api/runs ------------------------------------------------------------------


def test_index_lists_runs_newest_first_with_their_details(output, tmp_path):
    old = make_run(output, "a quiet harbour", stamp="20260101T000001")
    new = make_run(output, "a stormy sea", mode="diffusion", model={"diffusion": "sd-tiny"},
                   stamp="20260102T000001")
    page = client_for(output, tmp_path).get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert card_ids(html) == [new.run_id, old.run_id]
    for text in ("a stormy sea", "a quiet harbour", "diffusion", "sd-tiny", "demo + demo-clip", "done",
                 "2026-"):
        assert text in html
    assert f"/thumb/{old.path.name}" in html


def test_api_runs_is_the_json_twin_of_the_index(output, tmp_path):
    make_runs(output, 3)
    data = client_for(output, tmp_path).get("/api/runs").get_json()
    assert data["total"] == 3 and data["pages"] == 1 and data["page"] == 1
    assert [r["prompt"] for r in data["runs"]] == ["run number 2", "run number 1", "run number 0"]
    first = data["runs"][0]
    assert first["status"] == "done" and first["mode"] == "vqgan" and first["model"] == "demo + demo-clip"
    assert first["image_url"].startswith(f"/files/{first['folder']}/output.png")
    assert data["q"] == "" and data["filters"] == {"mode": "", "model": "", "status": "", "starred": False,
                                                  "hidden": False}


@pytest.mark.parametrize("count, per_page, pages", [(0, 4, 1), (4, 4, 1), (5, 4, 2), (8, 4, 2), (9, 4, 3)])
def test_pagination_has_no_empty_last_page(output, tmp_path, count, per_page, pages):
    make_runs(output, count)
    client = client_for(output, tmp_path, per_page=per_page)
    data = client.get("/api/runs").get_json()
    assert data["pages"] == pages and data["total"] == count
    last = client.get(f"/api/runs?page={pages}").get_json()
    assert len(last["runs"]) == (count - (pages - 1) * per_page) and not last["has_next"]
    assert client.get(f"/api/runs?page={pages + 1}").status_code == 404
    assert client.get(f"/?page={pages + 1}").status_code == 404
    html = client.get(f"/?page={pages}").get_data(as_text=True)
    assert 'rel="next"' not in html


def test_pages_partition_the_runs_and_links_keep_the_search(output, tmp_path):
    made = make_runs(output, 10, prompt="fox {i}")
    client = client_for(output, tmp_path, per_page=4)
    seen = []
    for page in (1, 2, 3):
        seen += [r["run_id"] for r in client.get(f"/api/runs?page={page}&q=fox").get_json()["runs"]]
    assert seen == [r.run_id for r in reversed(made)]
    html = client.get("/?q=fox&page=2").get_data(as_text=True)
    assert 'href="/?q=fox&amp;page=3"' in html and 'href="/?q=fox"' in html


@pytest.mark.parametrize("query", [
    "page=0", "page=-1", "page=x", "page=1.5", "page=%C2%B2", "page=1e3", "page=",
    "page=99999999999999999999", "page=9223372036854775808", "page=10000001",
    "per_page=0", "per_page=201", "per_page=-5", "per_page=abc", "per_page=99999999999999999999",
])
@pytest.mark.parametrize("route", ["/", "/api/runs"])
def test_bad_page_numbers_are_400_with_a_sentence(output, tmp_path, route, query):
    make_runs(output, 2)
    response = client_for(output, tmp_path).get(f"{route}?{query}")
    assert response.status_code == 400, query
    name = query.split("=")[0]
    text = response.get_json()["error"] if route.startswith("/api/") else response.get_data(as_text=True)
    assert f"{name} must be a whole number from 1 to" in text


def test_bad_slide_limits_are_400(output, tmp_path):
    client = client_for(output, tmp_path)
    for limit in ("0", "501", "x", "99999999999999999999"):
        assert client.get(f"/api/slides?limit={limit}").status_code == 400, limit
    assert client.get("/api/slides?limit=500").status_code == 200


def test_search_by_prompt_words_and_prefix(output, tmp_path):
    fox = make_run(output, "A red fox in the snow, oil painting")
    make_run(output, "a lighthouse in a storm")
    client = client_for(output, tmp_path)
    for query in ("fox", "FOX snow", "paint", "red fox"):
        data = client.get("/api/runs", query_string={"q": query}).get_json()
        assert [r["run_id"] for r in data["runs"]] == [fox.run_id], query
        assert data["q"] == query
    assert client.get("/api/runs?q=zebra").get_json()["total"] == 0
    assert "No runs match" in client.get("/?q=zebra").get_data(as_text=True)
    assert client.get("/api/runs", query_string={"q": '"); DROP TABLE runs; --'}).status_code == 200
    assert client.get("/api/runs").get_json()["total"] == 2


def test_fts_query_quotes_every_word():
    assert fts_query('red "fox') == '"red" "fox"*'
    assert fts_query("--") is None


def test_filters_by_mode_model_and_status(output, tmp_path):
    vq = make_run(output, "one", model={"vqgan": "imagenet"})
    diff = make_run(output, "two", mode="diffusion", model={"diffusion": "sd15"})
    failed = make_run(output, "three", status="failed", image_file=False)
    client = client_for(output, tmp_path)

    def ids(query):
        return {r["run_id"] for r in client.get(f"/api/runs?{query}").get_json()["runs"]}

    assert ids("mode=diffusion") == {diff.run_id}
    assert ids("model=imagenet") == {vq.run_id}
    assert ids("status=failed") == {failed.run_id}
    assert ids("status=done&mode=vqgan") == {vq.run_id}
    html = client.get("/").get_data(as_text=True)
    assert '<option value="sd15"' in html and '<option value="failed"' in html


# --- run page and /api/runs/<id> ---------------------------------------------------------------


def test_run_page_shows_everything_about_a_run(output, tmp_path):
    parent = make_run(output, "a castle", stamp="20260101T000001")
    run = make_run(output, "a castle at night", parent_run_id=parent.run_id, stamp="20260101T000002")
    child = make_run(output, "a castle at dawn", parent_run_id=run.run_id, stamp="20260101T000003")
    (run.file(runs.ANIM)).write_bytes(b"\x00\x00\x00\x18ftypmp42")
    image(run.inputs_dir / "init.png", "white")
    run.append_metrics([{"step": i, "loss": 2.0 / (i + 1), "loss/castle": 1.0 / (i + 1)} for i in range(50)])
    run.update(timing={"load_s": 1.5, "generate_s": 9.0, "median_step_s": 0.2})
    html = client_for(output, tmp_path).get(f"/runs/{run.run_id}").get_data(as_text=True)
    assert "a castle at night" in html
    assert f'src="/files/{run.path.name}/output.png' in html
    assert f'<video class="full" controls' in html and f"/files/{run.path.name}/anim.mp4" in html
    assert f"python -m logic rerun {run.path}" in html
    assert '<tr data-key="steps"><th>Steps</th><td>20</td>' in html
    assert '<tr data-key="seed"><th>Seed</th><td>7</td>' in html
    assert "median_step_s" in html
    assert f"/files/{run.path.name}/inputs/init.png" in html
    assert f'href="/runs/{parent.path.name}"' in html and f'href="/runs/{child.path.name}"' in html
    # one prompt: its curve alone (the total of one term would be the same curve again)
    assert html.count("<polyline") == 1 and "<title>castle</title>" in html


def test_api_run_reports_progress_of_a_running_run(output, tmp_path):
    run = make_run(output, "in progress", status="running")
    image(run.file(runs.PREVIEW), "blue")
    run.update(progress={"step": 5, "total": 20}, eta_s=30.0, it_s=2.5)
    data = client_for(output, tmp_path).get(f"/api/runs/{run.run_id}").get_json()
    assert data["status"] == "running"
    assert data["progress"] == {"step": 5, "total": 20} and data["percent"] == 25
    assert data["eta_s"] == 30.0 and data["it_s"] == 2.5
    assert data["preview_url"].startswith(f"/files/{run.path.name}/preview.jpg?v=")
    assert data["params"]["prompt"] == "in progress" and data["details"]["run_id"] == run.run_id


def test_eta_falls_back_to_median_step_time(output, tmp_path):
    run = make_run(output, "slow", status="running")
    run.update(progress={"step": 10, "total": 20}, timing={"median_step_s": 0.5})
    data = client_for(output, tmp_path).get(f"/api/runs/{run.run_id}").get_json()
    assert data["eta_s"] == pytest.approx(5.0)


def test_runs_whose_worker_died_show_as_interrupted_without_writing(output, tmp_path):
    run = make_run(output, "orphan", status="running", owner=dead_owner())
    before = snapshot(output)
    client = client_for(output, tmp_path)
    assert client.get(f"/api/runs/{run.run_id}").get_json()["status"] == "interrupted"
    assert [r["run_id"] for r in client.get("/api/runs?status=interrupted").get_json()["runs"]] == [run.run_id]
    assert snapshot(output) == before


def test_unknown_run_is_404_in_html_and_json(output, tmp_path):
    client = client_for(output, tmp_path)
    assert client.get("/runs/nope").status_code == 404
    response = client.get("/api/runs/nope")
    assert response.status_code == 404 and "nope" in response.get_json()["error"]


# --- the original vqgan-clip-app's folders and broken folders ----------------------------------


def test_original_app_folders_are_listed_and_shown(output, tmp_path):
    folder = make_legacy(output, prompt="an old lighthouse")
    client = client_for(output, tmp_path)
    data = client.get("/api/runs").get_json()
    assert [r["prompt"] for r in data["runs"]] == ["an old lighthouse"]
    run = data["runs"][0]
    assert run["image_url"].startswith(f"/files/{folder.name}/output.PNG")
    assert run["video_url"].startswith(f"/files/{folder.name}/anim.mp4")
    html = client.get(run["url"]).get_data(as_text=True)
    assert "init-image.JPEG" in html and "image-prompt-0.png" in html and "original vqgan-clip-app" in html
    assert client.get(f"/files/{folder.name}/init-image.JPEG").status_code == 200
    thumb = client.get(run["thumb_url"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert client.get("/api/runs?q=lighthouse").get_json()["total"] == 1


def test_broken_folders_are_skipped_with_a_log_line(output, tmp_path, caplog):
    good = make_run(output, "fine")
    (output / "20260101T000000-badjson").mkdir()
    (output / "20260101T000000-badjson" / "details.json").write_text("{not json")
    (output / "20260101T000000-empty").mkdir()
    make_legacy(output, "20210101T000000_noimage", image_name=None)
    (output / "notes.txt").write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        data = client_for(output, tmp_path).get("/api/runs").get_json()
    assert [r["run_id"] for r in data["runs"]] == [good.run_id]
    logged = caplog.text
    for name in ("badjson", "empty", "noimage"):
        assert name in logged


def test_broken_folders_are_logged_once_and_fixed_ones_appear(output, tmp_path, caplog, monkeypatch):
    (output / "20260101T000000-later").mkdir()
    age(output)
    client = client_for(output, tmp_path)
    with caplog.at_level(logging.WARNING):
        client.get("/api/runs")
        client.get("/api/runs")
    assert caplog.text.count("20260101T000000-later") == 1
    (output / "20260101T000000-later" / "details.json").write_text(json.dumps(
        {"schema": 1, "run_id": "later", "mode": "vqgan", "status": "done", "prompt": "fixed"}))
    # Edits inside an old folder are found by the periodic full sweep (every FULL_SWEEP_S).
    monkeypatch.setattr("gallery_web.index.FULL_SWEEP_S", 0.0)
    assert [r["prompt"] for r in client.get("/api/runs").get_json()["runs"]] == ["fixed"]


# --- files and security ------------------------------------------------------------------------


@pytest.fixture
def secured(output, tmp_path):
    run = make_run(output, "guarded")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    os.symlink(secret, run.path / "link.txt")
    os.symlink(tmp_path, run.path / "linkdir")
    outside = tmp_path / "elsewhere-run"
    outside.mkdir()
    (outside / "details.json").write_text(json.dumps({"schema": 1, "run_id": "x", "prompt": "outside"}))
    os.symlink(outside, output / "20260101T000000-linked")
    (run.path / ".tmp-hidden.json").write_text("{}")
    return client_for(output, tmp_path), run


@pytest.mark.parametrize("path", [
    "/files/{name}/../../secret.txt",
    "/files/{name}/..%2F..%2Fsecret.txt",
    "/files/{name}/%2e%2e/%2e%2e/secret.txt",
    "/files/{name}/%252e%252e%252fsecret.txt",
    "/files/..%2F/secret.txt",
    "/files/../{name}/output.png",
    "/files/{name}//etc/passwd",
    "/files/{name}/%2Fetc%2Fpasswd",
    "/files/{name}/..\\..\\secret.txt",
    "/files/{name}/link.txt",
    "/files/{name}/linkdir/secret.txt",
    "/files/{name}/.tmp-hidden.json",
    "/files/{name}/details.json%00.png",
    "/files/20260101T000000-linked/details.json",
    "/files/{name}",
    "/files/{name}/",
    "/files/{name}/inputs",
    "/thumb/..%2F..%2Fsecret.txt",
    "/static/../gallery.py",
    "/static/%2e%2e/%2e%2e/gallery.py",
    "/gallery.py",
    "/logic/runs.py",
    "/output/{name}/output.png",
])
def test_path_traversal_is_404(secured, path):
    client, run = secured
    response = client.get(path.format(name=run.path.name))
    assert response.status_code == 404, path
    assert b"top secret" not in response.data


def test_files_inside_the_output_folder_are_served(secured):
    client, run = secured
    response = client.get(f"/files/{run.path.name}/output.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert client.get(f"/files/{run.path.name}/details.json").get_json()["run_id"] == run.run_id
    assert client.get("/static/gallery.css").status_code == 200


def test_symlinked_run_folders_are_not_listed(secured):
    client, _ = secured
    assert [r["prompt"] for r in client.get("/api/runs").get_json()["runs"]] == ["guarded"]


def test_no_route_changes_run_folders(output, tmp_path):
    done = make_run(output, "no thumb yet")
    running = make_run(output, "running", status="running")
    make_run(output, "orphan", status="running", owner=dead_owner())
    make_legacy(output)
    before = snapshot(output)
    client = client_for(output, tmp_path)
    for run in client.get("/api/runs").get_json()["runs"]:
        for url in (run["url"], run["api_url"], run["thumb_url"], run["image_url"]):
            if url:
                assert client.get(url).status_code == 200, url
    for method in ("post", "put", "delete"):
        assert getattr(client, method)(f"/runs/{done.run_id}").status_code == 405
        assert getattr(client, method)(f"/files/{running.path.name}/details.json").status_code == 405
    assert snapshot(output) == before
    assert list((tmp_path / "cache" / "thumbs").rglob("*.jpg"))  # thumbnails went to the cache


def test_thumbnails_prefer_thumb_jpg_and_are_cached(output, tmp_path):
    with_thumb = make_run(output, "has a thumb", thumb=True)
    without = make_run(output, "has no thumb")
    client = client_for(output, tmp_path)
    runs_by_id = {r["run_id"]: r for r in client.get("/api/runs").get_json()["runs"]}
    assert runs_by_id[with_thumb.run_id]["thumb_url"].startswith(f"/files/{with_thumb.path.name}/thumb.jpg")
    url = runs_by_id[without.run_id]["thumb_url"]
    first = client.get(url)
    assert first.status_code == 200 and first.data[:2] == b"\xff\xd8"
    made = list((tmp_path / "cache" / "thumbs").rglob("*.jpg"))
    assert len(made) == 1
    mtime = made[0].stat().st_mtime_ns
    assert client.get(url).data == first.data and made[0].stat().st_mtime_ns == mtime


def test_pages_use_no_external_assets(output, tmp_path, monkeypatch):
    monkeypatch.delenv("ATELIER_APP_URL", raising=False)
    run = make_run(output, "offline")
    client = client_for(output, tmp_path)
    for url in ("/", f"/runs/{run.run_id}", "/kiosk"):
        html = client.get(url).get_data(as_text=True)
        # the one link off the gallery is a navigation to the app, not an asset the page loads
        html = html.replace(f'href="http://localhost:8501/?from={run.run_id}"', "")
        assert not re.search(r'(src|href)="(https?:)?//', html), url


# --- live data, kiosk, index cache ---------------------------------------------------------------


def test_new_and_deleted_runs_show_without_restart(output, tmp_path):
    import shutil
    first = make_run(output, "first")
    client = client_for(output, tmp_path)
    version = client.get("/api/version").get_json()["version"]
    second = make_run(output, "second")
    state = client.get("/api/version").get_json()
    assert state["version"] != version and state["total"] == 2
    fragment = client.get("/?fragment=1").get_data(as_text=True)
    assert second.run_id in fragment and "<header" not in fragment
    shutil.rmtree(first.path)
    assert [r["run_id"] for r in client.get("/api/runs").get_json()["runs"]] == [second.run_id]
    assert client.get(f"/runs/{first.run_id}").status_code == 404


def test_running_run_progress_updates_between_requests(output, tmp_path):
    run = make_run(output, "live", status="running")
    client = client_for(output, tmp_path)
    assert client.get(f"/api/runs/{run.run_id}").get_json()["progress"]["step"] == 5
    run.update(progress={"step": 15, "total": 20})
    data = client.get(f"/api/runs/{run.run_id}").get_json()
    assert data["progress"]["step"] == 15
    body = client.get(f"/runs/{run.run_id}?fragment=1").get_data(as_text=True)
    assert "step 15 of 20" in body and "<html" not in body


def test_kiosk_mode_serves_the_slideshow_of_finished_runs(output, tmp_path):
    done = make_run(output, "finished one")
    make_run(output, "still running", status="running")
    make_run(output, "failed", status="failed", image_file=False)
    client = client_for(output, tmp_path, kiosk=True, kiosk_interval_s=3, kiosk_play_video=False)
    html = client.get("/").get_data(as_text=True)
    assert 'id="kiosk"' in html and 'data-interval-s="3"' in html and 'data-play-video="0"' in html
    assert "<header" not in html and "cursor: none" in client.get("/static/gallery.css").get_data(as_text=True)
    slides = client.get("/api/slides").get_json()
    assert [s["run_id"] for s in slides["slides"]] == [done.run_id] and slides["interval_s"] == 3


def test_index_is_kept_in_the_cache_and_reused(output, tmp_path, monkeypatch):
    make_runs(output, 5)
    age(output)
    client_for(output, tmp_path).get("/api/runs")
    assert (tmp_path / "cache" / "index.sqlite3").is_file()
    reads = []
    original = runs.read_record
    monkeypatch.setattr(runs, "read_record", lambda path: reads.append(path) or original(path))
    data = client_for(output, tmp_path).get("/api/runs").get_json()
    assert data["total"] == 5 and reads == []
    make_run(output, "one more")
    assert client_for(output, tmp_path).get("/api/runs").get_json()["total"] == 6
    assert len(reads) == 1


def test_folders_changed_within_the_clock_tick_are_read_again(output, tmp_path):
    run = make_run(output, "just written")
    index = gallery.create_app(output, cache_dir=tmp_path / "cache", refresh_s=0).extensions["run_index"]
    index.refresh()
    # A checkpoint landing in the same tick leaves the folder time as it was: still picked up.
    mtime = run.path.stat().st_mtime_ns
    run.update(progress={"step": 9, "total": 20})
    os.utime(run.path, ns=(mtime, mtime))
    index.refresh()
    assert json.loads(index.get(run.run_id)["details"])["progress"]["step"] == 9


def test_default_cache_is_outside_the_output_folder_and_host_is_local(output, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = gallery.default_cache_dir(output)
    assert cache.is_relative_to(tmp_path / "xdg" / "atelier" / "gallery")
    assert not cache.is_relative_to(output)
    args = gallery.build_parser().parse_args([str(output), "-n", "12", "--kiosk"])
    assert args.host == "127.0.0.1" and args.per_page == 12 and args.kiosk


def test_refresh_is_cheap_when_nothing_changed(output, tmp_path):
    make_runs(output, 100)
    age(output)
    app = gallery.create_app(output, cache_dir=tmp_path / "cache", refresh_s=0)
    index = app.extensions["run_index"]
    index.refresh(force=True)
    started = time.perf_counter()
    for _ in range(20):
        assert not index.refresh()
    assert (time.perf_counter() - started) / 20 < 0.01


@pytest.mark.parametrize("model, label", [
    ({"vqgan": "vqgan_imagenet_f16_16384", "vqgan_path": "/a/b.ckpt", "vqgan_hash": "ab12", "clip": "ViT-B-32:openai",
      "factor": 16}, "vqgan_imagenet_f16_16384 + ViT-B-32:openai"),
    ({"name": "dreamshaper_8", "kind": "single-file", "location": "/m/d.safetensors", "hash": "f00"}, "dreamshaper_8"),
    ({"vqgan": "sflckr", "clip": None}, "sflckr"),
    ("plain-name", "plain-name"),
    (None, ""),
])
def test_model_labels_are_names_not_paths(model, label):
    from gallery_web.index import model_label

    assert model_label(model) == label


# --- the run page: key settings first, the rest collapsed --------------------------------------


def _sd_batch_run(output: Path, **extra):
    """A Stable Diffusion batch of two as the engine leaves it: image-NN-seed.png, grid.png, its details."""
    from logic import media

    run = make_run(output, "a red fox in snow", mode="diffusion", model={"name": "sd15-demo", "location": "/m/sd.safetensors"},
                   **extra)
    request = {"prompt": "a red fox in snow", "negative": "blurry", "steps": 20, "cfg": 6.5, "seed": 7,
               "scheduler": "Euler a", "size": [64, 64], "batch_size": 2, "clip_skip": 2,
               "init_image": "/home/someone/private/init.png", "size_requested": [60, 60],
               "preview_decoder": "taesd", "demo": True, "vae": "/home/someone/vae/kl-f8.safetensors",
               "lora": ["/home/someone/lora/ink.safetensors:0.8"]}
    text = "a red fox in snow\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 6.5, Seed: 7, Size: 64x64"
    from PIL import Image
    media.save_png(Image.new("RGB", (64, 64), "orange"), run.file(runs.OUTPUT), text)
    for name in ("image-01-7.png", "image-02-8.png", "grid.png"):
        image(run.path / name, "orange", 32)
    run.update(request=request, resolved={**request, "size": [64, 64]}, seed=7,
               started="2026-01-01T10:00:00+00:00", finished="2026-01-01T10:01:05+00:00",
               images=[{"file": "image-01-7.png", "seed": 7}, {"file": "image-02-8.png", "seed": 8}])
    return run, text


def _rows(html: str, section: str) -> list[str]:
    """The row labels (th) of one section of the run page."""
    part = html.split(f'class="{section}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<th>([^<]+)</th>", part)


def test_run_page_shows_key_settings_first_and_hides_internal_fields(output, tmp_path):
    run, text = _sd_batch_run(output)
    html = client_for(output, tmp_path).get(f"/runs/{run.path.name}").get_data(as_text=True)
    assert _rows(html, "key-settings") == ["Prompt", "Negative prompt", "Model", "Seed", "Size", "Steps",
                                           "Sampler", "CFG scale", "Batch", "Duration"]
    assert "<td>1 min 05 s</td>" in html and "<td>64×64</td>" in html and "<td>Euler a</td>" in html
    assert html.index('class="key-settings"') < html.index('<details class="more">')
    rest = _rows(html, "more")
    assert "clip_skip" in rest and "steps" not in rest and "cfg" not in rest
    for internal in ("size_requested", "preview_decoder", "owner", "init_image", "demo", "location"):
        assert internal not in rest and f"<th>{internal}" not in html, internal
    assert "/home/someone" not in html and "/m/sd.safetensors" not in html
    assert "<td>kl-f8.safetensors</td>" in html and "ink.safetensors:0.8" in html  # named by their files
    assert "Learning rate" not in html  # a VQGAN setting, not Stable Diffusion's


def test_run_page_shows_batch_images_grid_and_walk_keyframes(output, tmp_path):
    run, _ = _sd_batch_run(output)
    walk = make_run(output, "dawn -> dusk", mode="walk")
    for name in ("keyframe-01.png", "keyframe-02.png"):
        image(walk.path / name, "blue", 32)
    walk.update(keyframes=[{"file": "keyframe-01.png", "prompt": "dawn", "seed": 1},
                           {"file": "keyframe-02.png", "prompt": "dusk", "seed": 2},
                           {"file": "keyframe-03.png", "prompt": "missing", "seed": 3}])
    client = client_for(output, tmp_path)
    html = client.get(f"/runs/{run.path.name}").get_data(as_text=True)
    for name, caption in (("image-01-7.png", "seed 7"), ("image-02-8.png", "seed 8"), ("grid.png", "grid")):
        assert f'src="/files/{run.path.name}/{name}"' in html and f"<span>{caption}</span>" in html
    detail = client.get(f"/api/runs/{walk.path.name}").get_json()
    assert [(k["file"], k["caption"], k["seed"]) for k in detail["images"]["keyframes"]] == [
        ("keyframe-01.png", "dawn", 1), ("keyframe-02.png", "dusk", 2)]  # a file that is not there: left out
    assert "<h2>Keyframes</h2>" in client.get(detail["url"]).get_data(as_text=True)


def test_vqgan_key_settings_are_learning_rate_and_cutouts(output, tmp_path):
    run = make_run(output, "a lighthouse")
    run.update(resolved={"prompt": "a lighthouse", "steps": 20, "lr": 0.2, "cutn": 16, "size": [48, 48],
                         "scheduler": "not shown for vqgan"})
    html = client_for(output, tmp_path).get(f"/runs/{run.path.name}").get_data(as_text=True)
    labels = _rows(html, "key-settings")
    assert labels[-2:] == ["Learning rate", "Cutouts"] and "Sampler" not in labels
    assert '<th>Learning rate</th><td>0.2</td>' in html and '<th>Cutouts</th><td>16</td>' in html


def test_copy_buttons_carry_the_prompt_and_the_png_parameters_text(output, tmp_path):
    run, text = _sd_batch_run(output)
    legacy = make_legacy(output, prompt="an old lighthouse")
    client = client_for(output, tmp_path)
    html = client.get(f"/runs/{run.path.name}").get_data(as_text=True)
    assert 'data-copy="a red fox in snow">Copy prompt' in html
    assert f'data-copy="{text}">Copy parameters' in html
    # a run whose image has no parameters text (the original app's): made from the settings shown
    made = client.get(f"/api/runs/{legacy.name}").get_json()["parameters_text"]
    assert made.startswith("an old lighthouse\n") and "Seed: 42" in made and "Steps: 50" in made


def test_open_in_app_link_and_downloads(output, tmp_path, monkeypatch):
    monkeypatch.delenv("ATELIER_APP_URL", raising=False)
    run = make_run(output, "with a video")
    run.file(runs.ANIM).write_bytes(b"\x00\x00\x00\x18ftypmp42")
    run.file(runs.GIF).write_bytes(b"GIF89a")
    run.update(progress={"step": 20, "total": 20})
    html = client_for(output, tmp_path).get(f"/runs/{run.path.name}").get_data(as_text=True)
    assert f'href="http://localhost:8501/?from={run.run_id}"' in html
    assert "Open in the app with these settings" in html
    for name, label in (("output.png", "Image"), ("anim.mp4", "Video"), ("anim.gif", "GIF")):
        assert re.search(rf'href="/files/{run.path.name}/{re.escape(name)}\?v=\d+" download="[^"]+">↓ {label}<', html), name
    monkeypatch.setenv("ATELIER_APP_URL", "http://studio.local:9000/atelier/")
    html = client_for(output, tmp_path).get(f"/runs/{run.path.name}").get_data(as_text=True)
    assert f'href="http://studio.local:9000/atelier/?from={run.run_id}"' in html
    app = gallery.create_app(output, cache_dir=tmp_path / "cache", app_url="https://box:8502")
    assert app.test_client().get(f"/api/runs/{run.path.name}").get_json()["app_link"] == f"https://box:8502/?from={run.run_id}"
    for bad in ("javascript:alert(1)", "localhost:8501", "http://x/?a=1"):
        with pytest.raises(ValueError, match="app URL"):
            gallery.create_app(output, cache_dir=tmp_path / "cache", app_url=bad)
    assert gallery.main([str(output), "--app-url", "ftp://x"]) == 2


def test_loss_chart_has_axes_and_one_curve_per_prompt(output, tmp_path):
    one = make_run(output, "one prompt", stamp="20260101T000001")
    one.append_metrics([{"step": i, "loss": 1.0 / (i + 1), "loss/one prompt": 1.0 / (i + 1)} for i in range(30)])
    two = make_run(output, "a | b", stamp="20260101T000002")
    two.append_metrics([{"step": i * 10, "loss": 3.0 - i / 10, "loss/a": 2.0 - i / 20, "loss/b": 1.0 - i / 20}
                        for i in range(12)])
    client = client_for(output, tmp_path)
    html = client.get(f"/runs/{one.path.name}").get_data(as_text=True)
    assert html.count("<polyline") == 1 and "<title>one prompt</title>" in html
    assert '>step</text>' in html and '>loss</text>' in html
    ticks = re.findall(r'<text class="tick"[^>]*>([^<]+)</text>', html)
    assert {"0", "10", "20"} <= set(ticks) and "1" in ticks
    chart = client.get(f"/api/runs/{two.path.name}").get_json()["chart"]
    assert [s["label"] for s in chart["series"]] == ["total", "a", "b"]
    assert [t["label"] for t in chart["xticks"]] == ["0", "50", "100"]
    assert chart["series"][0]["first"] == 3.0 and chart["series"][2]["last"] == pytest.approx(0.45)


# --- the index: one search box, failed runs, stars and hidden runs ------------------------------


def test_one_search_box_finds_prompts_models_modes_and_status(output, tmp_path):
    vq = make_run(output, "a quiet harbour", model={"vqgan": "imagenet_f16"}, stamp="20260101T000001")
    sd = make_run(output, "a stormy sea", mode="diffusion", model={"name": "dreamshaper_8"}, stamp="20260101T000002")
    failed = make_run(output, "a broken dream", status="failed", image_file=False, stamp="20260101T000003")
    client = client_for(output, tmp_path)

    def found(q):
        return [r["run_id"] for r in client.get("/api/runs", query_string={"q": q}).get_json()["runs"]]

    assert found("dreamshaper") == [sd.run_id]
    assert found("diffusion stormy") == [sd.run_id]
    assert found("imagenet") == [vq.run_id]
    assert found("failed") == [failed.run_id]
    assert found("dream") == [failed.run_id, sd.run_id]  # prompt word and model label prefix
    html = client.get("/").get_data(as_text=True)
    assert html.count('type="search"') == 1 and 'form="search"' in html


def test_failed_runs_are_small_cards_with_their_error(output, tmp_path):
    make_run(output, "fine")
    failed = make_run(output, "too big", status="failed", image_file=False,
                      error="Out of GPU memory at 2048x2048: try a smaller size. " + "x" * 400)
    html = client_for(output, tmp_path).get("/").get_data(as_text=True)
    card = html.split(f'data-run-id="{failed.run_id}"', 1)[1].split("</li>", 1)[0]
    assert "compact" in html.split(f'data-run-id="{failed.run_id}"', 1)[0].rsplit("<li", 1)[1]
    assert "<img" not in card and 'class="noimage"' not in card
    assert "Out of GPU memory at 2048x2048: try a smaller size." in card and "…" in card


def _mark(client, name: str, origin: str | None = "http://localhost", token: str | None = "", **fields):
    token = client.application.extensions["run_index"].secret() if token == "" else token
    headers = {"Origin": origin} if origin else {}
    data = {**{k: str(int(v)) for k, v in fields.items()}, **({"token": token} if token else {})}
    return client.post(f"/runs/{name}/mark", data=data, headers={**headers, "Accept": "application/json"})


def test_star_and_hide_persist_across_restarts_and_index_rebuilds(output, tmp_path, monkeypatch):
    starred = make_run(output, "a favourite", stamp="20260101T000001")
    hidden = make_run(output, "a dud", stamp="20260101T000002")
    plain = make_run(output, "plain", stamp="20260101T000003")
    before = snapshot(output)
    client = client_for(output, tmp_path)
    assert _mark(client, starred.path.name, starred=True).get_json() == {
        "folder": starred.path.name, "starred": True, "hidden": False}
    assert _mark(client, hidden.path.name, hidden=True).status_code == 200

    def ids(query="", client_=None):
        return [r["run_id"] for r in (client_ or client).get(f"/api/runs?{query}").get_json()["runs"]]

    def check(client_):
        assert ids("", client_) == [plain.run_id, starred.run_id]          # hidden runs left out
        assert ids("hidden=1", client_) == [plain.run_id, hidden.run_id, starred.run_id]
        assert ids("starred=1", client_) == [starred.run_id]
        runs_shown = client_.get("/api/runs?hidden=1").get_json()["runs"]
        assert [(r["starred"], r["hidden"]) for r in runs_shown] == [(False, False), (False, True), (True, False)]

    check(client)
    check(client_for(output, tmp_path))                                   # a restart
    monkeypatch.setattr("gallery_web.index.INDEX_VERSION", "rebuilt")     # a new index version: cache dropped
    check(client_for(output, tmp_path))
    (tmp_path / "cache" / "index.sqlite3").unlink()                       # the cache deleted by hand
    check(client_for(output, tmp_path))
    client = client_for(output, tmp_path)
    _mark(client, hidden.path.name, hidden=False)
    _mark(client, starred.path.name, starred=False)
    assert ids() == [plain.run_id, hidden.run_id, starred.run_id] and ids("starred=1") == []
    assert snapshot(output) == before                                    # run folders untouched


def test_marks_are_post_only_and_refused_from_other_sites(output, tmp_path):
    run = make_run(output, "guarded")
    client = client_for(output, tmp_path)
    name = run.path.name
    assert client.get(f"/runs/{name}/mark").status_code == 405
    assert client.get(f"/runs/{name}/mark?starred=1").status_code == 405
    refused = [
        _mark(client, name, origin="https://evil.example", starred=True),       # another site's form
        _mark(client, name, origin="null", starred=True),                       # a sandboxed page
        _mark(client, name, origin=None, starred=True),                         # no Origin, no Referer
        _mark(client, name, token=None, starred=True),                          # no token
        _mark(client, name, token="guessed", starred=True),                     # a wrong token
        client.post(f"/runs/{name}/mark", data={"starred": "1", "token": client.application.extensions["run_index"].secret()},
                    headers={"Origin": "http://evil.example"}, base_url="http://evil.example"),  # DNS rebinding
        client.post(f"/runs/{name}/mark", data={"starred": "1"}, headers={"Referer": "https://evil.example/x"}),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert all(r.headers["X-Content-Type-Options"] == "nosniff" for r in refused)
    assert "Refused" in refused[0].get_data(as_text=True)
    assert client.get("/api/runs?starred=1").get_json()["total"] == 0
    # the gallery's own page: Origin or (without one) Referer is its own address
    ok = client.post(f"/runs/{name}/mark", data={"starred": "1", "token": client.application.extensions["run_index"].secret(),
                                                "next": "//evil.example/"},
                     headers={"Referer": f"http://localhost/runs/{name}"})
    assert ok.status_code == 303 and ok.headers["Location"].endswith(f"/runs/{name}")  # never to another site
    assert client.get("/api/runs?starred=1").get_json()["total"] == 1
    token = client.application.extensions["run_index"].secret()
    bad = client.post(f"/runs/{name}/mark", data={"starred": "maybe", "token": token}, headers={"Origin": "http://localhost"})
    assert bad.status_code == 400 and "starred must be 1 or 0" in bad.get_data(as_text=True)
    assert client.post(f"/runs/{name}/mark", data={"token": "x"}, headers={"Origin": "http://localhost"}).status_code == 403
    assert _mark(client, "nope", starred=True).status_code == 404


def test_kiosk_shows_walk_videos_never_progress_videos_and_honours_starred(output, tmp_path):
    sd = make_run(output, "sd run", mode="diffusion", stamp="20260101T000001")
    vq = make_run(output, "vqgan run", stamp="20260101T000002")
    walk = make_run(output, "a walk", mode="walk", stamp="20260101T000003")
    hidden = make_run(output, "hidden", stamp="20260101T000004")
    for run in (sd, vq, walk):
        run.file(runs.ANIM).write_bytes(b"\x00\x00\x00\x18ftypmp42")
        run.update(progress={"step": 20, "total": 20})
    client = client_for(output, tmp_path)
    _mark(client, hidden.path.name, hidden=True)
    slides = {s["run_id"]: s for s in client.get("/api/slides").get_json()["slides"]}
    assert set(slides) == {sd.run_id, vq.run_id, walk.run_id}
    assert slides[sd.run_id]["video_url"] is None and slides[vq.run_id]["video_url"] is None
    assert "anim.mp4" in slides[walk.run_id]["video_url"]
    assert all(s["image_url"] for s in slides.values())
    _mark(client, vq.path.name, starred=True)
    assert [s["run_id"] for s in client.get("/api/slides?starred=1").get_json()["slides"]] == [vq.run_id]
    assert 'data-slides-url="/api/slides?starred=1"' in client.get("/kiosk?starred=1").get_data(as_text=True)
    kiosk = client_for(output, tmp_path, kiosk=True, kiosk_starred=True)
    assert 'data-slides-url="/api/slides?starred=1"' in kiosk.get("/").get_data(as_text=True)
    assert [s["run_id"] for s in kiosk.get("/api/slides").get_json()["slides"]] == [vq.run_id]
    assert gallery.build_parser().parse_args([str(output), "--kiosk", "--starred"]).starred
