"""How long a run will take, said before it starts: a simple per-device cost model.

A run's time is its load time plus (denoising or optimisation steps) x (seconds per step). The
seconds per step come from the newest finished runs of the same mode, device kind and model kind
(demo or real) in the output folder (details.json keeps ``timing.median_step_s``), scaled to this
run's size; with no such run, from the rough table below. Good to a factor of two: enough to warn
before a run that would take an hour.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from . import runs, settings

LONG_RUN_S = 600          # runs estimated longer than this are confirmed before they are queued
HISTORY_RUNS = 40         # how many of the newest run folders are looked at
HISTORY_MATCHES = 5       # the median of this many matching runs is used

# (device kind, engine family, demo) -> (seconds per step at any size, seconds per step per megapixel
# of images made at once). Measured roughly: a laptop CPU with 4 cores, a mid-range CUDA GPU.
ROUGH = {
    ("cpu", "vqgan", False): (0.8, 25.0),
    ("cpu", "vqgan", True): (0.5, 2.0),
    ("cpu", "sd", False): (0.3, 20.0),
    ("cpu", "sd", True): (0.02, 0.5),
    ("cuda", "vqgan", False): (0.05, 0.6),
    ("cuda", "vqgan", True): (0.01, 0.05),
    ("cuda", "sd", False): (0.01, 0.2),
    ("cuda", "sd", True): (0.005, 0.02),
}
ROUGH_LOAD_S = {("cpu", False): 20.0, ("cuda", False): 10.0, ("cpu", True): 2.0, ("cuda", True): 1.0}
FAMILY = {"vqgan": "vqgan", "diffusion": "sd", "walk": "sd"}


@dataclass
class Estimate:
    seconds: float
    steps: int
    from_history: bool    # True: measured on recent runs of this output folder; False: the rough table

    @property
    def long(self) -> bool:
        return self.seconds > LONG_RUN_S

    def describe(self) -> str:
        basis = "recent runs of this kind" if self.from_history else "a rough table for this device"
        return f"about {format_duration(self.seconds)} ({self.steps} steps; estimated from {basis})"


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_run(mode: str, params: dict, output_dir: Path | str, device: str) -> Estimate | None:
    """The estimated time of a run of ``mode`` with ``params`` (the front end's request) on
    ``device``; None for modes without a model (upscale) or runs that go on until stopped."""
    family = FAMILY.get(mode)
    if family is None:
        return None
    merged = {**settings.defaults(mode), **{k: v for k, v in params.items() if v is not None}}
    steps = total_steps(mode, merged)
    if steps is None:
        return None
    kind, demo = device_kind(device), bool(merged.get("demo"))
    megapixels = batch_megapixels(mode, merged)
    history = similar_runs(mode, output_dir, kind, demo, megapixels)
    if history:
        # each run's seconds per step, scaled from its size to this one's along the table's shape
        per_step = statistics.median(item["step_s"] * _shape(kind, family, demo, megapixels)
                                     / _shape(kind, family, demo, item["megapixels"]) for item in history)
        load = statistics.median(item["load_s"] for item in history)
    else:
        per_step = _shape(kind, family, demo, megapixels)
        load = ROUGH_LOAD_S[(kind, demo)]
    return Estimate(seconds=load + per_step * steps * _pass_factor(mode, merged), steps=steps,
                    from_history=bool(history))


def device_kind(device: str | None) -> str:
    return "cuda" if str(device or "").startswith("cuda") else "cpu"


def total_steps(mode: str, params: dict) -> int | None:
    """Steps the run makes (every batch and walk frame counted); None when it has no end."""
    steps = int(params.get("steps") or 0)
    if steps <= 0:
        return None
    if mode == "diffusion":
        return steps * max(1, int(params.get("batch_count") or 1))
    if mode == "walk":
        prompts = [p for p in params.get("prompts") or [] if str(p).strip()]
        return steps * (max(1, len(prompts) - 1) * max(1, int(params.get("frames") or 1)) + 1)
    return steps


def batch_megapixels(mode: str, params: dict) -> float:
    """Megapixels made by one step (a Stable Diffusion step makes the whole batch at once)."""
    width, height = (int(v) for v in (params.get("size") or [512, 512])[:2])
    batch = max(1, int(params.get("batch_size") or 1)) if mode == "diffusion" else 1
    return width * height * batch / 1e6


def _pass_factor(mode: str, params: dict) -> float:
    """Image to image and inpainting run only ``strength`` of the steps; hires fix adds a second,
    larger pass."""
    if mode != "diffusion":
        return 1.0
    task = params.get("task") or ("inpaint" if params.get("mask") else "img2img" if params.get("init_image") else None)
    if task in ("img2img", "inpaint"):
        return max(0.05, float(params.get("strength") or 1.0))
    if task == "hires":
        steps = int(params.get("steps") or 1)
        second = (int(params.get("hires_steps") or 0) or steps) * float(params.get("hires_strength") or 0.5)
        return 1.0 + second / steps * float(params.get("hires_scale") or 2.0) ** 2
    return 1.0


def _shape(kind: str, family: str, demo: bool, megapixels: float) -> float:
    fixed, per_megapixel = ROUGH[(kind, family, demo)]
    return fixed + per_megapixel * megapixels


def similar_runs(mode: str, output_dir: Path | str, kind: str, demo: bool, megapixels: float) -> list[dict]:
    """Seconds per step, megapixels and load time of the newest finished runs like this one (same
    mode, device kind, demo or not); when some were the same size, only those."""
    found = []
    for run in runs.list_runs(output_dir, limit=HISTORY_RUNS):
        details = run.details
        timing = details.get("timing") if isinstance(details.get("timing"), dict) else {}
        step_s = timing.get("median_step_s")
        resolved = runs.resolved_of(details)
        if (details.get("mode") != mode or details.get("status") != runs.DONE or not step_s
                or device_kind(details.get("device")) != kind or bool(resolved.get("demo")) != demo):
            continue
        found.append({"step_s": float(step_s), "megapixels": batch_megapixels(mode, resolved),
                      "load_s": float(timing.get("load_s") or 0.0)})
    same_size = [item for item in found if abs(item["megapixels"] - megapixels) < 1e-9]
    return (same_size or found)[:HISTORY_MATCHES]
