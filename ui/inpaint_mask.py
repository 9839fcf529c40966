"""The inpainting image and mask in the sidebar: paint the mask on the image (streamlit-drawable-canvas),
or upload one. White (painted) = repaint."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import streamlit as st
from PIL import Image

from logic import settings

CANVAS_WIDTH = 240   # the sidebar's content width: a wider canvas is cut off at the right


def mask_from_strokes(rgba: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The canvas's drawing layer (RGBA, painted where alpha > 0) -> an 'L' mask at the image's size."""
    alpha = np.asarray(rgba)[..., 3] > 0
    mask = Image.fromarray((alpha * 255).astype(np.uint8), "L")
    return mask.resize(tuple(size), Image.NEAREST)


def save_image(image: Image.Image, suffix: str = ".png") -> str:
    """Keep an image the person made in output/.uploads/ (named by content) and return its path."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    folder = settings.output_dir() / ".uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def image_and_mask(prefix: str) -> tuple[str | None, str | None]:
    """The image to inpaint and its mask (paths), from an upload and the canvas or a mask upload."""
    from ui import reuse
    from ui.common import save_upload

    types = ["png", "jpg", "jpeg", "webp"]
    image_path = reuse.loaded_file(f"{prefix}inpaint_image")  # taken from a run, else uploaded
    if image_path is None:
        upload = st.sidebar.file_uploader("Image to inpaint", type=types, key=f"{prefix}inpaint_image")
        image_path = save_upload(upload) if upload is not None else None
    mask_path = reuse.loaded_file(f"{prefix}mask_upload")
    if mask_path is None:
        mask_upload = st.sidebar.file_uploader("Mask (white = repaint), or paint it below", type=types,
                                               key=f"{prefix}mask_upload")
        mask_path = save_upload(mask_upload) if mask_upload is not None else None
    if image_path is None or mask_path is not None:
        return image_path, mask_path
    image = Image.open(image_path).convert("RGB")
    painted = _paint(image, prefix)
    if painted is None or not painted.getbbox():
        st.sidebar.caption("Paint over the part to repaint, or upload a mask.")
        return image_path, None
    return image_path, save_image(painted)


def _paint(image: Image.Image, prefix: str) -> Image.Image | None:
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception:  # noqa: BLE001 - the canvas is optional: a mask upload does the same
        st.sidebar.caption("Painting needs streamlit-drawable-canvas; upload a mask instead.")
        return None
    brush = st.sidebar.slider("Brush", 4, 80, 24, key=f"{prefix}brush")
    height = max(16, round(CANVAS_WIDTH * image.height / image.width))
    with st.sidebar:
        result = st_canvas(stroke_width=brush, stroke_color="#ffffff", background_image=image,
                           width=CANVAS_WIDTH, height=height, drawing_mode="freedraw",
                           return_image_data=True, key=f"{prefix}canvas")
    try:
        data = result.image_data
    except Exception:  # noqa: BLE001 - nothing drawn yet
        return None
    return mask_from_strokes(data, image.size) if data is not None else None
