"""The Streamlit script, driven headless with AppTest."""

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from logic import runs

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def fill_vqgan_form(at, prompt="a red fox", steps=6):
    at.selectbox(key="vqgan_model").set_value("demo")
    at.text_area(key="vqgan_prompt").set_value(prompt)
    at.number_input(key="vqgan_width").set_value(48)
    at.number_input(key="vqgan_height").set_value(48)
    at.number_input(key="vqgan_steps").set_value(steps)
    at.number_input(key="vqgan_cutn").set_value(4)


def submit(at):
    press_run(at, "vqgan_run")


def shown_run_dir(at) -> Path:
    """The run folder the result panel names."""
    return Path(next(c.value for c in at.caption if "Run folder" in c.value).split("`")[1])


def press_run(at, key):
    """Press a sidebar's Run (a plain button with this key) or the submit button of the form ``key``."""
    next(b for b in at.button if b.key == key or (b.key or "").startswith(f"FormSubmitter:{key}")).click()
    at.run()


def wait_until(at, condition, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at.run()
        if condition(at):
            return
        time.sleep(0.5)
    raise AssertionError("timed out waiting for the app")


def test_without_weights_the_app_says_how_to_get_them_and_offers_demo():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    banner = " ".join(w.value for w in at.warning)
    assert "Demo models" in banner and "download-weights.sh" in banner
    assert at.selectbox(key="vqgan_model").value == "demo"


def test_a_demo_run_from_the_sidebar_ends_with_image_video_and_folder(atelier_dirs):
    at = AppTest.from_file(APP, default_timeout=120).run()
    fill_vqgan_form(at)
    submit(at)
    assert not at.exception and not at.error
    wait_until(at, lambda a: len(a.success) > 0)
    assert "Done: 6 steps." in at.success[0].value
    caption = next(c.value for c in at.caption if "Run folder" in c.value)
    run_dir = Path(caption.split("`")[1])
    assert run_dir.parent == atelier_dirs["output"]
    assert runs.read_details(run_dir)["status"] == runs.DONE
    assert (run_dir / "output.png").is_file() and (run_dir / "anim.mp4").is_file()


def test_bad_input_in_the_sidebar_is_one_sentence():
    at = AppTest.from_file(APP, default_timeout=120).run()
    fill_vqgan_form(at, prompt="   ")
    submit(at)
    assert not at.exception
    assert [e.value for e in at.error] == [
        'The prompt is empty: type what the image should show, e.g. "a red fox:1 | blurry:-0.5".']


def test_match_artist_shows_the_top_artists_and_runs_with_the_pick():
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.toggle(key="vqgan_match_artist").set_value(True)
    fill_vqgan_form(at, prompt="a graffiti gorilla", steps=3)
    submit(at)
    assert not at.exception
    picker = at.radio(key="pending-artist")
    assert len(picker.options) == 6 and picker.options[-1] != picker.options[0]  # top 5 + "no artist"
    picker.set_value(picker.options[2]).run()
    chosen = picker.options[2]
    at.button(key="pending_run").click().run()
    wait_until(at, lambda a: len(a.success) > 0)
    run_dir = shown_run_dir(at)
    details = runs.read_details(run_dir)
    assert details["artist_match"]["artist"] == chosen and details["artist_match"]["chosen_by_user"]
    assert details["prompt"] == "a graffiti gorilla"
    assert details["prompt_used"] == f"a graffiti gorilla, in the style of {chosen}"


def test_continue_this_run_from_the_result_makes_a_child_run():
    at = AppTest.from_file(APP, default_timeout=180).run()
    fill_vqgan_form(at, prompt="a garden in spring", steps=3)
    submit(at)
    wait_until(at, lambda a: len(a.success) > 0)
    parent_dir = shown_run_dir(at)
    parent_id = runs.read_details(parent_dir)["run_id"]
    at.text_input(key=f"vqgan_continue_{parent_id}_prompt").set_value("a garden in winter")
    at.number_input(key=f"vqgan_continue_{parent_id}_steps").set_value(2)
    press_run(at, f"vqgan_continue_{parent_id}")
    assert not at.exception and not at.error

    def child_done(a):
        folders = [c.value.split("`")[1] for c in a.caption if "Run folder" in c.value]
        return a.success and folders and Path(folders[0]) != parent_dir

    wait_until(at, child_done)
    child_dir = shown_run_dir(at)
    child = runs.read_details(child_dir)
    assert child["parent_run_id"] == parent_id and child["status"] == runs.DONE
    assert child["prompt_used"].startswith("a garden in winter")


def test_stable_diffusion_mode_without_weights_offers_the_demo_and_runs_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ATELIER_ASSETS", str(tmp_path / "assets"))  # no model that other tests installed
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.radio(key="mode").set_value("diffusion").run()
    banner = " ".join(w.value for w in at.warning)
    assert "Demo model." in banner and "download-weights.sh --sd" in banner and "assets/models/" in banner
    assert at.selectbox(key="sd_model").value == "demo"
    at.text_area(key="sd_prompt").set_value("a castle at dawn")
    at.number_input(key="sd_steps").set_value(2)
    at.number_input(key="sd_width").set_value(64)
    at.number_input(key="sd_height").set_value(64)
    press_run(at, "sd_run")
    assert not at.exception and not at.error
    wait_until(at, lambda a: len(a.success) > 0)
    run_dir = shown_run_dir(at)
    details = runs.read_details(run_dir)
    assert details["mode"] == "diffusion" and details["status"] == runs.DONE and details["demo"] is True


def test_idle_app_shows_recent_runs_and_points_to_the_gallery(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("ATELIER_OUTPUT", str(tmp_path / "output"))
    run = runs.create_run(tmp_path / "output", "vqgan", {"prompt": "an old harbour"})
    Image.new("RGB", (32, 32), "teal").save(run.file(runs.THUMB))
    run.update(status=runs.DONE)
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert [h.value for h in at.subheader] == ["Recent runs"]
    captions = " ".join(c.value for c in at.caption)
    assert "an old harbour · vqgan · done" in captions and "python gallery.py" in captions


def test_vqgan_advanced_settings_from_the_sidebar_reach_the_run():
    at = AppTest.from_file(APP, default_timeout=180).run()
    fill_vqgan_form(at, prompt="a garden in spring ^ a garden in winter", steps=4)
    at.number_input(key="vqgan_story_every").set_value(2)
    at.selectbox(key="vqgan_optimiser").set_value("AdamW")
    at.number_input(key="vqgan_tv_weight").set_value(0.5)
    at.checkbox(key="vqgan_augment").set_value(False)
    at.number_input(key="vqgan_animate_every").set_value(2)
    at.number_input(key="vqgan_zoom").set_value(1.05)
    at.checkbox(key="vqgan_gif").set_value(True)
    submit(at)
    assert not at.exception and not at.error
    wait_until(at, lambda a: len(a.success) > 0)
    run_dir = shown_run_dir(at)
    details = runs.read_details(run_dir)
    params = details["resolved"]
    assert (params["optimiser"], params["tv_weight"], params["augment"], params["zoom"]) == ("AdamW", 0.5, False, 1.05)
    assert params["story_every"] == 2 and len(details["stages"]) == 2
    assert (run_dir / "anim.gif").is_file() and details["frames"] >= 2


def test_a_prompt_walk_from_the_sidebar_makes_keyframes_and_a_video(tmp_path, monkeypatch):
    monkeypatch.setenv("ATELIER_ASSETS", str(tmp_path / "assets"))
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.radio(key="mode").set_value("walk").run()
    assert at.selectbox(key="walk_model").value == "demo"
    at.text_area(key="walk_prompts").set_value("a spring garden\na winter garden")
    at.number_input(key="walk_frames").set_value(3)
    at.number_input(key="walk_steps").set_value(2)
    at.number_input(key="walk_width").set_value(64)
    at.number_input(key="walk_height").set_value(64)
    press_run(at, "walk_run")
    assert not at.exception and not at.error
    wait_until(at, lambda a: len(a.success) > 0)
    run_dir = shown_run_dir(at)
    details = runs.read_details(run_dir)
    assert details["mode"] == "walk" and details["status"] == runs.DONE
    assert sorted(p.name for p in run_dir.glob("keyframe-*.png")) == ["keyframe-01.png", "keyframe-02.png"]
    assert (run_dir / "anim.mp4").is_file()


def test_the_app_follows_another_process_run_and_shows_the_whole_queue(tmp_path, monkeypatch):
    from PIL import Image

    from logic import queue

    output = tmp_path / "output"
    monkeypatch.setenv("ATELIER_OUTPUT", str(output))
    # Another process (here: this test) holds the device and runs a run; the CLI queued two more.
    lock = queue.DeviceLock("cpu")
    assert lock.try_acquire()
    elsewhere = runs.create_run(output, "vqgan", {"prompt": "running elsewhere", "steps": 10})
    elsewhere.update(status=runs.RUNNING, progress={"step": 3, "total": 10})
    Image.new("RGB", (48, 48), "purple").save(elsewhere.file(runs.PREVIEW))
    lock.announce(elsewhere)
    params = {"prompt": "queued by the cli", "demo": True, "size": [32, 32], "steps": 2}
    queued = [queue.enqueue("vqgan", params, output) for _ in range(2)]
    try:
        at = AppTest.from_file(APP, default_timeout=120).run()
        assert not at.exception
        assert "Step 3/10" in " ".join(str(p.proto.text) for p in at.get("progress"))
        assert any(s.value == "Queue (2)" for s in at.subheader)
        shown = " ".join(m.value for m in at.markdown)
        assert all(r.run_id in shown for r in queued)
        at.button(key=f"front_{queued[1].run_id}").click().run()
        assert [e.path for e in queue.entries(output)] == [queued[1].path, queued[0].path]
        at.button(key=f"remove_{queued[0].run_id}").click().run()
        assert runs.read_details(queued[0].path)["status"] == runs.STOPPED
    finally:
        for run in queued:
            queue.request_stop(runs.open_run(run.path))
        lock.release()
        queue.get_worker("cpu", output).close(timeout=30)
