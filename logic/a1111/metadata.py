"""The 'parameters' text A1111 writes into images, written and read back (ours, A1111's, Forge's, Civitai's).

The text is::

    prompt (any number of lines)
    Negative prompt: negative (any number of lines)
    Steps: 25, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: 6ce0161689, Model: v1-5, ...

The last line holds the settings when it has at least three ``Key: value`` pairs (A1111's own rule in
``parse_generation_parameters``); a value holding ``,`` ``:`` or a newline is a JSON string; Civitai
adds JSON arrays/objects as values (``Civitai resources: [...]``), read whole here.

``read_parameters(png_path_or_bytes) -> dict`` is the one reader (the CLI's ``--from-image``, the app's
"load settings from an image" and the API's png-info use it); ``spec_params_from`` maps what it read
onto a Stable Diffusion spec and lists what it could not use.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from PIL import Image

from ..errors import UserError

_KEY = re.compile(r"\s*(\w[\w \-/+.()]*?):\s*")
_SIZE = re.compile(r"^(\d+)\s*x\s*(\d+)$")
_EXIF_USER_COMMENT = 0x9286
_EXIF_IFD = 0x8769

# The order A1111 writes its fields in (others follow in the order given).
FIELD_ORDER = ("Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash", "Model",
               "VAE hash", "VAE", "Denoising strength", "Clip skip")


# Writing ---------------------------------------------------------------------------------------------

def quote(value) -> str:
    """A1111's quoting: a value holding ',', ':' or a newline (or a quote) becomes a JSON string."""
    text = str(value)
    if not any(mark in text for mark in (",", ":", "\n", '"')):
        return text
    return json.dumps(text, ensure_ascii=False)


def format_parameters(prompt: str, negative: str = "", fields: dict | None = None) -> str:
    """prompt, 'Negative prompt: ...', then the 'Key: value' line in A1111's order; None values left out."""
    fields = {k: v for k, v in (fields or {}).items() if v is not None and v != ""}
    ordered = [k for k in FIELD_ORDER if k in fields] + [k for k in fields if k not in FIELD_ORDER]
    lines = [prompt or ""]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(f"{key}: {quote(fields[key])}" for key in ordered))
    return "\n".join(lines)


# Reading ---------------------------------------------------------------------------------------------

def parse_parameters(text: str) -> dict:
    """'parameters' text -> {"prompt", "negative", "Key": "value", ...}; multi-line prompts kept whole."""
    lines = (text or "").strip().split("\n")
    settings_line = lines[-1] if _looks_like_settings(lines[-1]) else ""
    body = lines[:-1] if settings_line else lines
    prompt, negative, in_negative = [], [], False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:"):].lstrip()
        (negative if in_negative else prompt).append(line)
    result = {"prompt": "\n".join(prompt).strip(), "negative": "\n".join(negative).strip()}
    result.update(parse_settings_line(settings_line))
    return result


def _looks_like_settings(line: str) -> bool:
    return len(parse_settings_line(line)) >= 3


def parse_settings_line(line: str) -> dict:
    """'Key: value, Key: "quoted, value", Key: [json]' -> {key: value as text}."""
    result, position, decoder = {}, 0, json.JSONDecoder()
    while position < len(line):
        match = _KEY.match(line, position)
        if not match:
            break
        key, position = match.group(1).strip(), match.end()
        value, position = _read_value(line, position, decoder)
        result[key] = value
        position = _skip_separator(line, position)
    return result


def _read_value(line: str, position: int, decoder) -> tuple[str, int]:
    if position < len(line) and line[position] in '"[{':
        try:
            value, end = decoder.raw_decode(line, position)
            return (value if isinstance(value, str) else line[position:end]), end
        except ValueError:
            pass
    end = line.find(",", position)
    end = len(line) if end == -1 else end
    return line[position:end].strip(), end


def _skip_separator(line: str, position: int) -> int:
    while position < len(line) and line[position] in ", ":
        position += 1
    return position


def read_parameters(source) -> dict:
    """The generation parameters in an image (path, bytes or file object): {} when it has none.

    PNG: the 'parameters' text chunk (A1111, Forge, Civitai, Atelier); JPEG/WebP: the EXIF
    UserComment A1111 writes there. Returns the parsed dict plus ``"raw"``, the text as found.
    """
    text = read_parameters_text(source)
    if not text:
        return {}
    return {**parse_parameters(text), "raw": text}


def read_parameters_text(source) -> str | None:
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        with Image.open(source) as image:
            text = getattr(image, "text", {}) or {}
            if text.get("parameters"):
                return str(text["parameters"])
            return _exif_comment(image)
    except (OSError, ValueError) as exc:
        name = Path(source).name if isinstance(source, (str, Path)) else "The upload"
        raise UserError(f"{name} is not an image that can be read ({exc}): give a PNG from Atelier, A1111, "
                        "Forge or Civitai.") from None


def _exif_comment(image) -> str | None:
    try:
        raw = image.getexif().get_ifd(_EXIF_IFD).get(_EXIF_USER_COMMENT)
    except Exception:  # noqa: BLE001 - broken EXIF reads as "no parameters"
        return None
    if isinstance(raw, bytes):
        head, body = raw[:8], raw[8:]
        if head.startswith(b"UNICODE"):
            # A1111 (piexif) writes UTF-16 big-endian; some tools little-endian: ASCII text shows which
            codec = "utf-16-le" if len(body) > 1 and body[0] != 0 and body[1] == 0 else "utf-16-be"
            return body.decode(codec, "replace") or None
        return body.decode("utf-8", "ignore") or None
    return str(raw) if raw else None
