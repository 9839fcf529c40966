"""Bad input to VQGAN+CLIP: one sentence each, before any run folder is made."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from logic import jobs, settings
from logic.errors import UserError

from vqgan_helpers import TINY, installed_vqgans, run_vqgan, write_image


def refused(output_dir, **params) -> str:
    with pytest.raises(UserError) as info:
        jobs.submit_run("vqgan", {**TINY, "prompt": "x", **params}, output_dir)
    assert list(output_dir.iterdir()) == []  # nothing was created
    message = str(info.value)
    assert message.endswith(".") and "\n" not in message
    return message


@pytest.fixture
def bad_images(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    empty = tmp_path / "empty.jpg"
    empty.touch()
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 8000)).save(bomb)  # 72 megapixels in a few kB
    return {"not an image": (text, "not an image"), "empty": (empty, "empty"),
            "missing": (tmp_path / "gone.png", "does not exist"), "bomb": (bomb, "too large")}


@pytest.mark.parametrize("kind", ["not an image", "empty", "missing", "bomb"])
def test_bad_image_prompt_and_init_image(output_dir, bad_images, kind):
    path, phrase = bad_images[kind]
    assert phrase in refused(output_dir, image_prompts=[f"{path}:2"])
    assert "image prompt" in refused(output_dir, image_prompts=[str(path)])
    message = refused(output_dir, init_image=str(path))
    assert phrase in message and "init image" in message


def test_unknown_optimiser_lists_the_known_ones(output_dir):
    message = refused(output_dir, optimiser="lion")
    assert "'lion'" in message and "Adam" in message and "RMSprop" in message and "RAdam" in message


@pytest.mark.parametrize("params, phrase", [
    ({"story_every": 0}, "schedule interval"),
    ({"mse_decay_every": -1}, "MSE decay interval"),
    ({"tv_weight": -1}, "TV loss weight"),
    ({"cut_method": "grid"}, "Known: random, pooled"),
    ({"init_noise": "perlin"}, "Known: codes, pixels, gradient"),
    ({"precision": "fp8"}, "Known: auto, fp32, fp16, bf16"),
    ({"zoom": 0}, "zoom"),
    ({"prompt": " ^ "}, "prompt is empty"),
])
def test_bad_settings(output_dir, params, phrase):
    assert phrase in refused(output_dir, **params)


def test_prompt_with_a_non_numeric_colon_part_is_text(output_dir):
    _, _, details = run_vqgan(output_dir, prompt="photo: a fox:abc | http://x.org/a:b", steps=1)
    assert details["status"] == "done"


def test_continue_target_that_is_not_a_run_folder(output_dir, tmp_path):
    assert "not a run folder" in refused(output_dir, continue_from=str(tmp_path / "nowhere"))
    (tmp_path / "plain").mkdir()
    assert "not a run folder" in refused(output_dir, continue_from=str(tmp_path / "plain"))


def test_continue_target_with_another_model_says_so(output_dir, tmp_path):
    runs_dir = tmp_path / "runs"
    _, parent, _ = run_vqgan(runs_dir, prompt="x", steps=1)
    demo = settings.demo_dir()
    # the parent run may have taken its models from a cache filled while another test's assets
    # folder was in force: make sure the demo files exist in this one before copying them
    from logic.models.demo import ensure_demo_vqgan
    ensure_demo_vqgan(demo)
    with installed_vqgans("other") as assets:
        for suffix in (".yaml", ".ckpt"):
            shutil.copyfile(demo / f"demo{suffix}", assets / f"other{suffix}")
        message = refused(output_dir, continue_from=str(parent.path), demo=False, vqgan="other", clip="demo-clip")
    assert "'demo'" in message and "'other'" in message


def test_continue_target_without_state(output_dir, tmp_path):
    runs_dir = tmp_path / "runs"
    _, parent, _ = run_vqgan(runs_dir, prompt="x", steps=1)
    (parent.path / "state.pt").unlink()
    assert "state.pt" in refused(output_dir, continue_from=str(parent.path))
