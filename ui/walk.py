"""Sidebar for prompt walks: keyframe prompts (one per line), seeds, frames and easing."""

from __future__ import annotations

import streamlit as st

from ui import sd_widgets as w

TITLE = "Prompt walk"


def sidebar(defaults: dict) -> dict | None:
    with st.sidebar.form("walk_form"):
        model, loras = w.model_and_loras("walk_", defaults)
        prompts = st.text_area("Prompts, one keyframe per line", "\n".join(defaults.get("prompts") or []),
                               key="walk_prompts", height=120)
        negative = st.text_area("Negative prompt", defaults.get("negative", ""), key="walk_negative", height=68)
        seeds = st.text_input("Seeds (one for all, or one per prompt, separated by spaces; empty = random)", "",
                              key="walk_seeds")
        col1, col2 = st.columns(2)
        frames = col1.number_input("Frames per segment", 1, 10_000, int(defaults.get("frames", 24)), key="walk_frames")
        fps = col2.number_input("FPS", 1, 120, int(defaults.get("fps", 12)), key="walk_fps")
        easing = st.radio("Easing", ["ease-in-out", "linear"], horizontal=True, key="walk_easing",
                          index=0 if defaults.get("easing", "ease-in-out") == "ease-in-out" else 1)
        gif = st.checkbox("Also make a GIF", bool(defaults.get("gif", False)), key="walk_gif")
        sampling = w.sampling("walk_", defaults)
        extra = {**w.text_extras("walk_", defaults), **w.memory("walk_", defaults)}
        submitted = st.form_submit_button("Run", type="primary", width="stretch")
    if not submitted:
        return None
    seed_list = [w.parse_seed(s) for s in seeds.replace(",", " ").split()] or None
    return {"prompts": [line.strip() for line in prompts.splitlines() if line.strip()], "negative": negative,
            "model": model, "lora": loras, "seeds": seed_list, "frames": int(frames), "fps": float(fps),
            "easing": easing, "gif": bool(gif), **sampling, "demo": model == "demo", **extra}


def result_actions(run_dir, details: dict) -> dict | None:
    """Show the keyframes under the video."""
    from pathlib import Path

    keyframes = details.get("keyframes") or []
    if keyframes:
        columns = st.columns(min(4, len(keyframes)))
        for index, record in enumerate(keyframes):
            path = Path(run_dir) / record["file"]
            if path.is_file():
                columns[index % len(columns)].image(str(path), caption=f"{record['prompt']} (seed {record['seed']})")
    return None
