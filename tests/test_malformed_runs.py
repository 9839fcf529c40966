"""No malformed run folder takes anything down: each shape is skipped with a warning naming the
folder, while every other run still lists, searches and opens (gallery, listing, CLI start, app)."""

from __future__ import annotations

import json
import logging
import os
import re
import socket

import pytest

import gallery
from logic import runs
from logic.commands.rerun import rerun_params
from logic.errors import UserError
from gallery_helpers import age, image, make_legacy, make_run

GOOD = {"schema": 1, "run_id": "BADRUN01", "mode": "vqgan", "status": "running", "prompt": "a broken thing",
        "params": {"prompt": "a broken thing", "steps": 5}, "progress": {"step": 1, "total": 5},
        "owner": {"host": socket.gethostname(), "pid": 1, "start": "1"}}


def _json(**changes) -> str:
    return json.dumps({**GOOD, **changes})


def _huge(path):
    """A 100 MB details.json (sparse: the reader must refuse it by size, before reading it)."""
    with open(path, "wb") as handle:
        handle.write(b'{"schema": 1, "prompt": "')
        handle.truncate(100 * 1024 * 1024)


def _fifo(path):
    os.mkfifo(path)  # reading it would block for ever


def _symlink(path):
    target = path.parent.parent / "elsewhere.json"
    target.write_text(_json(prompt="through a link"))
    os.symlink(target, path)


# name -> what details.json is (text, bytes, or a function making it)
SHAPES = {
    "list": "[1, 2, 3]",
    "string": '"a run"',
    "null": "null",
    "empty": "",
    "string-owner": _json(owner="me"),
    "owner-huge-pid": _json(owner={"host": socket.gethostname(), "pid": 10**30, "start": None}),
    "owner-bool-pid": _json(owner={"host": socket.gethostname(), "pid": True, "start": None}),
    "dict-prompt": _json(prompt={"text": "a fox"}),
    "list-mode": _json(mode=["vqgan"]),
    "number-status": _json(status=3),
    "dict-created": _json(created={"at": 1}),
    "dict-error": _json(error={"why": "x"}),
    "list-params": _json(params=["prompt"]),
    "string-progress": _json(progress="1 of 5"),
    "nan-progress": _json(progress={"step": 1, "total": 5}).replace('"step": 1', '"step": NaN'),
    "infinite-eta": _json().replace('"status"', '"eta_s": Infinity, "status"'),
    "text-progress-step": _json(progress={"step": "one", "total": 5}),
    "string-timing": _json(timing={"load_s": "fast"}),
    "number-model": _json(model=7),
    "text-seed": _json(seed="42"),
    "slash-run-id": _json(run_id="../../etc"),
    "deep-100000": '{"schema": 1, "params": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "deep-40": '{"schema": 1, "params": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}",
    "invalid-utf8": b'{"schema": 1, "prompt": "caf\xe9 \xff\xfe"}',
    "huge-100mb": _huge,
    "fifo": _fifo,
    "symlink": _symlink,
    "legacy-dict-prompt": json.dumps({"text_input": {"a": 1}, "num_steps": 3}),
}


def make_malformed(output, shape: str):
    """A folder named for its shape, newer than every good run (so the CLI's newest-200 scan sees it)."""
    folder = output / f"20991231T235959-bad-{shape}"
    folder.mkdir()
    image(folder / ("output.PNG" if shape.startswith("legacy") else "output.png"))
    if shape.startswith("legacy"):
        folder = folder.rename(output / f"20991231T235959_bad-{shape}")
    content = SHAPES[shape]
    target = folder / runs.DETAILS
    if callable(content):
        content(target)
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    return folder


@pytest.fixture
def output(tmp_path):
    folder = tmp_path / "output"
    folder.mkdir()
    return folder


def good_runs(output):
    fox = make_run(output, "a quick fox", stamp="20260101T000001", thumb=True)
    fox.append_metrics([{"step": 1, "loss": 0.9}, {"step": 2, "loss": 0.5}])
    harbour = make_run(output, "an old harbour", stamp="20260101T000002")
    legacy = make_legacy(output, "20210805T101010_old", prompt="an old lighthouse")
    return fox, harbour, legacy


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_malformed_folder_is_skipped_and_everything_else_works(output, tmp_path, shape, caplog):
    fox, harbour, legacy = good_runs(output)
    bad = make_malformed(output, shape)
    client = gallery.create_app(output, cache_dir=tmp_path / "cache", refresh_s=0).test_client()
    with caplog.at_level(logging.WARNING):
        listing = client.get("/api/runs").get_json()
    # The bad folder is skipped with a warning naming it; the others are all there.
    assert bad.name in caplog.text
    assert sorted(r["folder"] for r in listing["runs"]) == sorted([fox.path.name, harbour.path.name, legacy.name])
    # Every page still works.
    home = client.get("/")
    assert home.status_code == 200 and "a quick fox" in home.get_data(as_text=True)
    assert [r["folder"] for r in client.get("/api/runs?q=fox").get_json()["runs"]] == [fox.path.name]
    for folder in (fox.path.name, harbour.path.name, legacy.name):
        assert client.get(f"/runs/{folder}").status_code == 200
        assert client.get(f"/api/runs/{folder}").status_code == 200
    assert client.get(f"/runs/{bad.name}").status_code == 404
    assert client.get("/kiosk").status_code == 200 and client.get("/api/slides").status_code == 200
    assert client.get("/?status=done&mode=vqgan").status_code == 200
    # The logic layer: listing, the orphan scan of every CLI and app start, opening, rerun.
    assert {r.path.name for r in runs.list_runs(output)} == {fox.path.name, harbour.path.name, legacy.name}
    assert runs.mark_interrupted_runs(output, newest=200) == []
    assert runs.read_details(bad) is None and runs.find_run(output, bad.name.split("-", 1)[1]) is None
    with pytest.raises(UserError) as refused:
        rerun_params(bad)
    assert str(refused.value).count(". ") == 0 and bad.name in str(refused.value)


def test_the_app_recent_runs_list_survives_every_malformed_shape(output):
    from ui import live

    fox, harbour, legacy = good_runs(output)
    for shape in SHAPES:
        make_malformed(output, shape)
    live.recent_runs.clear()
    found = live.recent_runs(str(output), limit=8)
    assert [item["folder"] for item in found] == [harbour.path.name, fox.path.name, legacy.name]


def test_a_cli_run_into_a_folder_full_of_malformed_runs_works(output):
    from test_cli import cli

    for shape in SHAPES:
        make_malformed(output, shape)
    result = cli("vqgan", "--demo", "--prompt", "a fox", "--steps", "1", "--size", "32", "32", "--cutn", "2",
                 "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    made = runs.read_record(result.stdout.strip().splitlines()[-1])
    assert made is not None and made.status == runs.DONE
    assert len(runs.list_runs(output)) == 1


def test_a_repaired_folder_reappears_without_deleting_the_cache(output, tmp_path, monkeypatch):
    make_run(output, "a quick fox", stamp="20260101T000001")
    bad = make_malformed(output, "dict-prompt")
    age(output)
    client = gallery.create_app(output, cache_dir=tmp_path / "cache", refresh_s=0).test_client()
    assert client.get("/api/runs").get_json()["total"] == 1
    # Repaired in place (the folder's time does not change), as an editor saving over it does.
    folder_time = bad.stat().st_mtime_ns
    with open(bad / runs.DETAILS, "r+") as handle:
        handle.write(_json(prompt="mended", status="done", owner=None))
        handle.truncate()
    os.utime(bad, ns=(folder_time, folder_time))
    assert bad.stat().st_mtime_ns == folder_time
    monkeypatch.setattr("gallery_web.index.FULL_SWEEP_S", 0.0)
    prompts = [r["prompt"] for r in client.get("/api/runs").get_json()["runs"]]
    assert prompts == ["mended", "a quick fox"]
    # And a fresh app on the same cache (a restart) sees it too.
    again = gallery.create_app(output, cache_dir=tmp_path / "cache", refresh_s=0).test_client()
    assert again.get("/api/runs").get_json()["total"] == 2


def test_our_own_writer_never_writes_numbers_the_reader_refuses(output):
    run = runs.create_run(output, "vqgan", {"prompt": "x", "lr": float("nan")})
    run.update(it_s=float("inf"), progress={"step": float("nan"), "total": 5})
    record = runs.read_record(run.path)
    assert record is not None and record.it_s is None and record.step is None and record.params["lr"] is None


def test_records_are_typed_and_keep_unknown_keys(output):
    run = runs.create_run(output, "vqgan", {"prompt": "a fox", "steps": 3}, model="plain-name",
                          future_key={"kept": True})
    record = runs.read_record(run.path)
    assert record.model == {"name": "plain-name"} and record.total == 3 and record.step == 0
    assert record.details["future_key"] == {"kept": True}
    with pytest.raises(AttributeError):
        record.prompt = "changed"  # frozen: a record is what the folder said


def test_metrics_rows_that_are_not_objects_are_dropped(output):
    run = runs.create_run(output, "vqgan", {"prompt": "x"})
    lines = ['[1, 2]', '"text"', '{"step": 1, "loss": 0.5}', "[" * 100_000, '{"step": 2, "loss": 0.4}']
    run.file(runs.METRICS).write_text("\n".join(lines) + "\n")
    assert runs.read_metrics(run.path) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4}]


def test_no_page_has_an_inline_script(output, tmp_path):
    fox, _, _ = good_runs(output)
    client = gallery.create_app(output, cache_dir=tmp_path / "cache", refresh_s=0).test_client()
    for url in ("/", "/?fragment=1", f"/runs/{fox.path.name}", f"/runs/{fox.path.name}?fragment=1", "/kiosk",
                "/runs/nope", "/?page=x"):
        html = client.get(url).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), url
        assert not re.search(r"\son[a-z]+\s*=", html), url
