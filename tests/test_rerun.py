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
