"""The Stable Diffusion engine on tiny random models: determinism, formats, batches, img2img, stop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from logic import media, runs
from logic.__main__ import main
from logic.engines import diffusion as engine
from logic.engines import sd_common
from logic.errors import UserError
from logic.models import diffusion as sd

from sd_helpers import BASE, CACHE, TOKEN, pixels, run_engine, tiny_models


def test_tokenizer_from_open_clip_bpe_matches_open_clip(tmp_path):
    import open_clip

    tokenizer = sd.load_clip_tokenizer(tmp_path / "tok")
    reference = open_clip.get_tokenizer("ViT-B-32")
    for text in ["a red fox, oil painting!", "Crème brûlée   at 3pm <3"]:
        ours = tokenizer(text).input_ids
        assert ours == reference([text])[0].tolist()[:len(ours)]
    assert len(tokenizer) == 49408


def test_txt2img_records_everything_and_is_deterministic(output_dir):
    run, state = run_engine("diffusion", output_dir, **BASE, seed=5)
    assert state.status == runs.DONE, state.error
    details = json.loads(run.file("details.json").read_text())
    assert details["seed"] == 5 and details["seeds"] == [5] and details["params"]["seed"] == 5
    assert set(details["timing"]) == {"load_s", "generate_s", "median_step_s"}
    assert details["demo"] is False and details["model"]["kind"] == "folder"
    assert run.file("anim.mp4").is_file() and details["frames"] == 3  # 2 previews + the final image
    parsed = media.parse_parameters(media.read_png_parameters(run.file("output.png")))
    assert parsed["prompt"] == "a red fox" and parsed["negative"] == "blurry"
    assert (parsed["Steps"], parsed["Sampler"], parsed["CFG scale"], parsed["Seed"], parsed["Size"],
            parsed["Model"]) == ("2", "Euler", "5.0", "5", "32x32", "tiny")
    again, _ = run_engine("diffusion", output_dir, **BASE, seed=5)
    other, _ = run_engine("diffusion", output_dir, **BASE, seed=6)
    assert np.array_equal(pixels(run.file("output.png")), pixels(again.file("output.png")))
    assert not np.array_equal(pixels(run.file("output.png")), pixels(other.file("output.png")))


def test_rerun_cli_makes_the_same_image(output_dir, capsys):
    run, _ = run_engine("diffusion", output_dir, **{**BASE, "scheduler": "Euler a"}, seed=11)
    assert main(["rerun", str(run.path), "--output", str(output_dir), "--device", "cpu"]) == 0
    new_dir = capsys.readouterr().out.strip().splitlines()[-1]
    new = runs.open_run(new_dir)
    assert new.details["rerun_of"] == run.run_id and new.details["status"] == runs.DONE
    assert np.array_equal(pixels(run.file("output.png")), pixels(new.file("output.png")))


def test_single_safetensors_and_ckpt_load_to_the_same_model(output_dir):
    made = {}
    for model in ("tiny", "tiny-file.safetensors", "tiny-pickle.ckpt"):
        run, state = run_engine("diffusion", output_dir, **{**BASE, "model": model}, seed=3)
        assert state.status == runs.DONE, state.error
        made[model] = run
    reference = pixels(made["tiny"].file("output.png"))
    for model in ("tiny-file.safetensors", "tiny-pickle.ckpt"):
        assert np.array_equal(reference, pixels(made[model].file("output.png")))
    assert made["tiny-file.safetensors"].details["model"]["token"] == TOKEN
    assert sd_common.model_token("tiny-file.safetensors") == TOKEN


def test_code_running_ckpt_is_refused_and_nothing_runs(output_dir):
    files = tiny_models()
    run, state = run_engine("diffusion", output_dir, **{**BASE, "model": "evil.ckpt"}, seed=1)
    assert state.status == runs.FAILED
    assert "names posix.system, which could run code" in state.error and "\n" not in state.error
    assert not files["marker"].exists()


def test_batches_have_their_own_recorded_seeds(output_dir):
    run, state = run_engine("diffusion", output_dir, **BASE, seed=100, batch_size=2, batch_count=2)
    assert state.status == runs.DONE, state.error
    details = run.details
    assert details["seeds"] == [100, 101, 102, 103]
    files = [record["file"] for record in details["images"]]
    assert files == ["image-01-100.png", "image-02-101.png", "image-03-102.png", "image-04-103.png"]
    images = [pixels(run.file(name)) for name in files]
    for name, seed in zip(files, details["seeds"]):
        assert media.parse_parameters(media.read_png_parameters(run.file(name)))["Seed"] == str(seed)
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])
    assert np.array_equal(images[0], pixels(run.file("output.png")))
    assert Image.open(run.file("grid.png")).size == (64, 64)


def test_img2img_strength_controls_how_much_is_redrawn(output_dir, tmp_path):
    inits = []
    for index, colour in enumerate([(250, 30, 30), (20, 40, 240)]):
        path = tmp_path / f"init{index}.png"
        Image.new("RGB", (40, 40), colour).save(path)  # another size: fitted to the run's size
        inits.append(path)
    out = {}
    for strength in (0.5, 1.0):
        for index, init in enumerate(inits):
            run, state = run_engine("diffusion", output_dir, **{**BASE, "steps": 4, "preview_every": 0},
                                    seed=9, init_image=str(init), strength=strength)
            assert state.status == runs.DONE, state.error
            assert state.total == int(4 * strength)  # strength = the share of the steps that run
            assert run.details["kind"] == "img2img" and (run.path / "inputs" / "init-image.png").is_file()
            out[strength, index] = pixels(run.file("output.png"))
    influence_low = np.abs(out[0.5, 0] - out[0.5, 1]).mean()
    influence_high = np.abs(out[1.0, 0] - out[1.0, 1]).mean()
    assert influence_low > influence_high  # a lower strength keeps more of the init image


def test_stop_keeps_what_was_made(output_dir):
    from logic import jobs

    tiny_models()
    eng, spec, run = jobs.submit_run("diffusion", {**BASE, "seed": 1, "batch_count": 3, "steps": 4}, output_dir)
    state = jobs.new_state(run)
    state.stop_event.set()  # asked to stop before the first step finishes
    jobs.execute_run(eng, spec, run, device="cpu", cache=CACHE, state=state)
    assert state.status == runs.STOPPED
    assert run.file("output.png").is_file() and state.step < 12
    assert len(runs.open_run(run.path).details["images"]) == 1


def test_safety_checker_replaces_flagged_images_with_a_placeholder(output_dir):
    models, _ = CACHE.get(sd_common.model_key(engine.build_spec({**BASE, "seed": 1}), "cpu"),
                          lambda: engine.load_models(engine.build_spec({**BASE, "seed": 1}), "cpu"))
    models.safety_checker = lambda images: [False, True][:len(images)]
    try:
        run, state = run_engine("diffusion", output_dir, **BASE, seed=20, batch_size=2)
    finally:
        models.safety_checker = None
    assert state.status == runs.DONE, state.error
    assert "seed 21" in run.details["safety"] and "placeholder" in run.details["safety"]
    assert [r["safety_replaced"] for r in run.details["images"]] == [False, True]
    flagged = pixels(run.file("image-02-21.png"))
    assert flagged.max() > 0 and flagged[16, 16].tolist() == [96, 96, 96]  # grey, never a black square


@pytest.mark.parametrize("change, words", [
    ({"steps": 0}, "Steps must be"),
    ({"cfg": -1}, "CFG scale"),
    ({"scheduler": "Warp drive"}, "Available: Euler a, Euler"),
    ({"model": "nothing-here.safetensors"}, "download-weights.sh --sd"),
    ({"prompt": "  "}, "prompt is empty"),
    ({"strength": 0, "init_image": "missing.png"}, "does not exist"),
    ({"lora": ["nope.safetensors"]}, "LoRA nope.safetensors was not found"),
    ({"batch_size": 0}, "batch size"),
])
def test_bad_input_is_one_sentence_before_any_folder(output_dir, change, words):
    tiny_models()
    with pytest.raises(UserError) as caught:
        engine.build_spec({**BASE, **change})
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert not any(output_dir.iterdir())


def test_size_is_rounded_to_multiples_of_8_and_recorded():
    tiny_models()
    spec = engine.build_spec({**BASE, "size": [35, 43]})
    assert spec.size == [32, 40] and spec.size_requested == [35, 43]


def test_cli_bad_input_prints_one_line_no_traceback(capsys, output_dir):
    code = main(["diffusion", "-p", "fox", "--scheduler", "nope", "--output", str(output_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err and "Euler a" in err


def test_every_scheduler_name_maps_to_a_diffusers_scheduler():
    from diffusers import PNDMScheduler

    base = PNDMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).config
    for name in sd_common.SCHEDULERS:
        scheduler = sd_common.make_scheduler(name, base)
        scheduler.set_timesteps(4)
        assert len(scheduler.timesteps) >= 4
    assert sd_common.resolve_scheduler("dpmpp_2m_karras") == "DPM++ 2M Karras"
    assert sd_common.make_scheduler("DPM++ 2M Karras", base).config.use_karras_sigmas


def test_memory_plan_follows_free_vram_with_overrides():
    gib = 1024 ** 3
    assert sd.memory_plan("cpu") == sd.MemoryPlan("fp32", False, False, False, sd.memory_plan("cpu").reason)
    assert sd.memory_plan("cuda", free_bytes=12 * gib).dtype == "fp16"
    assert not sd.memory_plan("cuda", free_bytes=12 * gib).attention_slicing
    balanced = sd.memory_plan("cuda", free_bytes=6 * gib)
    assert balanced.attention_slicing and balanced.vae_tiling and not balanced.cpu_offload
    assert sd.memory_plan("cuda", free_bytes=2 * gib).cpu_offload
    assert not sd.memory_plan("cuda", "bf16", "fast", free_bytes=1 * gib).cpu_offload
    assert sd.memory_plan("cuda", "bf16", "fast").dtype == "bf16"


def test_latent_preview_is_an_image_of_the_run_size():
    import torch

    preview = sd_common.latents_to_preview(torch.randn(1, 4, 8, 6), (48, 64))
    assert preview.size == (48, 64) and preview.mode == "RGB"


def test_a_hub_model_in_the_cache_loads_without_asking_the_hub(tmp_path):
    """The cache layout huggingface_hub writes, with no network and HF_HUB_OFFLINE unset."""
    import os
    import shutil
    import subprocess
    import sys

    folder = tiny_models()["folder"]
    repo = tmp_path / "hub" / "models--someone--tiny-sd"
    snapshot = repo / "snapshots" / "0123abcd"
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    requests, server = _counting_hub()
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_HUB_CACHE=str(tmp_path / "hub"), HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}")
    try:
        result = subprocess.run([sys.executable, "-m", "logic", "diffusion", "--model", "someone/tiny-sd", "--prompt",
                                 "a fox", "--steps", "2", "--size", "32", "32", "--output", str(tmp_path / "out")],
                                cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, env=env,
                                timeout=300)
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert (run_dir / "output.png").is_file()
    # issue 13: a hub model is recorded by repo id and the snapshot's commit (no AutoV2 hash exists for it)
    found = media.parse_parameters(media.read_png_parameters(run_dir / "output.png"))
    assert (found["Model"], found["Model revision"]) == ("someone/tiny-sd", "0123abcd") and "Model hash" not in found
    assert json.loads((run_dir / "details.json").read_text())["model"]["revision"] == "0123abcd"
    # huggingface_hub may fetch its own registries; nothing about the model may be asked for.
    assert [path for path in requests if "tiny-sd" in path] == []


def _counting_hub():
    """A stand-in hub on the loopback that records every request and answers 503."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self):
            requests.append(self.path)
            self.send_response(503)
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return requests, server
