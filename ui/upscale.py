"""Sidebar for upscaling an image or a past run (Lanczos or an upscaler model in assets/upscalers/)."""

from __future__ import annotations

import streamlit as st

from logic.engines import sd_common
from logic.models.upscalers import list_upscalers
from ui import reuse
from ui import sd_widgets as w

TITLE = "Upscale"


def sidebar(defaults: dict) -> dict | None:
    loaded = reuse.loaded_file("up_image")
    with st.sidebar.container():
        upload = None if loaded else st.file_uploader("Image", type=["png", "jpg", "jpeg", "webp"], key="up_image")
        run_dir = st.text_input("…or a run folder", "", key="up_run", help="Its output.png is upscaled.")
        col1, col2 = st.columns(2)
        scale = col1.number_input("Upscale by", 1.05, 8.0, float(defaults.get("scale", 2.0)), 0.05, key="up_scale",
                                  help="2 = twice the width and twice the height.")
        upscaler = col2.selectbox("Upscaler", list_upscalers(sd_common.upscalers_dir()), key="up_upscaler",
                                  help="Lanczos: classic resampling, sharp but adds no detail; a model from "
                                       "assets/upscalers/ invents detail.")
        submitted = st.button("Upscale", type="primary", width="stretch", key="upscale_run")
    if not submitted:
        return None
    image = loaded or (w.save_upload(upload) if upload is not None else run_dir.strip())
    return {"image": image, "scale": float(scale), "upscaler": upscaler}
