"""The app's main area, headless (AppTest): finished runs with seeds and downloads, the queue panel,
the quick defaults of a machine without a GPU, the long-run question and the messages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from logic import jobs, queue, runs
from logic.devices import has_cuda, resolve_device

from test_app import APP, fill_vqgan_form, submit, press_run
from test_estimate import finished_run


def make_run(output: Path, mode: str, params: dict) -> runs.Run:
    """A real run with the demo models, made the way the worker makes it."""
    engine, spec, run = jobs.submit_run(mode, params, output)
    state = jobs.execute_run(engine, spec, run, device="cpu")
    assert state.status == runs.DONE, state.error
    return runs.open_run(run.path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished run of each kind the result panel shows differently, in one output folder."""
    output = tmp_path_factory.mktemp("results-output")
    old = os.environ["ATELIER_OUTPUT"]
    os.environ["ATELIER_OUTPUT"] = str(output)
    made = {
        "vqgan": make_run(output, "vqgan", {"prompt": "a red fox", "demo": True, "size": [32, 32], "steps": 2,
                                            "cutn": 1, "seed": 11, "gif": True, "every": 1}),
        "batch": make_run(output, "diffusion", {"prompt": "a castle", "model": "demo", "demo": True,
                                                "size": [64, 64], "steps": 2, "seed": 40, "batch_size": 2,
                                                "preview_every": 0, "safety": False}),
        "walk": make_run(output, "walk", {"prompts": ["a spring garden", "a winter garden"], "model": "demo",
                                          "demo": True, "size": [64, 64], "steps": 2, "frames": 3, "fps": 4,
                                          "seeds": [5, 6], "safety": False}),
    }
    yield made
    os.environ["ATELIER_OUTPUT"] = old


def show(run: runs.Run) -> AppTest:
    """The app with ``run`` as the watched run (as after pressing Run and waiting)."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["watch"] = run.run_id
    at.run()
    assert not at.exception
    return at


def image_captions(at) -> list[str]:
    return [img.caption for element in at.get("image") for img in element.proto.imgs]


def download_labels(at) -> list[str]:
    return [button.proto.label for button in at.get("download_button")]


def test_a_finished_run_shows_its_seed_downloads_and_a_one_line_loss_chart(finished):
    at = show(finished["vqgan"])
    assert [s.value for s in at.subheader] == ["VQGAN+CLIP: a red fox"]
    assert [s.value for s in at.success] == ["Done: 2 steps."]
    assert image_captions(at) == ["a red fox · seed 11"]
    assert download_labels(at) == ["Download image", "Download video (mp4)", "Download GIF"]
    assert all(button.proto.url for button in at.get("download_button"))
    # one prompt: its loss is the total, so the chart has one line, with named axes
    chart = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    encoding = chart["layer"][0]["encoding"]
    assert "color" not in encoding and encoding["y"]["field"] == "loss"
    assert encoding["x"]["title"] == "step" and encoding["y"]["title"] == "loss"


def test_loss_chart_has_one_line_per_distinct_prompt():
    from ui.live import loss_frame

    one = [{"step": i, "loss": 1.0 / i, "loss/a fox": 1.0 / i} for i in range(1, 5)]
    assert list(loss_frame(one).columns) == ["loss"]
    two = [{"step": i, "loss": 3.0 / i, "loss/a fox": 1.0 / i, "loss/blurry": 2.0 / i} for i in range(1, 5)]
    assert list(loss_frame(two).columns) == ["a fox", "blurry", "total"]


def test_a_batch_shows_every_image_with_its_seed_and_the_grid(finished):
    run = finished["batch"]
    at = show(run)
    assert [s.value for s in at.success] == ["Done: 2 images, 2 steps each."]
    assert image_captions(at) == ["Image 1 of 2 · seed 40", "Image 2 of 2 · seed 41",
                                  "All images of the batch side by side"]
    assert download_labels(at) == ["Download image", "Download image", "Download the grid", "Download video (mp4)"]
    assert [b.key for b in at.button if b.label == "Again, alone"] == [f"sd_again_{run.run_id}_i0",
                                                                       f"sd_again_{run.run_id}_i1"]
    # the sidebar is still on VQGAN+CLIP: the result names its own mode
    assert at.subheader[0].value == "Stable Diffusion: a castle"
    assert any("was a Stable Diffusion run" in c.value for c in at.caption)


def test_a_walk_shows_its_keyframes_and_the_length_of_its_video(finished):
    run = finished["walk"]
    at = show(run)
    assert [s.value for s in at.success] == ["Done: 4 frames (1.0 s of video)."]
    assert image_captions(at) == ["Keyframe 1: a spring garden · seed 5", "Keyframe 2: a winter garden · seed 6"]
    assert at.subheader[0].value == "Prompt walk: a spring garden → a winter garden"
    assert "Download video (mp4)" in download_labels(at)
    # each keyframe's seed and image can be reused: seed 6 goes to the walk's seeds field
    next(b for b in at.button if b.key == f"reuse_seed_{run.run_id}_k1").click().run()
    assert at.radio(key="mode").value == "walk" and at.text_input(key="walk_seeds").value == "6"
    assert any("Seed 6 is in the sidebar" in i.value for i in at.info)
    assert f"reuse_img2img_{run.run_id}_k0" in [b.key for b in at.button]


def test_the_queue_panel_shows_the_running_run_first_with_its_progress(tmp_path, monkeypatch):
    from PIL import Image

    output = tmp_path / "output"
    monkeypatch.setenv("ATELIER_OUTPUT", str(output))
    device = resolve_device("auto")  # the device the app's worker runs on
    lock = queue.DeviceLock(device)  # another process runs a run on it
    assert lock.try_acquire()
    running = runs.create_run(output, "vqgan", {"prompt": "running elsewhere", "steps": 10})
    running.update(status=runs.RUNNING, progress={"step": 4, "total": 10})
    Image.new("RGB", (48, 48), "purple").save(running.file(runs.PREVIEW))
    lock.announce(running)
    waiting = [queue.enqueue("vqgan", {"prompt": f"waiting {i}", "demo": True, "size": [32, 32], "steps": 2}, output)
               for i in range(2)]
    try:
        at = AppTest.from_file(APP, default_timeout=120).run()
        assert not at.exception
        rows = [m.value for m in at.markdown if m.value.startswith("**")]
        assert rows == [f"**Running** `{running.run_id}` vqgan: running elsewhere",
                        f"**1.** `{waiting[0].run_id}` vqgan: waiting 0",
                        f"**2.** `{waiting[1].run_id}` vqgan: waiting 1"]
        bars = [str(p.proto.text) for p in at.get("progress")]
        assert len(bars) == 2 and all("Step 4/10" in text for text in bars)  # the watched run, and its queue row
        assert at.button(key=f"queue_stop_{running.run_id}") is not None
    finally:
        for run in waiting:
            queue.request_stop(runs.open_run(run.path))
        lock.release()
        queue.get_worker(device, output).close(timeout=30)


@pytest.mark.skipif(has_cuda(), reason="the quick defaults are what a machine without a GPU starts from")
def test_without_a_gpu_the_sidebar_starts_small_and_says_why():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert any("small, quick defaults; raise them for full-size work" in c.value for c in at.sidebar.caption)
    values = [at.number_input(key=k).value for k in ("vqgan_width", "vqgan_height", "vqgan_steps", "vqgan_cutn")]
    assert values == [128, 128, 50, 16]
    at.radio(key="mode").set_value("diffusion").run()
    assert [at.number_input(key=k).value for k in ("sd_width", "sd_steps")] == [256, 12]
    at.radio(key="mode").set_value("walk").run()
    assert [at.number_input(key=k).value for k in ("walk_width", "walk_steps", "walk_frames")] == [256, 6, 4]


def test_a_long_run_asks_first_and_messages_are_about_the_latest_run(tmp_path, monkeypatch):
    output = tmp_path / "output"
    monkeypatch.setenv("ATELIER_OUTPUT", str(output))
    device = resolve_device("auto")
    for _ in range(2):  # recent runs of 48x48 took 30 s a step: 30 steps take 15 minutes
        finished_run(output, size=(48, 48), step_s=30.0, load_s=1.0, device=device)
    before = run_folders(output)
    lock = queue.DeviceLock(device)  # the device is busy: the confirmed run waits in the queue
    assert lock.try_acquire()
    try:
        ask_before_a_long_run(output, before)
    finally:
        lock.release()
        queue.get_worker(device, output).close(timeout=30)


def run_folders(output: Path) -> set:
    """The run folders (dot names are the app's settings file and the queue index, not runs)."""
    return {p for p in output.iterdir() if not p.name.startswith(".")}


def ask_before_a_long_run(output: Path, before: set) -> None:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["watch"] = runs.list_runs(output)[0].run_id  # the page shows a finished run
    at.run()
    assert [s.value for s in at.success] == ["Done: 0 steps."]
    # bad input: one sentence in the main area, none in the sidebar
    fill_vqgan_form(at, prompt="   ", steps=30)
    submit(at)
    assert [e.value for e in at.main.error] == [
        'The prompt is empty: type what the image should show, e.g. "a red fox:1 | blurry:-0.5".']
    assert not at.sidebar.error
    # a long run: the estimate is shown and nothing is queued until confirmed; the old error is gone
    at.text_area(key="vqgan_prompt").set_value("a slow fox")
    submit(at)
    assert not at.error
    question = " ".join(w.value for w in at.warning)
    assert "This run will take about 15 min" in question and "recent runs" in question
    assert run_folders(output) == before
    at.button(key="pending_long_cancel").click().run()
    assert not any("This run will take" in w.value for w in at.warning) and run_folders(output) == before
    submit(at)
    at.button(key="pending_long_run").click().run()
    assert not at.exception and not at.error
    new = [p for p in run_folders(output) - before if not p.name.startswith(".")]
    assert len(new) == 1 and runs.read_details(new[0])["prompt"] == "a slow fox"
    # the page follows the new run: nothing of the previous run's outcome stays
    assert not at.success and at.subheader[0].value == "VQGAN+CLIP: a slow fox"
    assert [i.value for i in at.info] == ["Queued: it starts when the runs before it end (the queue is below)."]
    assert runs.read_details(new[0])["status"] == runs.QUEUED
    queue.request_stop(runs.open_run(new[0]))


def test_app_errors_name_no_command_line_flags():
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.radio(key="mode").set_value("diffusion").run()
    at.radio(key="sd_task").set_value("img2img").run()
    press_run(at, "sd_run")
    assert [e.value for e in at.main.error] == ["Image to image needs an init image: give the picture to start from."]
    at.radio(key="mode").set_value("walk").run()
    at.text_area(key="walk_prompts").set_value("only one keyframe")
    press_run(at, "walk_run")
    assert [e.value for e in at.main.error] == ["A walk needs two or more non-empty prompts, one per keyframe."]
