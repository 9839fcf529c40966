"""The CLI end to end, as a user runs it: a demo run, and one sentence for each bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from logic import media

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, timeout=300, **popen):
    return subprocess.run([sys.executable, "-m", "logic", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


def test_demo_run_end_to_end(output_dir):
    result = cli("vqgan", "--demo", "--prompt", "a red fox", "--steps", "20", "--size", "64", "64",
                 "--every", "4", "--output", str(output_dir))
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent == output_dir
    details = json.loads((run_dir / "details.json").read_text())
    assert details["status"] == "done" and details["demo"] is True
    assert (run_dir / "output.png").is_file()
    assert media.count_frames(run_dir / "anim.mp4") == 6  # steps 1, 4, 8, 12, 16, 20
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, sentence", [
    (["--steps", "0"], "Steps must be a positive number or -1"),
    (["--size", "-64", "64"], "is not two positive whole numbers"),
    (["--vqgan", "no_such_model"], "Unknown VQGAN model 'no_such_model'. Available:"),
    (["--clip-weights", "/nowhere/clip.safetensors"], "does not exist"),
    (["--cutn", "0"], "cutouts must be at least 1"),
    (["--prompt", "  "], "The prompt is empty"),
    (["--device", "cuda:7"], "cuda:7"),
])
def test_bad_input_is_one_sentence_and_makes_no_run(output_dir, args, sentence):
    base = ["vqgan", "--prompt", "a fox", "--output", str(output_dir)]
    if "--vqgan" not in args and "--clip-weights" not in args:
        base.append("--demo")
    result = cli(*base, *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and sentence in lines[0], result.stderr
    assert list(output_dir.iterdir()) == []


def test_ctrl_c_stops_and_keeps_what_was_made(output_dir):
    process = subprocess.Popen(
        [sys.executable, "-m", "logic", "vqgan", "--demo", "--prompt", "a fox", "--steps", "-1", "--size", "48", "48",
         "--every", "2", "--cutn", "4", "--output", str(output_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    details = _wait_for_progress(output_dir, step=4)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    run_dir = Path(stdout.strip().splitlines()[-1])
    details = json.loads((run_dir / "details.json").read_text())
    assert details["status"] == "stopped" and details["progress"]["step"] >= 4
    assert (run_dir / "output.png").is_file() and media.count_frames(run_dir / "anim.mp4") >= 2
    assert "Traceback" not in stderr


def _wait_for_progress(output_dir, step, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for details_file in output_dir.glob("*/details.json"):
            try:
                details = json.loads(details_file.read_text())
            except ValueError:
                continue
            if (details.get("progress") or {}).get("step", 0) >= step:
                return details
        time.sleep(0.2)
    raise AssertionError("the run made no progress")


def test_models_lists_what_is_missing_and_how_to_get_it():
    result = cli("models")
    assert result.returncode == 0
    assert "bash download-weights.sh vqgan_imagenet_f16_16384" in result.stdout
    assert "demo" in result.stdout


def test_download_script_lists_and_refuses_unknown_names(tmp_path):
    env = {**os.environ, "ATELIER_ASSETS": str(tmp_path)}
    listing = subprocess.run(["bash", "download-weights.sh", "--list"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert "vqgan_imagenet_f16_16384" in listing.stdout and "(default)" in listing.stdout
    unknown = subprocess.run(["bash", "download-weights.sh", "nope"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert unknown.returncode == 2 and "unknown model 'nope'" in unknown.stderr
    (tmp_path / "coco.yaml").write_text("model: {}")
    (tmp_path / "coco.ckpt").write_bytes(b"weights")
    done = subprocess.run(["bash", "download-weights.sh", "coco"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stderr.count("already complete") == 2


def test_match_artist_from_the_cli_records_the_match(output_dir):
    result = cli("vqgan", "--demo", "--prompt", "a graffiti gorilla", "--steps", "2", "--size", "48", "48",
                 "--cutn", "4", "--match-artist", "--artist", "Eve Rings", "--output", str(output_dir))
    assert result.returncode == 0, result.stderr
    details = json.loads((Path(result.stdout.strip().splitlines()[-1]) / "details.json").read_text())
    assert details["prompt_used"] == "a graffiti gorilla, in the style of Eve Rings"
    assert details["artist_match"]["artist"] == "Eve Rings" and details["artist_match"]["runner_up"]
    unknown = cli("vqgan", "--demo", "--prompt", "x", "--steps", "2", "--match-artist", "--artist", "Nobody",
                  "--output", str(output_dir))
    assert unknown.returncode != 0 and "Nobody" in unknown.stderr and "Traceback" not in unknown.stderr


def test_a_cli_start_marks_runs_orphaned_by_a_dead_process(output_dir):
    from logic import runs

    orphan = runs.create_run(output_dir, "vqgan", {"prompt": "left behind"})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan.update(status=runs.RUNNING, owner={**orphan.details["owner"], "pid": dead.pid})
    result = cli("vqgan", "--demo", "--prompt", "a fox", "--steps", "1", "--size", "32", "32", "--cutn", "2",
                 "--output", str(output_dir))
    assert result.returncode == 0, result.stderr
    assert runs.read_details(orphan.path)["status"] == runs.INTERRUPTED


def test_cached_clip_weights_are_loaded_without_asking_the_hub(tmp_path):
    from logic.models.clip import cached_weights

    snapshot = tmp_path / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    assert cached_weights("ViT-B-32", "openai", cache_dir=str(tmp_path)) == str(snapshot / "open_clip_pytorch_model.bin")
    assert cached_weights("ViT-B-32", "openai", cache_dir=str(tmp_path / "empty")) is None


def test_missing_clip_weights_offline_is_one_sentence(output_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "logic", "artists", "match", "a fox"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "download-weights.sh --clip ViT-B-32:openai" in lines[0]
