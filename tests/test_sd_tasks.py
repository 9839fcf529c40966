"""The Stable Diffusion tasks on tiny models: inpaint (ordinary and "only masked"), hires fix
(Lanczos and a spandrel upscaler), upscale alone, and the A1111 fields each writes."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from logic import media, runs, settings
from logic.__main__ import main
from logic.engines import diffusion as engine
from logic.engines.sd.tasks import inpaint
from logic.errors import UserError
from assets_cache import per_assets_dir

from sd_helpers import BASE, pixels, run_engine, tiny_models

PLAIN = {**BASE, "preview_every": 0, "seed": 3}
RED = (200, 40, 40)


@per_assets_dir
def tiny_esrgan():
    """A 2x ESRGAN (the original RRDB key layout, ``model.N...``) with random weights, as .pth in assets/upscalers/."""
    from spandrel.architectures.ESRGAN import ESRGAN

    folder = settings.assets_dir() / "upscalers"
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        model = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2)
    path = folder / "tiny-esrgan-2x.pth"
    torch.save(model.state_dict(), path)
    return path


def _image_and_mask(tmp_path, box=(8, 8, 24, 24), size=(32, 32)):
    image, mask = tmp_path / "image.png", tmp_path / "mask.png"
    Image.new("RGB", size, RED).save(image)
    painted = Image.new("L", size, 0)
    painted.paste(255, box)
    painted.save(mask)
    return image, mask


def test_inpaint_with_an_ordinary_model_keeps_the_outside_and_changes_the_inside(output_dir, tmp_path):
    image, mask = _image_and_mask(tmp_path)
    run, state = run_engine("diffusion", output_dir, **PLAIN, init_image=str(image), mask=str(mask), mask_blur=0,
                            strength=1.0)
    assert state.status == runs.DONE, state.error
    out = pixels(run.file("output.png"))
    assert (out[:8] == RED).all() and (out[24:] == RED).all()
    assert np.abs(out[10:22, 10:22] - np.array(RED)).mean() > 20
    assert run.details["task"] == "inpaint" and (run.path / "inputs" / "mask.png").is_file()
    parsed = media.parse_parameters(media.read_png_parameters(run.file("output.png")))
    assert parsed["Mask blur"] == "0" and parsed["Denoising strength"] == "1.0"


def test_only_masked_inpaints_the_box_at_full_size_and_pastes_it_back(output_dir, tmp_path):
    image, mask = _image_and_mask(tmp_path, box=(40, 40, 48, 48), size=(96, 64))
    run, state = run_engine("diffusion", output_dir, **PLAIN, init_image=str(image), mask=str(mask), mask_blur=2,
                            inpaint_only_masked=True, inpaint_padding=4, strength=1.0)
    assert state.status == runs.DONE, state.error
    out = Image.open(run.file("output.png"))
    assert out.size == (96, 64)  # the original's size: only the box was redrawn
    array = pixels(run.file("output.png"))
    assert (array[:30] == RED).all() and np.abs(array[42:46, 42:46] - np.array(RED)).mean() > 20
    parsed = media.parse_parameters(media.read_png_parameters(run.file("output.png")))
    assert parsed["Inpaint area"] == "Only masked" and parsed["Masked area padding"] == "4"


def test_crop_region_grows_by_padding_and_to_the_run_ratio():
    mask = Image.new("L", (100, 60), 0)
    mask.paste(255, (40, 20, 50, 30))
    region = inpaint.crop_region(mask, 5)
    assert region == (35, 15, 55, 35)
    left, top, right, bottom = inpaint.fit_ratio(region, 2.0, mask.size)
    assert (right - left) == 2 * (bottom - top) and left <= 35 and right >= 55 and 0 <= left and right <= 100


@pytest.mark.parametrize("change, words", [
    ({"mask": "missing-mask.png"}, "does not exist"),
    ({"task": "inpaint"}, "needs an image and a mask"),
    ({"task": "hires", "hires_scale": 9}, "hires upscale"),
    ({"task": "hires", "hires_upscaler": "nope.pth"}, "Available: Lanczos"),
])
def test_bad_task_input_is_one_sentence(output_dir, tmp_path, change, words):
    tiny_models()
    image, _ = _image_and_mask(tmp_path)
    params = {**PLAIN, **change}
    if "mask" in change:
        params["init_image"] = str(image)
    with pytest.raises(UserError) as caught:
        engine.build_spec(params)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_an_all_black_mask_is_refused(tmp_path):
    tiny_models()
    image, mask = _image_and_mask(tmp_path, box=(0, 0, 0, 0))
    with pytest.raises(UserError, match="all black"):
        engine.build_spec({**PLAIN, "init_image": str(image), "mask": str(mask)})


def test_hires_fix_with_lanczos_and_with_an_esrgan_file_through_the_cli(output_dir, capsys):
    tiny_models()
    esrgan = tiny_esrgan()
    made = {}
    for upscaler in ("Lanczos", esrgan.name):
        code = main(["diffusion", "-p", "a red fox", "--model", "tiny", "--steps", "2", "--size", "32", "32",
                     "--scheduler", "Euler", "--seed", "4", "--hires", "--hires-upscaler", upscaler,
                     "--hires-steps", "2", "--hires-strength", "0.5", "--preview-every", "1",
                     "--output", str(output_dir), "--device", "cpu"])
        assert code == 0
        run = runs.open_run(capsys.readouterr().out.strip().splitlines()[-1])
        assert run.details["status"] == runs.DONE and run.details["task"] == "hires"
        assert Image.open(run.file("output.png")).size == (64, 64)
        parsed = media.parse_parameters(media.read_png_parameters(run.file("output.png")))
        assert (parsed["Size"], parsed["Hires upscale"], parsed["Hires steps"], parsed["Hires upscaler"],
                parsed["Denoising strength"]) == ("32x32", "2.0", "2", upscaler, "0.5")
        assert run.details["progress"]["step"] == 2 + 1  # the first pass, then int(2 * 0.5) redraw steps
        made[upscaler] = pixels(run.file("output.png"))
    assert not np.array_equal(made["Lanczos"], made[esrgan.name])


def test_upscale_a_run_alone_keeps_its_parameters(output_dir, capsys):
    tiny_esrgan()
    source, _ = run_engine("diffusion", output_dir, **PLAIN)
    code = main(["upscale", str(source.path), "--scale", "2", "--upscaler", "tiny-esrgan-2x",
                 "--output", str(output_dir), "--device", "cpu"])
    assert code == 0
    run = runs.open_run(capsys.readouterr().out.strip().splitlines()[-1])
    assert run.details["status"] == runs.DONE and run.details["mode"] == "upscale"
    assert Image.open(run.file("output.png")).size == (64, 64)
    parsed = media.parse_parameters(media.read_png_parameters(run.file("output.png")))
    assert parsed["prompt"] == "a red fox" and parsed["Seed"] == "3"
    assert parsed["Postprocess upscale by"] == "2" and parsed["Postprocess upscaler"] == "tiny-esrgan-2x"


def test_a_code_running_upscaler_file_is_refused(output_dir, tmp_path):
    import os
    import pickle

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = settings.assets_dir() / "upscalers"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "evil.pth", "wb") as handle:
        pickle.dump({"model.0.weight": Evil()}, handle)
    image, _ = _image_and_mask(tmp_path)
    run, state = run_engine("upscale", output_dir, image=str(image), upscaler="evil.pth")
    assert state.status == runs.FAILED and "could run code" in state.error and not marker.exists()
