"""The gallery serves data, never active content: headers on every route, inert content types,
no symlink followed for any read, and two folders with one run_id both shown."""

from __future__ import annotations

import json
import os

import pytest

import gallery
from logic import runs
from gallery_helpers import image, make_legacy, make_run


@pytest.fixture
def output(tmp_path):
    folder = tmp_path / "output"
    folder.mkdir()
    return folder


def client_for(output, tmp_path):
    return gallery.create_app(output, cache_dir=tmp_path / "cache", refresh_s=0).test_client()


# --- headers on every route --------------------------------------------------------------------


ROUTES = ["/", "/?fragment=1", "/?q=fox", "/runs/{name}", "/runs/{name}?fragment=1", "/kiosk", "/api/runs",
          "/api/runs/{name}", "/api/version", "/api/slides", "/files/{name}/output.png",
          "/files/{name}/details.json", "/files/{name}/page.html", "/thumb/{name}", "/static/gallery.js",
          "/static/gallery.css", "/runs/nope", "/api/runs/nope", "/files/{name}/missing.png", "/?page=x",
          "/api/runs?per_page=0", "/no/such/route"]


@pytest.mark.parametrize("route", ROUTES)
def test_every_response_says_nosniff_and_pages_run_only_own_scripts(output, tmp_path, route):
    run = make_run(output, "a quick fox")
    (run.path / "page.html").write_text("<script>alert(1)</script>")
    response = client_for(output, tmp_path).get(route.format(name=run.path.name))
    assert response.status_code in (200, 400, 404), route
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    csp = response.headers["Content-Security-Policy"]
    if response.mimetype == "text/html":
        assert "script-src 'self'" in csp and "unsafe-eval" not in csp and "object-src 'none'" in csp
        assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";")[0]
    if route.startswith(("/files/", "/thumb/")) and response.status_code == 200:
        assert "sandbox" in csp and "default-src 'none'" in csp


# --- content types per file kind ---------------------------------------------------------------


@pytest.mark.parametrize("filename, content, mimetype", [
    ("output.png", None, "image/png"),
    ("shot.JPG", None, "image/jpeg"),
    ("anim.gif", b"GIF89a", "image/gif"),
    ("anim.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4"),
    ("details.json", None, "application/json"),
    ("metrics.jsonl", b'{"step": 1}\n', "text/plain"),
    ("notes.txt", b"<script>alert(1)</script>", "text/plain"),
    ("fake.png", b"<html><script>alert(1)</script></html>", "image/png"),  # sniffing is off
])
def test_inert_kinds_are_served_with_their_type(output, tmp_path, filename, content, mimetype):
    run = make_run(output, "a quick fox")
    if content is not None:
        (run.path / filename).write_bytes(content)
    elif not (run.path / filename).exists():
        image(run.path / filename, fmt="JPEG")
    response = client_for(output, tmp_path).get(f"/files/{run.path.name}/{filename}")
    assert response.status_code == 200 and response.mimetype == mimetype
    assert "attachment" not in response.headers.get("Content-Disposition", "")


@pytest.mark.parametrize("filename", ["page.html", "page.HTM", "icon.svg", "code.js", "data.xml", "doc.pdf",
                                      "inputs/x.html", "noextension", "state.pt"])
def test_active_or_unknown_kinds_are_downloads(output, tmp_path, filename):
    run = make_run(output, "a quick fox")
    (run.path / "inputs").mkdir(exist_ok=True)
    (run.path / filename).write_bytes(b"<svg onload=alert(1)><script>alert(1)</script></svg>")
    response = client_for(output, tmp_path).get(f"/files/{run.path.name}/{filename}")
    assert response.status_code == 200
    assert response.mimetype == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# --- symlinks are never followed ---------------------------------------------------------------


@pytest.fixture
def linked(output, tmp_path):
    """A run whose files are symlinks to a secret outside and to a good file inside the output folder."""
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    other = make_run(output, "another run", stamp="20260101T000001")
    run = make_run(output, "a linked run", stamp="20260101T000002", image_file=False)
    os.symlink(other.file(runs.OUTPUT), run.file(runs.OUTPUT))     # inside the output folder, still refused
    os.symlink(other.file(runs.OUTPUT), run.file(runs.THUMB))
    os.symlink(secret, run.file(runs.METRICS))
    (run.path / "inputs").mkdir()
    image(run.path / "inputs" / "init.png")
    os.symlink(secret, run.path / "inputs" / "init-image.png")
    os.symlink(tmp_path, run.path / "inputs" / "folder")
    return client_for(output, tmp_path), run, other, secret


def test_symlinked_run_files_are_not_served_or_shown(linked):
    client, run, other, _ = linked
    name = run.path.name
    for filename in (runs.OUTPUT, runs.THUMB, runs.METRICS, "inputs/init-image.png", "inputs/folder/secret.txt"):
        response = client.get(f"/files/{name}/{filename}")
        assert response.status_code == 404 and b"top secret" not in response.data, filename
    assert client.get(f"/thumb/{name}").status_code == 404
    detail = client.get(f"/api/runs/{name}").get_json()
    assert detail["image_url"] is None and detail["thumb_url"] is None and detail["curves"] == []
    assert [item["name"] for item in detail["inputs"]] == ["init.png"]
    assert client.get(f"/files/{other.path.name}/{runs.OUTPUT}").status_code == 200


def test_symlinks_are_not_followed_by_the_logic_reader(linked, output, tmp_path):
    _, run, _, secret = linked
    assert runs.read_metrics(run.path) == []
    assert runs.list_inputs(run.path, runs.read_details(run.path)) == ["inputs/init.png"]
    assert runs.output_image(run.path, runs.read_details(run.path)) is None
    # details.json a symlink (to a valid run elsewhere), and inputs/ a symlink to a folder
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "details.json").write_text(json.dumps({"schema": 1, "run_id": "x", "prompt": "outside"}))
    (outside / "init.png").write_text("x")
    linked_details = output / "20260101T000003-linkeddetails"
    linked_details.mkdir()
    os.symlink(outside / "details.json", linked_details / "details.json")
    assert runs.read_record(linked_details) is None
    os.rename(run.path / "inputs", run.path / "inputs-real")
    os.symlink(outside, run.path / "inputs")
    assert runs.list_inputs(run.path, runs.read_details(run.path)) == []


def test_a_run_folder_that_is_a_symlink_is_never_read(output, tmp_path):
    real = make_run(tmp_path, "kept elsewhere")
    os.symlink(real.path, output / "20260101T000000-linkedrun")
    make_run(output, "a quick fox")
    assert runs.read_record(output / "20260101T000000-linkedrun") is None
    assert [r.details["prompt"] for r in runs.list_runs(output)] == ["a quick fox"]
    assert runs.mark_interrupted_runs(output) == []
    client = client_for(output, tmp_path)
    assert [r["prompt"] for r in client.get("/api/runs").get_json()["runs"]] == ["a quick fox"]
    assert client.get("/runs/20260101T000000-linkedrun").status_code == 404
    assert client.get(f"/files/20260101T000000-linkedrun/{runs.OUTPUT}").status_code == 404


def test_legacy_inputs_that_are_symlinks_are_not_listed(output, tmp_path):
    folder = make_legacy(output, inputs=True)
    os.symlink(tmp_path, folder / "image-prompt-1.png")
    names = [item["name"] for item in client_for(output, tmp_path).get(f"/api/runs/{folder.name}").get_json()["inputs"]]
    assert names == ["image-prompt-0.png", "init-image.JPEG"]


# --- two folders claiming one run_id -----------------------------------------------------------


def test_two_folders_with_one_run_id_are_both_shown(output, tmp_path):
    first = make_run(output, "the first copy", stamp="20260101T000001")
    second = make_run(output, "the second copy", stamp="20260101T000002")
    second.update(run_id=first.run_id)  # a copied folder, renamed: the folder name decides
    client = client_for(output, tmp_path)
    listing = client.get("/api/runs").get_json()["runs"]
    assert sorted(r["prompt"] for r in listing) == ["the first copy", "the second copy"]
    assert len({r["url"] for r in listing}) == 2
    for run in listing:
        page = client.get(run["url"]).get_data(as_text=True)
        assert run["prompt"] in page
        assert client.get(run["api_url"]).get_json()["prompt"] == run["prompt"]
    ambiguous = client.get(f"/api/runs/{first.run_id}")
    assert ambiguous.status_code == 404
    message = ambiguous.get_json()["error"]
    assert first.path.name in message and second.path.name in message
    slides = client.get("/api/slides").get_json()["slides"]
    assert sorted(s["folder"] for s in slides) == sorted([first.path.name, second.path.name])


def test_a_run_id_one_folder_claims_still_opens(output, tmp_path):
    run = make_run(output, "a quick fox")
    client = client_for(output, tmp_path)
    assert client.get(f"/api/runs/{run.run_id}").get_json()["folder"] == run.path.name
