"""Shared helpers for the VQGAN+CLIP tests: tiny demo runs and tiny images."""

from __future__ import annotations

import contextlib
from pathlib import Path

from PIL import Image

from logic import jobs, runs, settings

CACHE = jobs.ModelCache()  # the demo models load once for all tests
TINY = {"demo": True, "size": [32, 32], "steps": 2, "cutn": 4, "seed": 1, "augment": False, "every": 1}


def run_vqgan(output_dir: Path, **params):
    """Submit and run a tiny demo run in the foreground; returns (state, run, details)."""
    engine, spec, run = jobs.submit_run("vqgan", {**TINY, **params}, output_dir)
    state = jobs.execute_run(engine, spec, run, device="cpu", cache=CACHE)
    return state, run, runs.read_details(run.path)


def write_image(path: Path, colour=(200, 30, 30), size=(40, 30)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


@contextlib.contextmanager
def installed_vqgans(*names: str):
    """Remove the named VQGAN pairs from assets/ afterwards: other tests expect none installed."""
    try:
        yield settings.assets_dir()
    finally:
        for name in names:
            for suffix in (".yaml", ".ckpt"):
                (settings.assets_dir() / f"{name}{suffix}").unlink(missing_ok=True)
