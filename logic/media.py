"""Images and video for run folders: streamed mp4, GIF, thumbnails, PNG text metadata.

Every file is written under a hidden temp name and renamed when complete (``runs.replacing``): a
full disk or a crash never leaves a truncated image or video under the real name.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, PngImagePlugin

from .errors import is_disk_full
from .runs import replacing, write_bytes_atomic

log = logging.getLogger(__name__)

THUMB_SIZE = 384
MAX_IMAGE_PIXELS = 64_000_000  # decompression-bomb guard for images people give us


class FrameWriter:
    """Streams frames into an mp4 through ffmpeg: frames are encoded as they come, never kept.

    ffmpeg writes a hidden temp file that becomes ``path`` only when it closes cleanly. Sizes must
    be even for yuv420p; odd sizes are padded by one pixel (edge colour).
    """

    def __init__(self, path: Path | str, fps: float = 10.0):
        self.path = Path(path)
        self.fps = fps
        self.frames = 0
        self._writer = None
        self._tmp: contextlib.AbstractContextManager | None = None
        self._size: tuple[int, int] | None = None

    def add(self, image: Image.Image) -> None:
        frame = np.asarray(image.convert("RGB"))
        try:
            if self._writer is None:
                self._open(frame.shape[1], frame.shape[0])
            self._writer.append_data(self._fit(frame))
        except Exception as exc:
            self._abandon()
            raise _as_disk_error(exc, self.path) from exc
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        import imageio.v2 as imageio

        self._size = (width + width % 2, height + height % 2)
        self._tmp = replacing(self.path)
        self._tmp_path = tmp = self._tmp.__enter__()
        self._writer = imageio.get_writer(
            tmp, fps=self.fps, codec="libx264", quality=8, macro_block_size=1,
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
        """Finish the video and give it its real name; raises (leaving no video) when that fails."""
        if self._writer is None:
            return
        try:
            self._writer.close()
            # imageio does not check ffmpeg's exit: a disk that filled while ffmpeg finished
            # (faststart rewrites the file) shows only as a file whose boxes stop short
            if not mp4_is_whole(self._tmp_path):
                raise OSError(f"ffmpeg left {self.path.name} incomplete")
        except Exception as exc:
            self._abandon()
            raise _as_disk_error(exc, self.path) from exc
        self._writer = None
        tmp, self._tmp = self._tmp, None
        tmp.__exit__(None, None, None)

    def _abandon(self) -> None:
        """Drop a video that cannot be finished: its temp file goes, nothing is left half-written."""
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            error = OSError("video abandoned")
            with contextlib.suppress(OSError):
                tmp.__exit__(OSError, error, None)
        self.frames = 0

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._abandon()


def mp4_is_whole(path: Path | str) -> bool:
    """The file's top-level MP4 boxes tile it exactly and include the index (moov) and the data
    (mdat): a file cut short anywhere fails. Reads a few headers, never the video."""
    path = Path(path)
    size, offset, kinds = path.stat().st_size, 0, set()
    with open(path, "rb") as handle:
        while offset < size:
            handle.seek(offset)
            header = handle.read(16)
            if len(header) < 8:
                return False
            length, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if length == 1 and len(header) == 16:
                length = int.from_bytes(header[8:16], "big")
            elif length == 0:
                length = size - offset
            if length < 8:
                return False
            kinds.add(kind)
            offset += length
    return offset == size and {b"moov", b"mdat"} <= kinds


def _as_disk_error(exc: Exception, path: Path) -> Exception:
    """ffmpeg reports a full disk as a broken pipe plus text: make it the ENOSPC it is."""
    if is_disk_full(exc) or _nearly_full(path.parent):
        return OSError(errno.ENOSPC, f"No space left on device while writing {path.name}")
    return exc


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 1024 * 1024
    except OSError:
        return False


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
    _save_image(first, path, "GIF", save_all=True, append_images=rest, duration=int(1000 / max(fps, 0.1)), loop=0)
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
    _save_image(image, path, "PNG", pnginfo=info)


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
    _save_image(thumb, path, "JPEG", quality=85)


def save_preview(image: Image.Image, path: Path | str) -> None:
    """Write preview.jpg atomically so a reader never sees half an image."""
    _save_image(image.convert("RGB"), path, "JPEG", quality=85)


def _save_image(image: Image.Image, path: Path | str, kind: str, **options) -> None:
    """Encode in memory, then write the bytes atomically (``runs.write_bytes_atomic`` says why)."""
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    write_bytes_atomic(path, buffer.getvalue())


def save_state(state: dict, path: Path | str) -> None:
    """torch.save through the same temp-and-rename, so a cut-short state.pt never looks loadable."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer.getvalue())


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
