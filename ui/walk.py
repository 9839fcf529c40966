"""Sidebar for prompt walks: keyframe prompts (one per line), seeds, frames and easing."""

from __future__ import annotations

import streamlit as st

from logic.engines.walk import EASING_ALIASES, EASINGS
from ui import sd_widgets as w

TITLE = "Prompt walk"


def sidebar(defaults: dict) -> dict | None:
    with st.sidebar.container():
        model, loras = w.model_and_loras("walk_", defaults)
        prompts = st.text_area("Prompts, one keyframe per line", "\n".join(defaults.get("prompts") or []),
                               key="walk_prompts", height=120,
                               help="Each line is a keyframe; the video moves from one to the next.")
        negative = st.text_area("Negative prompt", defaults.get("negative", ""), key="walk_negative", height=68,
                                help="What no frame should show.")
        seeds = st.text_input("Seeds (one for all, or one per prompt, separated by spaces; empty = random)", "",
                              key="walk_seeds",
                              help="A keyframe's seed decides its picture; the frames between blend the two.")
        col1, col2 = st.columns(2)
        frames = col1.number_input("Frames per segment", 1, 10_000, int(defaults.get("frames", 24)), key="walk_frames",
                                   help="Frames from one keyframe to the next: more = a smoother, longer video.")
        fps = col2.number_input("FPS", 1, 120, int(defaults.get("fps", 12)), key="walk_fps",
                                help="Frames per second of the video.")
        default_easing = EASING_ALIASES.get(defaults.get("easing"), defaults.get("easing"))
        easing = st.radio("Steps between keyframes", list(EASINGS), horizontal=True, key="walk_easing",
                          index=EASINGS.index(default_easing) if default_easing in EASINGS else 0,
                          help="slow-middle: smaller steps where the prompts meet (the picture changes most "
                               "there); linear: even steps; slow-ends: smaller steps near the keyframes")
        gif = st.checkbox("Also make a GIF", bool(defaults.get("gif", False)), key="walk_gif")
        sampling = w.sampling("walk_", defaults)
        extra = {**w.text_extras("walk_", defaults), **w.memory("walk_", defaults)}
        submitted = st.button("Run", type="primary", width="stretch", key="walk_run")
    if not submitted:
        return None
    seed_list = [w.parse_seed(s) for s in seeds.replace(",", " ").split()] or None
    return {"prompts": [line.strip() for line in prompts.splitlines() if line.strip()], "negative": negative,
            "model": model, "lora": loras, "seeds": seed_list, "frames": int(frames), "fps": float(fps),
            "easing": easing, "gif": bool(gif), **sampling, "demo": model == "demo", **extra}
