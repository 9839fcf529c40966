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
