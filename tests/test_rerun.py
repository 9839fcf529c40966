"""``python -m logic rerun``: any engine's run folder remade from its details.json."""

from __future__ import annotations

import numpy as np
from PIL import Image

from logic import runs
from logic.__main__ import main
from logic.commands.rerun import rerun_params

from sd_helpers import BASE, pixels, run_engine


def _rerun(run_dir, output_dir, capsys) -> runs.Run:
    assert main(["rerun", str(run_dir), "--output", str(output_dir), "--device", "cpu"]) == 0
    return runs.open_run(capsys.readouterr().out.strip().splitlines()[-1])


def test_vqgan_rerun_uses_the_recorded_seed(output_dir, capsys):
    assert main(["vqgan", "--demo", "-p", "a red fox", "--steps", "2", "--size", "32", "32", "--cutn", "2",
                 "--output", str(output_dir), "--device", "cpu"]) == 0
    first = runs.open_run(capsys.readouterr().out.strip().splitlines()[-1])
    again = _rerun(first.path, output_dir, capsys)
    assert again.details["rerun_of"] == first.run_id and again.details["seed"] == first.details["seed"]
    assert np.array_equal(pixels(first.file("output.png")), pixels(again.file("output.png")))


def test_img2img_rerun_finds_the_init_image_in_inputs(output_dir, tmp_path, capsys):
    init = tmp_path / "init.png"
    Image.new("RGB", (32, 32), (200, 100, 50)).save(init)
    run, state = run_engine("diffusion", output_dir, **BASE, seed=4, init_image=str(init), strength=1.0)
    assert state.status == runs.DONE, state.error
    init.unlink()  # the original is gone: the copy in inputs/ is used
    mode, params, _ = rerun_params(run.path)
    assert mode == "diffusion" and params["init_image"].endswith("inputs/init-image.png")
    again = _rerun(run.path, output_dir, capsys)
    assert np.array_equal(pixels(run.file("output.png")), pixels(again.file("output.png")))


def test_rerun_of_a_folder_that_is_not_a_run_is_one_sentence(tmp_path, capsys):
    assert main(["rerun", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a run folder" in err and "\n" not in err


# Every rerun is pixel-identical on CPU, and starts from what was asked -----------------------------

def _same_images(first: runs.Run, again: runs.Run, names=("output.png",)) -> bool:
    return all(np.array_equal(pixels(first.file(n)), pixels(again.file(n))) for n in names)


def test_sd_txt2img_and_batch_reruns_are_pixel_identical(output_dir, capsys):
    for extra in ({}, {"batch_size": 2, "batch_count": 1}):
        run, state = run_engine("diffusion", output_dir, **BASE, seed=11, **extra)
        assert state.status == runs.DONE, state.error
        again = _rerun(run.path, output_dir, capsys)
        names = [record["file"] for record in run.details.get("images") or []] or ["output.png"]
        assert _same_images(run, again, ["output.png", *names])


def test_walk_rerun_is_pixel_identical(output_dir, capsys):
    walk = {k: v for k, v in BASE.items() if k not in ("prompt", "preview_every")}
    run, state = run_engine("walk", output_dir, **{**walk, "scheduler": "Euler a"}, prompts=["a fox", "a bird"],
                            frames=2)
    assert state.status == runs.DONE, state.error
    assert "seeds" not in run.details["request"]  # left to chance, and recorded
    again = _rerun(run.path, output_dir, capsys)
    assert again.details["seeds"] == run.details["seeds"]
    assert _same_images(run, again, ["output.png", "keyframe-01.png", "keyframe-02.png"])


def test_continued_vqgan_rerun_finds_its_parent_after_the_output_folder_moved(tmp_path, capsys):
    import shutil

    first_home = tmp_path / "first"
    assert main(["vqgan", "--demo", "-p", "spring", "--steps", "2", "--size", "32", "32", "--cutn", "2",
                 "--output", str(first_home), "--device", "cpu"]) == 0
    parent = runs.open_run(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["vqgan", "--continue", str(parent.path), "-p", "summer", "--steps", "2",
                 "--output", str(first_home), "--device", "cpu"]) == 0
    child = runs.open_run(capsys.readouterr().out.strip().splitlines()[-1])
    assert child.details["request"]["prompt"] == "summer" and "cutn" not in child.details["request"]
    moved = tmp_path / "moved"
    shutil.move(str(first_home), str(moved))
    child = runs.open_run(moved / child.path.name)
    mode, params, _ = rerun_params(child.path)
    assert params["continue_from"] == str(moved / parent.path.name)
    again = _rerun(child.path, moved, capsys)
    assert again.details["parent_run_id"] == parent.run_id and again.details["resolved"]["cutn"] == 2
    assert _same_images(child, again)


def test_artist_matched_rerun_rewrites_the_typed_prompt_once(output_dir, capsys):
    typed = "a graffiti gorilla"
    assert main(["vqgan", "--demo", "-p", typed, "--steps", "2", "--size", "32", "32", "--cutn", "2",
                 "--match-artist", "--artist", "Eve Rings", "--output", str(output_dir), "--device", "cpu"]) == 0
    first = runs.open_run(capsys.readouterr().out.strip().splitlines()[-1])
    assert first.details["request"]["prompt"] == typed and first.details["prompt"] == typed
    rewritten = first.details["prompt_used"]
    assert rewritten.startswith(typed + ", in the style of ")
    assert first.details["resolved"]["prompt"] == rewritten
    again = _rerun(first.path, output_dir, capsys)
    third = _rerun(again.path, output_dir, capsys)  # a rerun of a rerun: still rewritten once
    assert again.details["request"]["prompt"] == typed == third.details["request"]["prompt"]
    assert again.details["prompt_used"] == rewritten == third.details["prompt_used"]
    assert _same_images(first, again) and _same_images(first, third)
