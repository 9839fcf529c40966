"""The Stable Diffusion and walk sidebars, headless: Run returns params that build_spec accepts."""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

from logic.engines import diffusion, walk

from sd_helpers import TOKEN, tiny_models

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
import streamlit as st
from logic import settings
from ui import diffusion, walk
st.session_state["sd"] = diffusion.sidebar(settings.defaults("diffusion"))
st.session_state["walk"] = walk.sidebar(settings.defaults("walk"))
"""


def test_sidebars_return_params_and_show_the_token(tmp_path):
    tiny_models()
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    app = AppTest.from_file(str(script), default_timeout=60).run()
    assert not app.exception
    app.sidebar.selectbox(key="sd_model").select("tiny-file.safetensors")
    app.sidebar.text_input(key="sd_seed").input("42")
    app.sidebar.button[0].click().run()  # form values are committed on submit
    params = app.session_state["sd"]
    assert params["model"] == "tiny-file.safetensors" and params["seed"] == 42
    assert any(TOKEN in c.value for c in app.sidebar.caption)
    spec = diffusion.build_spec({k: v for k, v in params.items() if k != "device"})
    assert spec.model == "tiny-file.safetensors"
    app.sidebar.button[1].click().run()
    walk_params = app.session_state["walk"]
    assert len(walk.build_spec(walk_params).prompts) == 2


TASK_SCRIPT = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
import streamlit as st
from logic import settings
from ui import diffusion, upscale
st.session_state["sd"] = diffusion.sidebar(settings.defaults("diffusion"))
"""


def test_task_sidebars_hires_and_inpaint_and_the_family_caption(tmp_path):
    from sd_family_helpers import tiny_sdxl

    tiny_models()
    tiny_sdxl()
    script = tmp_path / "app.py"
    script.write_text(TASK_SCRIPT)
    app = AppTest.from_file(str(script), default_timeout=60).run()
    assert not app.exception
    app.sidebar.radio(key="sd_task").set_value("hires").run()   # outside the form: reruns at once
    app.sidebar.selectbox(key="sd_model").select("tiny-sdxl-file.safetensors")
    app.sidebar.number_input(key="sd_hires_steps").set_value(3)
    app.sidebar.slider(key="sd_hires_strength").set_value(0.4)
    app.sidebar.button[0].click().run()
    assert any("Family: Stable Diffusion XL" in c.value for c in app.sidebar.caption)
    params = app.session_state["sd"]
    assert (params["task"], params["hires_steps"], params["hires_strength"], params["hires_upscaler"]) == \
        ("hires", 3, 0.4, "Lanczos")
    spec = diffusion.build_spec({k: v for k, v in params.items() if k != "device"})
    assert spec.task == "hires"
    app.sidebar.radio(key="sd_task").set_value("inpaint").run()
    assert not app.exception
    assert app.sidebar.checkbox(key="sd_only_masked") is not None


def test_the_family_caption_names_sd35_and_flux_single_files(tmp_path):
    """The sidebar reads a file's family from its keys alone: Stability's SD 3.5 layout, BFL's Flux layout."""
    from sd_family_helpers import tiny_flux, tiny_sd3

    tiny_models()
    tiny_sd3()
    tiny_flux()
    script = tmp_path / "app.py"
    script.write_text(TASK_SCRIPT)
    app = AppTest.from_file(str(script), default_timeout=60).run()
    for model, title in (("tiny-sd3-bare.safetensors", "Stable Diffusion 3.5"),
                         ("tiny-flux-transformer.safetensors", "FLUX.1")):
        app.sidebar.selectbox(key="sd_model").select(model)
        app.sidebar.button[0].click().run()
        assert not app.exception
        assert any(f"Family: {title}" in c.value for c in app.sidebar.caption), model


def test_canvas_strokes_become_a_mask_at_the_image_size():
    import numpy as np

    from ui.inpaint_mask import mask_from_strokes

    strokes = np.zeros((40, 80, 4), dtype=np.uint8)
    strokes[10:20, 40:60, 3] = 255   # painted: alpha > 0
    mask = mask_from_strokes(strokes, (160, 80))
    array = np.asarray(mask)
    assert mask.size == (160, 80) and mask.mode == "L"
    assert array[30, 100] == 255 and array[5, 5] == 0 and array[30, 60] == 0


def test_load_settings_from_an_image_fills_the_form_and_lists_the_rest(tmp_path):
    """Issue 13: drop an A1111 PNG; the sidebar form takes its settings, unknown keys are listed."""
    import io

    from PIL import Image, PngImagePlugin

    from sd_helpers import tiny_lora

    tiny_models()
    tiny_lora()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a red fox,\nin (snow:1.2)\nNegative prompt: blurry\nSteps: 12, Sampler: DPM++ 2M, "
                                "Schedule type: Karras, CFG scale: 6.5, Seed: 77, Size: 320x256, Model: tiny-file, "
                                "Clip skip: 2, Lora: tiny-lora:0.6, Hires upscale: 2")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG", pnginfo=info)
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    app = AppTest.from_file(str(script), default_timeout=60).run()
    app.sidebar.file_uploader(key="sd_from_image").upload("a1111.png", buffer.getvalue(), "image/png").run()
    assert not app.exception
    assert any("Hires upscale: 2" in c.value for c in app.sidebar.caption)
    app.sidebar.button[0].click().run()
    params = app.session_state["sd"]
    assert params["prompt"] == "a red fox,\nin (snow:1.2)" and params["negative"] == "blurry"
    assert (params["steps"], params["cfg"], params["scheduler"], params["seed"], params["size"]) == (
        12, 6.5, "DPM++ 2M Karras", 77, [320, 256])
    assert params["model"] == "tiny-file.safetensors" and params["clip_skip"] == 2
    assert params["lora"] == ["tiny-lora.safetensors:0.6"]
    spec = diffusion.build_spec({k: v for k, v in params.items() if k != "device"})
    assert spec.clip_skip == 2 and spec.lora == ["tiny-lora.safetensors:0.6"]
