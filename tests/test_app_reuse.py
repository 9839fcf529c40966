"""Settings that last (mode switches, reloads) and reusing a run from the app (ui/reuse.py), with AppTest."""

import shutil
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from logic import jobs, runs, settings
from test_app import APP, shown_run_dir, press_run, wait_until

VQGAN = {"prompt": "an old mill", "demo": True, "size": [48, 48], "cutn": 4, "seed": 11, "lr": 0.2, "steps": 3,
         "augment": False}


def demo_vqgan_run(output, **params):
    engine, spec, run = jobs.submit_run("vqgan", {**VQGAN, **params}, output)
    jobs.execute_run(engine, spec, run, device="cpu", cache=jobs.ModelCache())
    return runs.open_run(run.path)


def finished_run(output, mode, request, files, **recorded):
    """A finished run written as its engine records one (hand-made: no model runs)."""
    run = runs.create_run(output, mode, request, {**request, **recorded.pop("resolved", {})})
    for name, colour in files.items():
        Image.new("RGB", (64, 64), colour).save(run.file(name))
    Image.new("RGB", (64, 64), next(iter(files.values()))).save(run.file(runs.THUMB))
    run.update(status=runs.DONE, **recorded)
    return run


def sd_batch_run(output):
    """A two-image Stable Diffusion batch: each image its own seed, as diffusion._finish records them."""
    request = {"prompt": "a castle at dawn", "model": "demo", "batch_size": 2, "steps": 2, "size": [64, 64],
               "cfg": 5.0, "seed": 5}
    files = {"output.png": "navy", "image-01-5.png": "navy", "image-02-6.png": "olive"}
    return finished_run(output, "diffusion", request, files, seed=5, resolved={"seeds": [5, 6], "demo": True},
                        images=[{"file": "image-01-5.png", "seed": 5}, {"file": "image-02-6.png", "seed": 6}])


@pytest.fixture(scope="module")
def made_runs(tmp_path_factory, atelier_dirs):
    """An older and a newer VQGAN run (real, with state.pt) and an SD batch, in one output folder."""
    output = tmp_path_factory.mktemp("reuse") / "output"
    older = demo_vqgan_run(output)
    newer = finished_run(output, "vqgan", {**VQGAN, "prompt": "a new mill", "seed": 12}, {"output.png": "grey"},
                         seed=12)
    batch = sd_batch_run(output)
    return {"output": output, "older": older.run_id, "newer": newer.run_id, "batch": batch.run_id}


@pytest.fixture
def app_output(made_runs, tmp_path, monkeypatch):
    """A copy of the runs for one test: its own settings file and its own worker (no run shown yet)."""
    output = tmp_path / "output"
    shutil.copytree(made_runs["output"], output)
    monkeypatch.setenv("ATELIER_OUTPUT", str(output))
    return output


def app(**query):
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update(query)
    return at.run()


def folder(output, run_id) -> Path:
    return runs.find_run(output, run_id).path


def texts(elements) -> str:
    return " ".join(e.value for e in elements)


def test_switching_mode_and_task_and_back_keeps_every_field(tmp_path, monkeypatch):
    monkeypatch.setenv("ATELIER_OUTPUT", str(tmp_path / "output"))
    at = app()
    vqgan = {"vqgan_prompt": "a fox in snow", "vqgan_lr": 0.35, "vqgan_steps": 17, "vqgan_width": 96,
             "vqgan_seed": "not a seed", "vqgan_noise_prompts": "42:0.5", "vqgan_zoom": 1.05}
    at.text_area(key="vqgan_prompt").set_value(vqgan["vqgan_prompt"])
    for key in ("vqgan_lr", "vqgan_steps", "vqgan_width", "vqgan_zoom"):
        at.number_input(key=key).set_value(vqgan[key])
    for key in ("vqgan_seed", "vqgan_noise_prompts"):
        at.text_input(key=key).set_value(vqgan[key])
    at.selectbox(key="vqgan_optimiser").set_value("AdamW")
    at.multiselect(key="vqgan_augments").set_value(["Hf"])
    at.checkbox(key="vqgan_gif").set_value(True)
    # No Run: an edit left unrun is kept too (the sidebars are not forms)
    at.radio(key="mode").set_value("diffusion").run()
    at.radio(key="sd_task").set_value("hires").run()
    at.text_area(key="sd_prompt").set_value("a castle")
    at.number_input(key="sd_hires_scale").set_value(1.5)
    at.text_input(key="sd_seed").set_value("x")
    at.radio(key="sd_task").set_value("txt2img").run()  # the hires fields are not drawn now
    at.radio(key="mode").set_value("walk").run()
    at.radio(key="mode").set_value("vqgan").run()

    assert not at.exception
    assert at.text_area(key="vqgan_prompt").value == "a fox in snow"
    assert [at.number_input(key=k).value for k in ("vqgan_lr", "vqgan_steps", "vqgan_width", "vqgan_zoom")] == \
        [0.35, 17, 96, 1.05]
    assert at.text_input(key="vqgan_seed").value == "not a seed"
    assert at.text_input(key="vqgan_noise_prompts").value == "42:0.5"
    assert at.selectbox(key="vqgan_optimiser").value == "AdamW" and at.multiselect(key="vqgan_augments").value == ["Hf"]
    assert at.checkbox(key="vqgan_gif").value is True
    at.radio(key="mode").set_value("diffusion").run()
    assert (at.radio(key="sd_task").value, at.text_area(key="sd_prompt").value) == ("txt2img", "a castle")
    at.radio(key="sd_task").set_value("hires").run()
    assert at.number_input(key="sd_hires_scale").value == 1.5

    reloaded = app()  # a new page (reload, another tab): the settings file in output/ brings them back
    assert reloaded.radio(key="mode").value == "diffusion" and reloaded.radio(key="sd_task").value == "hires"
    assert reloaded.text_area(key="sd_prompt").value == "a castle"
    reloaded.radio(key="mode").set_value("vqgan").run()
    assert reloaded.text_area(key="vqgan_prompt").value == "a fox in snow"
    assert reloaded.number_input(key="vqgan_lr").value == 0.35


def test_a_broken_settings_file_is_left_aside(tmp_path, monkeypatch):
    output = tmp_path / "output"
    output.mkdir()
    (output / ".app-settings.json").write_text('{"mode": "walk", "fields": {"walk_frames": "many", '
                                               '"walk_prompts": "a\\nb"}, "files": {"x": 1}}')
    monkeypatch.setenv("ATELIER_OUTPUT", str(output))
    at = app()
    assert not at.exception and at.radio(key="mode").value == "walk"
    assert at.text_area(key="walk_prompts").value == "a\nb" and at.number_input(key="walk_frames").value == settings.quick_defaults("walk")["frames"]
    (output / ".app-settings.json").write_text("{not json")
    assert not app().exception


def test_from_run_id_in_the_url_loads_that_run_and_switches_mode(app_output, made_runs):
    at = app(**{"from": made_runs["batch"]})
    assert not at.exception
    assert at.radio(key="mode").value == "diffusion"
    assert at.text_area(key="sd_prompt").value == "a castle at dawn"
    assert (at.text_input(key="sd_seed").value, at.number_input(key="sd_batch_size").value) == ("5", 2)
    assert (at.number_input(key="sd_width").value, at.number_input(key="sd_cfg").value) == (64, 5.0)
    assert f"The settings of run {made_runs['batch']} are in the sidebar" in texts(at.info)

    at = app(**{"from": made_runs["older"]})
    assert at.radio(key="mode").value == "vqgan" and at.text_area(key="vqgan_prompt").value == "an old mill"
    assert (at.text_input(key="vqgan_seed").value, at.number_input(key="vqgan_lr").value) == ("11", 0.2)
    assert at.checkbox(key="vqgan_augment").value is False  # as asked, not the default


def test_an_unknown_run_id_in_the_url_is_one_sentence(app_output):
    at = app(**{"from": "nosuchrun"})
    assert not at.exception and at.radio(key="mode").value == "vqgan"
    assert [w.value for w in at.warning if "nosuchrun" in w.value] == [
        f"There is no run 'nosuchrun' in {app_output}: the settings in the sidebar are the ones you had."]


def test_use_these_settings_and_reuse_seed_on_a_recent_run(app_output, made_runs):
    at = app()
    at.radio(key="mode").set_value("diffusion").run()
    at.button(key=f"reuse_recent_{made_runs['newer']}_settings").click().run()
    assert at.radio(key="mode").value == "vqgan" and at.text_area(key="vqgan_prompt").value == "a new mill"
    assert at.text_input(key="vqgan_seed").value == "12"
    at.text_input(key="vqgan_seed").set_value("")
    at.button(key=f"reuse_recent_{made_runs['older']}_seed").click().run()
    assert at.text_input(key="vqgan_seed").value == "11" and at.text_area(key="vqgan_prompt").value == "a new mill"


def test_send_to_img2img_and_use_as_init_image_reach_the_run(app_output, made_runs):
    older = folder(app_output, made_runs["older"])
    at = app()
    at.button(key=f"reuse_recent_{made_runs['older']}_img2img").click().run()
    assert at.radio(key="mode").value == "diffusion" and at.radio(key="sd_task").value == "img2img"
    assert f"Init image: output.png from run {made_runs['older']}" in texts(at.caption)
    assert not [u for u in at.file_uploader if u.key == "sd_init_image"]  # the loaded file stands in for it

    at.button(key=f"reuse_recent_{made_runs['batch']}_init").click().run()
    assert at.radio(key="mode").value == "vqgan"
    assert f"Init image: output.png from run {made_runs['batch']}" in texts(at.caption)
    at.text_area(key="vqgan_prompt").set_value("a mill from a castle")
    at.number_input(key="vqgan_steps").set_value(1)
    at.number_input(key="vqgan_width").set_value(48)
    at.number_input(key="vqgan_height").set_value(48)
    press_run(at, "vqgan_run")
    assert not at.exception and not at.error
    wait_until(at, lambda a: len(a.success) > 0)
    made = runs.read_details(shown_run_dir(at))
    assert made["request"]["init_image"] == str(folder(app_output, made_runs["batch"]) / "output.png")
    assert (shown_run_dir(at) / "inputs" / "init-image.png").is_file()

    at.radio(key="mode").set_value("diffusion").run()  # the img2img image is still there, and can go
    assert f"Init image: output.png from run {made_runs['older']}" in texts(at.caption)
    at.button(key="clear_sd_init_image").click().run()
    assert at.file_uploader(key="sd_init_image") is not None
    assert str(older) not in str(at.session_state["loaded_files"])


def test_reuse_seed_and_send_to_img2img_of_one_image_of_a_batch(app_output, made_runs):
    batch = made_runs["batch"]
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["watch"] = batch  # the batch is the run shown in the main area
    at.run()
    at.button(key=f"reuse_seed_{batch}_i1").click().run()
    assert at.radio(key="mode").value == "diffusion" and at.text_input(key="sd_seed").value == "6"
    at.button(key=f"reuse_img2img_{batch}_i1").click().run()
    assert at.radio(key="sd_task").value == "img2img"
    assert f"Init image: image-02-6.png from run {batch}" in texts(at.caption)
    loaded = at.session_state["loaded_files"]["sd_init_image"]["value"]
    assert loaded == str(folder(app_output, batch) / "image-02-6.png")


def test_continue_an_older_vqgan_run_with_other_settings(app_output, made_runs):
    older = folder(app_output, made_runs["older"])
    at = app()
    at.button(key=f"reuse_recent_{made_runs['older']}_continue").click().run()
    assert f"Continues run {made_runs['older']}" in texts(at.info)
    assert at.text_area(key="vqgan_prompt").value == "an old mill" and at.number_input(key="vqgan_lr").value == 0.2
    at.number_input(key="vqgan_lr").set_value(0.05)
    at.number_input(key="vqgan_steps").set_value(2)
    press_run(at, "vqgan_run")
    assert not at.exception and not at.error
    wait_until(at, lambda a: len(a.success) + len(a.error) > 0)
    assert not at.error, at.error[0].value
    child_dir = shown_run_dir(at)
    child = runs.read_details(child_dir)
    assert child["request"]["continue_from"] == str(older.resolve())
    assert (child["request"]["lr"], child["request"]["steps"]) == (0.05, 2)
    assert child["parent_run_id"] == made_runs["older"] and child["status"] == runs.DONE
    assert not [i for i in at.info if "Continues run" in i.value]  # queued: the sidebar starts fresh again

    # The shown child's settings: a continuation again, of the same parent, with the child's lr.
    at.button(key=f"reuse_result_{child['run_id']}_settings").click().run()
    assert f"Continues run {made_runs['older']}" in texts(at.info)
    assert at.number_input(key="vqgan_lr").value == 0.05
    at.button(key="stop_continuing").click().run()
    assert not [i for i in at.info if "Continues run" in i.value]


def test_an_upload_error_names_the_file_as_uploaded(tmp_path, monkeypatch):
    monkeypatch.setenv("ATELIER_OUTPUT", str(tmp_path / "output"))
    at = app()
    at.text_area(key="vqgan_prompt").set_value("a fox")
    at.file_uploader(key="vqgan_init_image").set_value(("cat.png", b"this is no picture", "image/png"))
    press_run(at, "vqgan_run")
    assert [e.value for e in at.error] == [
        "The init image cat.png is not an image Pillow can read: give a PNG, JPEG or WebP file."]


def test_runs_from_elsewhere_load_what_the_sidebar_can_show(tmp_path, monkeypatch):
    """Values made by the CLI or the API (an uninstalled model, steps over the field's range), an
    inpaint run's image and mask, a walk, an upscale: each loads without an error."""
    output = tmp_path / "output"
    monkeypatch.setenv("ATELIER_OUTPUT", str(output))
    vqgan = runs.create_run(output, "vqgan", {"prompt": "a far run", "vqgan": "not_installed_here", "steps": 500_000,
                                              "optimiser": "Adam", "noise_prompts": [{"seed": 3, "weight": 0.5}]})
    inpaint = runs.create_run(output, "diffusion", {"prompt": "a door", "task": "inpaint", "model": "demo", "seed": 3})
    for name in ("init-image.png", "mask.png"):
        Image.new("RGB", (64, 64), "white").save(inpaint.inputs_dir / name)
    inpaint.update(resolved={**runs.request_of(inpaint.details), "mask": str(inpaint.path / "inputs/mask.png"),
                             "init_image": str(inpaint.path / "inputs/init-image.png")})
    walk = runs.create_run(output, "walk", {"prompts": ["spring", "winter"], "seeds": [1, 2], "fps": 8.0,
                                            "model": "demo"})
    upscale = runs.create_run(output, "upscale", {"image": str(inpaint.path / "inputs/init-image.png"), "scale": 3.0})

    at = app(**{"from": vqgan.run_id})
    assert not at.exception and at.text_area(key="vqgan_prompt").value == "a far run"
    assert at.number_input(key="vqgan_steps").value == settings.quick_defaults("vqgan")["steps"]  # out of range: the default
    # (the quick defaults: the tests have no GPU and only the demo models)
    assert at.text_input(key="vqgan_noise_prompts").value == "3:0.5"

    at = app(**{"from": inpaint.run_id})
    assert not at.exception and at.radio(key="sd_task").value == "inpaint"
    captions = texts(at.caption)
    assert f"Init image: init-image.png from run {inpaint.run_id}" in captions
    assert f"Mask: mask.png from run {inpaint.run_id}" in captions
    assert not [u for u in at.file_uploader if u.key in ("sd_inpaint_image", "sd_mask_upload")]

    image = str(inpaint.path / "inputs/init-image.png")
    img2img = runs.create_run(output, "diffusion", {"prompt": "a door", "init_image": image},
                              {"prompt": "a door", "init_image": image, "task": "img2img"})  # the task inferred
    at = app(**{"from": img2img.run_id})
    assert at.radio(key="sd_task").value == "img2img"
    assert f"Init image: init-image.png from run {img2img.run_id}" in texts(at.caption)

    at = app(**{"from": walk.run_id})
    assert not at.exception and at.text_area(key="walk_prompts").value == "spring\nwinter"
    assert (at.text_input(key="walk_seeds").value, at.number_input(key="walk_fps").value) == ("1 2", 8)

    at = app(**{"from": upscale.run_id})
    assert not at.exception and at.number_input(key="up_scale").value == 3.0
    assert f"Image: init-image.png from run {upscale.run_id}" in texts(at.caption)
