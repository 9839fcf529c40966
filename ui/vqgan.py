"""Sidebar and result actions for VQGAN+CLIP runs. UI only: every setting goes to ``build_spec``."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from logic import runs
from logic.models.catalog import vqgan_choices
from logic.vqgan.cutouts import AUGMENTS, CUT_METHODS
from logic.vqgan.optimisers import OPTIMISERS
from logic.vqgan.starts import INIT_NOISES
from ui import reuse
from ui.common import parse_seed, save_upload

TITLE = "VQGAN+CLIP"
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp"]


def sidebar(defaults: dict) -> dict | None:
    """All settings as plain widgets (each edit is kept at once, so switching mode loses nothing);
    returns params on Run."""
    choices = vqgan_choices()
    preferred = defaults.get("vqgan")
    continue_from = reuse.continuing()
    loaded_init, loaded_prompts = reuse.loaded_file("vqgan_init_image"), reuse.loaded_file("vqgan_image_prompts")
    with st.sidebar.container():
        model = st.selectbox("Model", choices, index=choices.index(preferred) if preferred in choices else 0,
                             format_func=lambda n: "demo (random weights, for trying things out)" if n == "demo" else n,
                             key="vqgan_model")
        prompt = st.text_area("Prompt", defaults.get("prompt", ""), key="vqgan_prompt",
                              help='"text:weight:stop | text:weight"; negative weights push away. '
                                   'Stages separated by "^" form a story.')
        story_every = st.number_input("Story: steps per stage", 1, 100_000, int(defaults["story_every"]),
                                      key="vqgan_story_every",
                                      help='A prompt in stages ("spring ^ summer ^ autumn") moves to the next '
                                           'stage after this many steps.')
        col1, col2 = st.columns(2)
        width = col1.number_input("Width", 16, 4096, int(defaults["size"][0]), 16, key="vqgan_width")
        height = col2.number_input("Height", 16, 4096, int(defaults["size"][1]), 16, key="vqgan_height")
        steps = st.number_input("Steps (-1 = until stopped)", -1, 100_000, int(defaults["steps"]), key="vqgan_steps",
                                help="How many times the image is nudged toward the prompt: more = more detail, "
                                     "and a longer run.")
        seed = st.text_input("Seed (empty = random)", "" if defaults.get("seed") is None else str(defaults["seed"]),
                             key="vqgan_seed", help="The same seed with the same settings makes the same image.")
        with st.expander("Image prompts and init image"):
            prompt_files = None if loaded_prompts else st.file_uploader("Image prompts", IMAGE_TYPES, accept_multiple_files=True,
                                            key="vqgan_image_prompts",
                                            help="Pictures the result should look like, judged as the text is.")
            prompt_weights = st.text_input("Their weights[:stop], comma separated (empty = 1)", "",
                                           key="vqgan_image_prompt_weights", help="e.g. 1, 0.5:-0.2")
            noise_prompts = st.text_input("Noise prompts, seed:weight, comma separated", "",
                                          key="vqgan_noise_prompts",
                                          help="Random targets that add variety, each a seed and a weight, e.g. 42:0.5")
            init_file = None if loaded_init else st.file_uploader("Init image", IMAGE_TYPES, key="vqgan_init_image",
                                         help="Start from this picture instead of noise.")
            init_noise = st.selectbox("Start without an image from", INIT_NOISES,
                                      index=INIT_NOISES.index(defaults["init_noise"]), key="vqgan_init_noise",
                                      help="The init noise, the picture before the first step: codes = random "
                                           "VQGAN codes (coloured blotches), pixels = random pixels, "
                                           "gradient = a smooth colour gradient.")
        with st.expander("Optimisation"):
            optimiser = st.selectbox("Optimiser", list(OPTIMISERS), index=list(OPTIMISERS).index(defaults["optimiser"]),
                                     key="vqgan_optimiser",
                                     help="How each step changes the image; Adam is the usual choice.")
            lr = st.number_input("Learning rate", 0.001, 10.0, float(defaults["lr"]), 0.01, format="%.3f", key="vqgan_lr",
                                 help="How big each step's change is: higher changes faster but gets noisy.")
            tv_weight = st.number_input("Smoothness (TV loss weight)", 0.0, 100.0,
                                        float(defaults["tv_weight"]), format="%.4f", key="vqgan_tv_weight",
                                        help="TV = total variation: a penalty on neighbouring patches that differ, "
                                             "for smoother images. 0 = off; the original app used 0.001.")
            mse_weight = st.number_input("Stay near the start (MSE weight)", 0.0, 100.0,
                                         float(defaults["mse_weight"]), key="vqgan_mse_weight",
                                         help="MSE = mean squared error to the starting picture: keeps the result "
                                              "close to the init image. 0 = off.")
            mse_decay = st.number_input("Loosen by (MSE decay)", 0.0, 100.0, float(defaults["mse_decay"]),
                                        key="vqgan_mse_decay",
                                        help="Taken off the MSE weight every N steps (below), so the image "
                                             "drifts further from the start as the run goes on.")
            mse_decay_every = st.number_input("Loosen every N steps (0 = never)", 0, 100_000,
                                              int(defaults["mse_decay_every"]), key="vqgan_mse_decay_every")
            precision = st.selectbox("Precision (GPU)", ["auto", "fp32", "fp16", "bf16"],
                                     index=["auto", "fp32", "fp16", "bf16"].index(defaults["precision"]),
                                     key="vqgan_precision",
                                     help="fp16 and bf16 use less GPU memory and run faster; fp32 is exact. "
                                          "The CPU always uses fp32.")
        with st.expander("Cutouts (what CLIP looks at)"):
            cut_method = st.selectbox("Method", CUT_METHODS, index=CUT_METHODS.index(defaults["cut_method"]),
                                      key="vqgan_cut_method",
                                      help="random: crops of random size and place; pooled: the whole image, "
                                           "shrunk.")
            cutn = st.number_input("Cutouts (cutn)", 1, 256, int(defaults["cutn"]), key="vqgan_cutn",
                                   help="Each step CLIP judges this many crops of the image: more = steadier, "
                                        "more detailed and slower.")
            cut_pow = st.number_input("Cut power (crop size)", 0.1, 10.0, float(defaults["cut_pow"]), 0.1,
                                      key="vqgan_cut_pow",
                                      help="Above 1: more small crops (fine detail); below 1: more large crops "
                                           "(overall layout).")
            augment = st.checkbox("Augmentations", bool(defaults["augment"]), key="vqgan_augment",
                                  help="Flip, skew and recolour the crops at random, so the image does not "
                                       "just trick CLIP.")
            augments = st.multiselect("Which, in order (the notebook's by default)", list(AUGMENTS),
                                      default=list(defaults.get("augments") or []), key="vqgan_augments",
                                      format_func=lambda code: f"{code}: {AUGMENTS[code]}")
        with st.expander("Animation and video"):
            animate_every = st.number_input("Move every N steps (0 = no animation)", 0, 10_000,
                                            int(defaults["animate_every"]), key="vqgan_animate_every")
            zoom = st.number_input("Zoom per frame", 0.5, 2.0, float(defaults["zoom"]), 0.01, key="vqgan_zoom")
            rotate = st.number_input("Rotate per frame (degrees)", -180.0, 180.0, float(defaults["rotate"]),
                                     key="vqgan_rotate")
            translate_x = st.number_input("Move right per frame (px)", -512.0, 512.0, float(defaults["translate_x"]),
                                          key="vqgan_translate_x")
            translate_y = st.number_input("Move down per frame (px)", -512.0, 512.0, float(defaults["translate_y"]),
                                          key="vqgan_translate_y")
            every = st.number_input("Video frame every N steps", 1, 1000, int(defaults["every"]), key="vqgan_every",
                                    help="The video shows the image changing: one frame every N steps.")
            fps = st.number_input("Video fps", 1.0, 60.0, float(defaults["fps"]), key="vqgan_fps")
            gif = st.checkbox("Also write a GIF", bool(defaults["gif"]), key="vqgan_gif")
        device = st.text_input("Device", "auto", key="vqgan_device", help="auto, cpu, cuda or cuda:N")
        submitted = st.button("Run", type="primary", width="stretch", key="vqgan_run")
    if not submitted:
        return None
    return {"prompt": prompt, "vqgan": model, "size": [int(width), int(height)], "steps": int(steps),
            "seed": parse_seed(seed), "lr": float(lr), "optimiser": optimiser, "cutn": int(cutn),
            "cut_pow": float(cut_pow), "cut_method": cut_method, "augment": bool(augment),
            "augments": list(augments), "noise_prompts": [p.strip() for p in noise_prompts.split(",") if p.strip()],
            "story_every": int(story_every), "tv_weight": float(tv_weight), "mse_weight": float(mse_weight),
            "mse_decay": float(mse_decay), "mse_decay_every": int(mse_decay_every), "precision": precision,
            "image_prompts": loaded_prompts or image_prompt_params(prompt_files or [], prompt_weights),
            "init_image": loaded_init or (save_upload(init_file) if init_file else None), "init_noise": init_noise,
            "animate_every": int(animate_every), "zoom": float(zoom), "rotate": float(rotate),
            "translate_x": float(translate_x), "translate_y": float(translate_y), "every": int(every),
            "fps": float(fps), "gif": bool(gif), "demo": model == "demo", "device": device,
            **({"continue_from": continue_from} if continue_from else {})}


def image_prompt_params(files: list, weights: str) -> list[str]:
    """Each upload saved, as "PATH:weight[:stop]" strings (the engine checks the numbers)."""
    parts = [w.strip() for w in weights.split(",")] if weights.strip() else []
    params = []
    for i, upload in enumerate(files):
        suffix = f":{parts[i]}" if i < len(parts) and parts[i] else ""
        params.append(save_upload(upload) + suffix)
    return params


def result_actions(run_dir: Path, details: dict) -> dict | None:
    """"Continue this run" for a finished VQGAN+CLIP run that kept its state; returns params to queue."""
    if details.get("mode") != "vqgan" or details.get("status") not in ("done", "stopped"):
        return None
    if not (Path(run_dir) / "state.pt").is_file():
        return None
    key = f"vqgan_continue_{details.get('run_id')}"
    with st.form(key):
        prompt = st.text_input("Next prompt (empty = the same)", "", key=f"{key}_prompt",
                               help="A new prompt makes the next stage: spring, then summer, …")
        steps = st.number_input("Steps", -1, 100_000, int(runs.resolved_of(details).get("steps") or 100),
                                key=f"{key}_steps")
        if not st.form_submit_button("Continue this run"):
            return None
    params = {"continue_from": str(Path(run_dir).resolve()), "steps": int(steps)}
    if prompt.strip():
        params["prompt"] = prompt
    return params
