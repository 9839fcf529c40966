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
