"""Run folders for gallery tests, written through logic.runs (and the original app's layout)."""

from __future__ import annotations

import json
import os
import time
import subprocess
import sys
from pathlib import Path

from PIL import Image

from logic import runs

COLORS = ["red", "green", "blue", "orange", "purple", "white"]


def image(path: Path, color: str = "red", size: int = 48, fmt: str | None = None) -> Path:
    Image.new("RGB", (size, size), color).save(path, format=fmt)
    return path


def make_run(output: Path, prompt: str = "a lighthouse", *, status: str = "done", mode: str = "vqgan",
             model: dict | None = None, image_file: bool = True, thumb: bool = False, stamp: str | None = None,
             **extra) -> runs.Run:
    """A run folder as the worker leaves it; ``stamp`` fixes the folder name's timestamp (order)."""
    params = {"prompt": prompt, "steps": 20, "size": [48, 48], "seed": 7}
    run = runs.create_run(output, mode, params, model=model or {"vqgan": "demo", "clip": "demo-clip"},
                          seed=7, **extra)
    if stamp:
        new_path = run.path.with_name(f"{stamp}-{run.run_id}")
        run.path.rename(new_path)
        run.path = new_path
    if image_file and status in ("done", "stopped"):
        image(run.file(runs.OUTPUT), COLORS[len(prompt) % len(COLORS)])
        if thumb:
            image(run.file(runs.THUMB), "black", 16)
    step = 20 if status == "done" else 5
    run.update(status=status, progress={"step": step, "total": 20},
               finished=None if status in runs.ACTIVE else runs.now_iso())
    return run


def make_runs(output: Path, count: int, prompt: str = "run number {i}") -> list[runs.Run]:
    """``count`` finished runs, numbered so that run 0 is the oldest."""
    return [make_run(output, prompt.format(i=i), stamp=f"2026010{1 + i // 10000 % 9}T{i:06d}")
            for i in range(count)]


def make_legacy(output: Path, name: str = "20210805T101010_abc", prompt: str = "an old run",
                *, image_name: str = "output.PNG", inputs: bool = True) -> Path:
    """A folder as the original vqgan-clip-app wrote it."""
    folder = output / name
    folder.mkdir(parents=True)
    details = {"text_input": prompt, "num_steps": 50, "seed": 42, "model": "vqgan_imagenet_f16_16384",
               "continue_prev_run": False, "image_prompts": ["image-prompt-0.png"] if inputs else []}
    (folder / "details.json").write_text(json.dumps(details))
    if image_name:
        image(folder / image_name, "purple", fmt="PNG")
    if inputs:
        image(folder / "init-image.JPEG", "white", fmt="JPEG")
        image(folder / "image-prompt-0.png", "green")
    (folder / "anim.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    return folder


def dead_owner() -> dict:
    """An owner token of a process that has exited (a run whose worker died)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    import socket
    return {"host": socket.gethostname(), "pid": int(proc.stdout), "start": "1"}


def snapshot(folder: Path) -> dict:
    """Every file below ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def age(output: Path, seconds: float = 3600) -> None:
    """Make every run folder look last changed ``seconds`` ago (folders the index need not watch)."""
    then = time.time_ns() - int(seconds * 1e9)
    for folder in output.iterdir():
        os.utime(folder, ns=(then, then), follow_symlinks=False)
