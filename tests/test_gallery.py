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
    assert data["q"] == "" and data["filters"] == {"mode": "", "model": "", "status": ""}


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
    assert "<th>steps</th><td>20</td>" in html and "<th>seed used</th><td>7</td>" in html
    assert "median_step_s" in html
    assert f"/files/{run.path.name}/inputs/init.png" in html
    assert f'href="/runs/{parent.path.name}"' in html and f'href="/runs/{child.path.name}"' in html
    assert html.count("<polyline") == 2 and "loss/castle" in html


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


def test_pages_use_no_external_assets(output, tmp_path):
    run = make_run(output, "offline")
    client = client_for(output, tmp_path)
    for url in ("/", f"/runs/{run.run_id}", "/kiosk"):
        html = client.get(url).get_data(as_text=True)
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
