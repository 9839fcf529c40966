"""Images and video for run folders: streamed mp4, GIF, thumbnails, PNG text metadata."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, PngImagePlugin

log = logging.getLogger(__name__)

THUMB_SIZE = 384
MAX_IMAGE_PIXELS = 64_000_000  # decompression-bomb guard for images people give us


class FrameWriter:
    """Streams frames into an mp4 through ffmpeg: frames are encoded as they come, never kept.

    Sizes must be even for yuv420p; odd sizes are padded by one pixel (edge colour).
    """

    def __init__(self, path: Path | str, fps: float = 10.0):
        self.path = Path(path)
        self.fps = fps
        self.frames = 0
        self._writer = None
        self._size: tuple[int, int] | None = None

    def add(self, image: Image.Image) -> None:
        frame = np.asarray(image.convert("RGB"))
        if self._writer is None:
            self._open(frame.shape[1], frame.shape[0])
        self._writer.append_data(self._fit(frame))
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        import imageio.v2 as imageio

        self._size = (width + width % 2, height + height % 2)
        self._writer = imageio.get_writer(
            self.path, fps=self.fps, codec="libx264", quality=8, macro_block_size=1,
            pixelformat="yuv420p", ffmpeg_log_level="error", output_params=["-movflags", "+faststart"])

    def _fit(self, frame: np.ndarray) -> np.ndarray:
        width, height = self._size
        if frame.shape[1] != width or frame.shape[0] != height:
            if abs(frame.shape[1] - width) > 1 or abs(frame.shape[0] - height) > 1:
                frame = np.asarray(Image.fromarray(frame).resize((width, height), Image.LANCZOS))
            else:
                frame = np.pad(frame, ((0, height - frame.shape[0]), (0, width - frame.shape[1]), (0, 0)),
                               mode="edge")
        return frame

    def close(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - a broken encoder must not lose the run's other files
                log.exception("Could not finish %s", self.path)
            self._writer = None

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def count_frames(path: Path | str) -> int:
    """Number of frames in a video file (decodes it; for tests and tools)."""
    import imageio.v2 as imageio

    with imageio.get_reader(path) as reader:
        return sum(1 for _ in reader)


def write_gif(frames: Iterable[Image.Image], path: Path | str, fps: float = 10.0) -> int:
    """Write frames to an animated GIF; returns how many were written."""
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        return 0
    rest = list(iterator)
    first.save(path, save_all=True, append_images=rest, duration=int(1000 / max(fps, 0.1)), loop=0)
    return 1 + len(rest)


def gif_from_mp4(mp4: Path | str, gif: Path | str, max_side: int = 512) -> int:
    """Convert a finished mp4 into a GIF, frame by frame, scaled down for size."""
    import imageio.v2 as imageio

    with imageio.get_reader(mp4) as reader:
        fps = reader.get_meta_data().get("fps", 10.0)
        frames = (_shrink(Image.fromarray(f), max_side) for f in reader)
        return write_gif(frames, gif, fps)


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    image = image.copy()
    image.thumbnail((max_side, max_side), Image.LANCZOS)
    return image


def save_png(image: Image.Image, path: Path | str, parameters: str | None = None) -> None:
    """Save a PNG with the 'parameters' text chunk other tools read (A1111 form)."""
    info = PngImagePlugin.PngInfo()
    if parameters:
        info.add_text("parameters", parameters)
    image.save(path, pnginfo=info)


def read_png_parameters(path: Path | str) -> str | None:
    with Image.open(path) as image:
        return image.text.get("parameters") if hasattr(image, "text") else None


def format_parameters(prompt: str, negative: str = "", **settings) -> str:
    """The widely used 'parameters' text: prompt, negative prompt, then 'Key: value' pairs."""
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(f"{key}: {value}" for key, value in settings.items() if value is not None))
    return "\n".join(lines)


def quote_value(text: str) -> str:
    """A1111's quoting: a value holding ',', ':' or a newline is written as a JSON string."""
    if not any(mark in text for mark in (",", ":", "\n")):
        return text
    return json.dumps(text, ensure_ascii=False)


def parse_parameters(text: str) -> dict:
    """Parse the 'parameters' text back into prompt, negative prompt and settings (A1111's rules:
    multi-line prompts, quoted values, Civitai's JSON values; see logic/a1111/metadata.py)."""
    from .a1111.metadata import parse_parameters as parse

    return parse(text)


def save_thumbnail(image: Image.Image, path: Path | str, size: int = THUMB_SIZE) -> None:
    thumb = image.convert("RGB")
    thumb.thumbnail((size, size), Image.LANCZOS)
    thumb.save(path, quality=85)


def save_preview(image: Image.Image, path: Path | str) -> None:
    """Write preview.jpg atomically so a reader never sees half an image."""
    path = Path(path)
    tmp = path.with_name(".preview-tmp.jpg")
    image.convert("RGB").save(tmp, quality=85)
    tmp.replace(path)


def open_user_image(path: Path | str, what: str = "image") -> Image.Image:
    """Open an image a person gave us, with one clear sentence for each way it can be wrong."""
    from .errors import UserError

    path = Path(path)
    if not path.exists():
        raise UserError(f"The {what} {path} does not exist: check the path.")
    if path.is_dir():
        raise UserError(f"The {what} {path} is a folder: give an image file.")
    if path.stat().st_size == 0:
        raise UserError(f"The {what} {path} is empty (0 bytes): give a real image file.")
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise UserError(f"The {what} {path} is {image.width}x{image.height} pixels, too large to open "
                                f"safely: give one under {MAX_IMAGE_PIXELS // 1_000_000} megapixels.")
            image.load()
            return image.convert("RGB")
    except UserError:
        raise
    except Image.DecompressionBombError:
        raise UserError(f"The {what} {path} is too large to open safely (a decompression bomb?): "
                        "give a smaller image.") from None
    except (OSError, ValueError, SyntaxError):
        raise UserError(f"The {what} {path} is not an image Pillow can read: give a PNG, JPEG or WebP file.") from None
