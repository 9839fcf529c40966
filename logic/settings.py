"""Defaults and paths: every default the UI and CLI show comes from defaults.yaml."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS_FILE = ROOT / "defaults.yaml"


@functools.lru_cache(maxsize=1)
def _load_defaults() -> dict:
    return yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8")) or {}


def defaults(section: str | None = None) -> dict:
    """A copy of defaults.yaml, or of one section of it."""
    data = copy.deepcopy(_load_defaults())
    return data.get(section, {}) if section else data


def quick_defaults(section: str) -> dict:
    """``defaults(section)`` with its ``cpu:`` overrides from defaults.yaml: small settings that finish
    in about a minute without a GPU. The app starts from these on such machines; the CLI does not."""
    return {**defaults(section), **(defaults("cpu").get(section) or {})}


def has_quick_defaults(section: str) -> bool:
    return bool(defaults("cpu").get(section))


def _path_setting(env: str, key: str) -> Path:
    value = os.environ.get(env) or defaults("paths").get(key, key)
    path = Path(value).expanduser()
    return path if path.is_absolute() else ROOT / path


def assets_dir() -> Path:
    return _path_setting("ATELIER_ASSETS", "assets")


def output_dir() -> Path:
    return _path_setting("ATELIER_OUTPUT", "output")


def locks_dir() -> Path:
    """Where the per-device lock files live: one per machine (not per output folder), because
    the lock guards the GPU itself. Env ATELIER_LOCKS overrides (tests use a private folder)."""
    value = os.environ.get("ATELIER_LOCKS")
    if value:
        return Path(value).expanduser()
    import tempfile

    return Path(tempfile.gettempdir()) / f"atelier-locks-{os.getuid()}"


def demo_dir() -> Path:
    """Where the demo models are written on first use (git-ignored)."""
    return assets_dir() / "demo"
