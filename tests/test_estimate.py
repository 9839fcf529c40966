"""The run-time estimate: measured on recent runs of the output folder, else a rough table."""

from __future__ import annotations

import pytest

from logic import estimate, runs


def finished_run(output, mode="vqgan", *, size=(48, 48), step_s=2.0, load_s=5.0, device="cpu", demo=True,
                 status=runs.DONE, **resolved):
    """A run folder as a finished run leaves it, with the timing details.json keeps."""
    params = {"prompt": "a fox", "size": list(size), "steps": 10, "demo": demo, **resolved}
    run = runs.create_run(output, mode, params, params)
    run.update(status=status, device=device, timing={"load_s": load_s, "generate_s": 10 * step_s,
                                                     "median_step_s": step_s})
    return run


def test_recent_runs_of_the_same_kind_give_the_seconds_per_step(output_dir):
    finished_run(output_dir, step_s=3.0, load_s=4.0)
    found = estimate.estimate_run("vqgan", {"size": [48, 48], "steps": 300, "demo": True}, output_dir, "cpu")
    assert found.from_history and found.steps == 300
    assert found.seconds == pytest.approx(4.0 + 3.0 * 300)
    assert found.long and "about 15 min" in found.describe() and "recent runs" in found.describe()
    short = estimate.estimate_run("vqgan", {"size": [48, 48], "steps": 100, "demo": True}, output_dir, "cpu")
    assert not short.long


def test_runs_of_another_mode_device_or_model_kind_or_unfinished_are_not_used(output_dir):
    finished_run(output_dir, "diffusion", step_s=50.0)
    finished_run(output_dir, step_s=50.0, device="cuda")
    finished_run(output_dir, step_s=50.0, demo=False)
    finished_run(output_dir, step_s=50.0, status=runs.FAILED)
    found = estimate.estimate_run("vqgan", {"size": [48, 48], "steps": 10, "demo": True}, output_dir, "cpu")
    assert not found.from_history
    fixed, per_megapixel = estimate.ROUGH[("cpu", "vqgan", True)]
    assert found.seconds == pytest.approx(estimate.ROUGH_LOAD_S[("cpu", True)]
                                          + 10 * (fixed + per_megapixel * 48 * 48 / 1e6))


def test_a_run_of_the_same_size_wins_and_other_sizes_are_scaled(output_dir):
    finished_run(output_dir, size=(512, 512), step_s=8.0, load_s=0.0)
    bigger = estimate.estimate_run("vqgan", {"size": [1024, 1024], "steps": 1, "demo": True}, output_dir, "cpu")
    assert bigger.from_history and bigger.seconds > 8.0 * 2  # four times the pixels: slower per step
    finished_run(output_dir, size=(1024, 1024), step_s=20.0, load_s=0.0)
    same = estimate.estimate_run("vqgan", {"size": [1024, 1024], "steps": 1, "demo": True}, output_dir, "cpu")
    assert same.seconds == pytest.approx(20.0)


def test_steps_count_every_batch_walk_frame_and_hires_pass(output_dir):
    assert estimate.total_steps("diffusion", {"steps": 20, "batch_count": 3}) == 60
    assert estimate.total_steps("walk", {"steps": 5, "frames": 24, "prompts": ["a", "b", "c"]}) == 5 * (2 * 24 + 1)
    assert estimate.total_steps("vqgan", {"steps": -1}) is None  # until stopped: no end to estimate
    plain = estimate.estimate_run("diffusion", {"steps": 20, "size": [512, 512]}, output_dir, "cpu")
    hires = estimate.estimate_run("diffusion", {"steps": 20, "size": [512, 512], "task": "hires"}, output_dir, "cpu")
    img2img = estimate.estimate_run("diffusion", {"steps": 20, "size": [512, 512], "init_image": "x.png",
                                                  "strength": 0.5}, output_dir, "cpu")
    assert img2img.seconds < plain.seconds < hires.seconds


def test_modes_without_a_model_and_endless_runs_have_no_estimate(output_dir):
    assert estimate.estimate_run("upscale", {"image": "x.png"}, output_dir, "cpu") is None
    assert estimate.estimate_run("vqgan", {"steps": -1}, output_dir, "cpu") is None


def test_the_full_cpu_defaults_are_long_and_the_quick_ones_are_not(output_dir):
    from logic import settings

    for mode in ("vqgan", "diffusion", "walk"):
        full = estimate.estimate_run(mode, {"demo": False}, output_dir, "cpu")
        quick = estimate.estimate_run(mode, {**settings.quick_defaults(mode), "demo": False}, output_dir, "cpu")
        assert quick.seconds < 120 < full.seconds, mode
