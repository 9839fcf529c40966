"""The job lifecycle on the demo VQGAN+CLIP: loss falls, stop keeps outputs, failures are sentences."""

import threading
import time

import pytest

from logic import jobs, media, runs

# Augmentations off: their noise would hide the loss trend of a 40-step run on tiny models.
PARAMS = {"prompt": "a red fox", "demo": True, "size": [48, 48], "cutn": 4, "seed": 7, "every": 2, "lr": 0.2,
          "augment": False}


def run_now(output_dir, cache=None, **params):
    engine, spec, run = jobs.submit_run("vqgan", {**PARAMS, **params}, output_dir)
    state = jobs.execute_run(engine, spec, run, device="cpu", cache=cache or jobs.ModelCache())
    return state, runs.open_run(run.path)


def test_guided_loss_falls_over_steps(output_dir):
    state, run = run_now(output_dir, steps=40)
    losses = [row["loss"] for row in runs.read_metrics(run.path)]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 * 0.95
    assert "loss/a red fox" in runs.read_metrics(run.path)[0]


def test_done_run_has_the_whole_contract(output_dir):
    state, run = run_now(output_dir, steps=9, size=[50, 46])
    d = run.details
    assert d["status"] == runs.DONE and d["progress"] == {"step": 9, "total": 9}
    assert d["params"]["size"] == [48, 48] and d["params"]["size_requested"] == [50, 46]
    assert d["seed"] == 7 and d["demo"] is True and d["model"]["vqgan"] == "demo"
    assert set(d["timing"]) == {"load_s", "generate_s", "median_step_s"} and d["timing"]["median_step_s"] > 0
    for name in ("output.png", "anim.mp4", "thumb.jpg", "metrics.jsonl"):
        assert run.file(name).is_file(), name
    assert not run.file("preview.jpg").exists()
    # frames at step 1 and every 2 steps up to 9: 1, 2, 4, 6, 8, 9
    assert d["frames"] == 6 and media.count_frames(run.file("anim.mp4")) == 6
    assert "Seed: 7" in media.read_png_parameters(run.file("output.png"))


def test_same_seed_same_image(output_dir):
    _, first = run_now(output_dir, steps=3)
    _, second = run_now(output_dir, steps=3)
    assert first.file("output.png").read_bytes() == second.file("output.png").read_bytes()


def test_stop_keeps_everything_made_so_far(output_dir):
    engine, spec, run = jobs.submit_run("vqgan", {**PARAMS, "steps": -1}, output_dir)
    state = jobs.new_state(run)
    stopper = threading.Thread(target=lambda: (_wait_for_step(state, 6), state.stop_event.set()))
    stopper.start()
    jobs.execute_run(engine, spec, run, device="cpu", state=state)
    stopper.join()
    details = runs.read_details(run.path)
    assert details["status"] == runs.STOPPED and details["progress"]["step"] >= 6
    assert run.file("output.png").is_file() and media.count_frames(run.file("anim.mp4")) >= 3
    assert len(runs.read_metrics(run.path)) == details["progress"]["step"]


def _wait_for_step(state, step, timeout=60):
    deadline = time.monotonic() + timeout
    while state.step < step and time.monotonic() < deadline:
        time.sleep(0.05)


def test_model_cache_reuses_and_releases():
    cache, loads = jobs.ModelCache(), []
    cache.get(("a",), lambda: loads.append("a") or "A")
    assert cache.get(("a",), lambda: loads.append("a2") or "A2") == ("A", False)
    assert cache.get(("b",), lambda: loads.append("b") or "B") == ("B", True)
    assert loads == ["a", "b"]


def test_given_files_are_kept_in_inputs_even_when_the_run_fails(output_dir, tmp_path, monkeypatch):
    from PIL import Image

    from logic.engines import vqgan_clip

    init = tmp_path / "holiday.JPG"
    Image.new("RGB", (40, 30), "orange").save(init, format="JPEG")

    def broken_load(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(vqgan_clip, "load_models", broken_load)
    state, run = run_now(output_dir, steps=2, init_image=str(init))
    assert state.status == runs.FAILED and "disk on fire" in run.details["error"]
    kept = run.path / "inputs" / "init-image.jpg"
    assert kept.read_bytes() == init.read_bytes()
    assert run.details["params"]["init_image"] == str(kept) and run.details["inputs"] == ["init-image.jpg"]
