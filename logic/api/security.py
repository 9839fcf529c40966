"""What keeps the API safe to run: loopback by default, a key off loopback, bounded requests,
and file paths confined to assets/ and the output folder."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
from pathlib import Path
from typing import Any

from ..errors import UserError

MAX_BODY_BYTES = 32 * 1024 * 1024   # a few base64 init images; bigger bodies get 413
LOOPBACK_NAMES = ("localhost",)

# Spec fields that may name a file or folder (the engines open them); values may carry ":weight".
PATH_FIELDS = ("init_image", "continue_from", "clip_weights", "model", "vqgan", "preview_decoder",
               "lora", "image_prompts")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to expose the API beyond this machine without a key."""
    if not is_loopback(host) and not api_key:
        raise UserError(f"Serving on {host} makes the API reachable from other machines: give --api-key KEY "
                        "(or --api-key-file FILE), or leave --host at 127.0.0.1.")


def read_key_file(path: str) -> str:
    try:
        key = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UserError(f"The API key file {path} could not be read ({exc.strerror}).") from None
    if len(key) < 16:
        raise UserError(f"The API key in {path} is shorter than 16 characters: use a long random key.")
    return key


def key_matches(headers, api_key: str) -> bool:
    """The key as ``Authorization: Bearer KEY``, ``X-API-Key: KEY``, or HTTP Basic with the key as
    password (what A1111 clients such as webuiapi send with ``set_auth``)."""
    given = headers.get("x-api-key")
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip()).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            given = None
    return given is not None and secrets.compare_digest(given.encode(), api_key.encode())


def confine_paths(params: dict, roots: list[Path]) -> None:
    """Every value naming an existing file, an absolute path or one with '..' must lie inside ``roots``.

    Plain names (a model in assets/models/, a hub id) are looked up by the engines inside assets/.
    """
    for name in PATH_FIELDS:
        value = params.get(name)
        for text in _path_texts(value):
            _check_path(text, roots)


def _path_texts(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    texts = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("path")
        if isinstance(item, str) and item:
            texts.append(_strip_weights(item))
    return texts


def _strip_weights(text: str) -> str:
    """'path:0.8:-1' -> 'path' (weights and stops are numbers after the last colons)."""
    parts = text.split(":")
    while len(parts) > 1 and _is_number(parts[-1]):
        parts.pop()
    return ":".join(parts)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _check_path(text: str, roots: list[Path]) -> None:
    path = Path(text).expanduser()
    if not (path.is_absolute() or ".." in path.parts or path.exists()):
        return
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        raise UserError(f"The path {text} is outside assets/ and the output folder: the API only reads files there.")


def decode_image_data(data: str, what: str = "image") -> bytes:
    """The bytes of a base64 image or data: URI (the image itself is checked when it is opened)."""
    text = data.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        raw = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise UserError(f"The {what} is not valid base64: send the file's bytes base64-encoded.") from None
    if not raw:
        raise UserError(f"The {what} is empty: send the file's bytes base64-encoded.")
    return raw
