"""VQGAN+CLIP features on the demo models: each one does what it says, recorded in details.json."""

from __future__ import annotations

import threading
import time

import pytest
import torch
import yaml

from logic import jobs, media, runs, settings
from logic.engines import vqgan_clip as engine
from logic.models.checkpoints import load_checkpoint
from logic.models.vqgan import build_vqgan
from logic.vqgan import cutouts as cut
from logic.vqgan.animation import Motion, move_pixels
from logic.vqgan.losses import PromptLoss, mse_weight_at, tv_loss
from logic.vqgan.optimisers import OPTIMISERS
from logic.vqgan.schedule import split_stages, stage_at

from vqgan_helpers import CACHE, TINY, installed_vqgans, run_vqgan, write_image


def optimisation(**params):
    spec = engine.build_spec({**TINY, **params})
    models, _ = CACHE.get(engine.model_key(spec, "cpu"), lambda: engine.load_models(spec, "cpu"))
    spec = engine.prepare(spec, models)
    return engine.build_optimisation(spec, models, "cpu", torch.Generator().manual_seed(spec.seed)), models


# Image prompts ------------------------------------------------------------------------------------

def test_image_prompts_keep_their_own_weight_and_stop(tmp_path, output_dir):
    red, blue = write_image(tmp_path / "red.png"), write_image(tmp_path / "blue.jpg", (0, 0, 255))
    opt, _ = optimisation(prompt="a fox:3", image_prompts=[f"{red}:2", f"{blue}:0.5:-1"])
    assert [(l.weight, l.stop) for l in opt.image_losses] == [(2.0, float("-inf")), (0.5, -1.0)]
    _, run, details = run_vqgan(output_dir, prompt="a fox:3", image_prompts=[f"{red}:2", f"{blue}:0.5:-1"])
    assert details["status"] == "done"
    assert details["inputs"] == ["image-prompt-0.png", "image-prompt-1.jpg"]
    kept = details["resolved"]["image_prompts"]
    assert [p["weight"] for p in kept] == [2.0, 0.5] and kept[1]["stop"] == -1.0
    assert all(p["path"].startswith(str(run.path / "inputs")) for p in kept)  # a rerun finds the copies
    rows = runs.read_metrics(run.path)
    assert {"loss/image-0", "loss/image-1", "loss/a fox"} <= set(rows[0])
    engine.build_spec(details["resolved"])  # the recorded params rebuild the run


# Init image and noise ------------------------------------------------------------------------------

def test_init_image_is_resized_and_encoded(tmp_path, output_dir):
    image = write_image(tmp_path / "init.png", size=(100, 37))
    opt, models = optimisation(prompt="x", init_image=str(image))
    from logic.vqgan.synthesis import to_pixels
    expected = opt.synth.encode(to_pixels(media.open_user_image(image), [32, 32], "cpu"))
    assert torch.allclose(opt.z, expected) and opt.z.shape[-2:] == (8, 8)
    _, run, details = run_vqgan(output_dir, prompt="x", init_image=str(image))
    assert (run.path / "inputs" / "init-image.png").is_file()
    assert details["resolved"]["init_image"] == str(run.path / "inputs" / "init-image.png")


def test_noise_inits_differ_and_repeat_with_the_seed():
    latents = {noise: optimisation(prompt="x", init_noise=noise)[0].z for noise in ("codes", "pixels", "gradient")}
    assert not torch.allclose(latents["codes"], latents["pixels"])
    assert not torch.allclose(latents["pixels"], latents["gradient"])
    assert torch.equal(latents["gradient"], optimisation(prompt="x", init_noise="gradient")[0].z)


# Continue ---------------------------------------------------------------------------------------

def test_continue_carries_latent_and_optimiser_and_records_the_parent(output_dir):
    _, parent, parent_details = run_vqgan(output_dir, prompt="backyard in spring", steps=3)
    saved = load_checkpoint(parent.path / "state.pt")
    assert saved["optimiser"]["state"][0]["step"].item() == 3
    opt, _ = optimisation(prompt="backyard in summer", continue_from=str(parent.path), steps=2)
    assert torch.equal(opt.z.detach(), saved["z"])
    assert opt.optimiser.state_dict()["state"][0]["step"].item() == 3
    _, child, details = run_vqgan(output_dir, prompt="backyard in summer", continue_from=str(parent.path), steps=2)
    assert details["parent_run_id"] == parent_details["run_id"]
    assert details["continued"] == "latent and optimiser state"
    assert load_checkpoint(child.path / "state.pt")["optimiser"]["state"][0]["step"].item() == 5
    assert details["resolved"]["size"] == [32, 32]


def test_continue_with_a_new_size_resizes_the_latent(output_dir):
    _, parent, _ = run_vqgan(output_dir, prompt="autumn", steps=2)
    _, child, details = run_vqgan(output_dir, prompt="winter", continue_from=str(parent.path), size=[48, 32], steps=2)
    assert details["status"] == "done", details["error"]
    state = load_checkpoint(child.path / "state.pt")
    assert state["z"].shape[-2:] == (8, 12)
    assert state["optimiser"]["state"][0]["exp_avg"].shape[-2:] == (8, 12)


def test_continue_inherits_the_parent_settings(output_dir):
    _, parent, _ = run_vqgan(output_dir, prompt="spring", optimiser="RMSprop", tv_weight=0.5, steps=1)
    spec = engine.build_spec({"continue_from": str(parent.path)})
    assert (spec.prompt, spec.optimiser, spec.tv_weight, spec.demo) == ("spring", "RMSprop", 0.5, True)


# Prompt schedule --------------------------------------------------------------------------------

def test_story_switches_prompt_at_step_n(output_dir):
    assert split_stages("spring ^ summer:2 | sun ^ ") == ["spring", "summer:2 | sun"]
    assert [stage_at(s, 2, 3) for s in range(1, 9)] == [0, 0, 1, 1, 2, 2, 2, 2]
    _, run, details = run_vqgan(output_dir, prompt="spring ^ summer", story_every=2, steps=5)
    rows = runs.read_metrics(run.path)
    assert ["loss/spring" in r for r in rows] == [True, True, False, False, False]
    assert ["loss/summer" in r for r in rows] == [False, False, True, True, True]
    assert details["stages"] == ["spring", "summer"]


# Losses -----------------------------------------------------------------------------------------

def test_tv_weight_reaches_the_loss():
    losses = {}
    for weight in (0.0, 5.0):
        opt, _ = optimisation(prompt="x", tv_weight=weight)
        _, metrics = engine.train_step(opt, 1)
        losses[weight] = metrics
    assert "loss/tv" not in losses[0.0]
    assert losses[5.0]["loss/tv"] > 0
    assert losses[5.0]["loss"] == pytest.approx(losses[0.0]["loss"] + losses[5.0]["loss/tv"], rel=1e-5)
    opt, _ = optimisation(prompt="x", tv_weight=5.0)
    assert losses[5.0]["loss/tv"] == pytest.approx(5.0 * float(tv_loss(opt.z.detach())), rel=1e-5)  # on the latent


def test_mse_regularisation_decays_and_interval_zero_works(output_dir):
    assert mse_weight_at(10, 1.0, 0.1, 0) == 1.0          # 0 = no decay (the original app crashed)
    assert mse_weight_at(10, 1.0, 0.1, 5) == pytest.approx(0.8)
    assert mse_weight_at(500, 1.0, 0.1, 5) == 0.0
    _, run, details = run_vqgan(output_dir, prompt="x", mse_weight=0.5, mse_decay=0.1, mse_decay_every=0)
    assert details["status"] == "done"
    rows = runs.read_metrics(run.path)
    assert rows[0]["loss/mse"] == 0.0 and rows[-1]["loss/mse"] > 0  # the latent moved away from its start


def test_prompt_loss_weights_and_stop():
    target = torch.randn(8)
    image = torch.randn(3, 8)
    near = PromptLoss(target, 2.0, float("-inf"))(image)
    assert near == pytest.approx(2 * PromptLoss(target, 1.0, float("-inf"))(image))
    assert PromptLoss(target, -1.0, float("-inf"))(image) < 0
    # shares weight unique cutouts as if the duplicates had been encoded
    doubled = torch.cat([image[:1], image])
    assert PromptLoss(target, 1.0, float("-inf"))(doubled) == pytest.approx(
        PromptLoss(target, 1.0, float("-inf"))(image, torch.tensor([0.5, 0.25, 0.25])).item())


# Cutouts ----------------------------------------------------------------------------------------

def test_random_cutouts_without_augmentation_encode_duplicates_once():
    small = torch.rand(1, 3, 24, 24, requires_grad=True)  # smaller than the cut size: every crop is all of it
    batch = cut.Cutter(32, 8, 1.0, "random", augment=False)(small)
    assert batch.pixels.shape == (1, 3, 32, 32) and batch.weights.tolist() == [1.0]
    big = torch.rand(1, 3, 128, 128)
    batch = cut.Cutter(32, 8, 1.0, "random", augment=False, generator=torch.Generator().manual_seed(0))(big)
    assert batch.pixels.shape == (8, 3, 32, 32) and batch.weights is None


def test_pooled_and_augmented_cutouts_are_differentiable():
    image = torch.rand(1, 3, 64, 64, requires_grad=True)
    assert cut.Cutter(32, 4, 1.0, "pooled", augment=False)(image).pixels.shape == (1, 3, 32, 32)
    for method in cut.CUT_METHODS:
        batch = cut.Cutter(32, 4, 1.0, method, augment=True)(image)
        assert batch.pixels.shape == (4, 3, 32, 32) and batch.weights is None
        batch.pixels.sum().backward()
        assert image.grad is not None and image.grad.abs().sum() > 0
        image.grad = None
    torch.manual_seed(0)
    augmented = cut.Cutter(32, 4, 1.0, "pooled", augment=True)(image).pixels
    assert not torch.allclose(augmented[0], augmented[1])  # each cutout augmented differently


def test_pooled_cut_method_runs(output_dir):
    _, _, details = run_vqgan(output_dir, prompt="x", cut_method="pooled", augment=True)
    assert details["status"] == "done" and details["resolved"]["cut_method"] == "pooled"


# Optimisers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_every_optimiser_takes_a_step(name):
    opt, _ = optimisation(prompt="x", optimiser=name.lower())
    before = opt.z.detach().clone()
    engine.train_step(opt, 1)
    assert opt.spec.optimiser == name and not torch.equal(before, opt.z.detach())


# Animation --------------------------------------------------------------------------------------

def test_motion_moves_pixels():
    image = torch.zeros(1, 3, 16, 16)
    image[..., 8, 8] = 1
    moved = move_pixels(image, Motion(translate_x=2))
    assert moved[0, 0, 8, 10].item() == pytest.approx(1.0) and moved[0, 0, 8, 8].item() == pytest.approx(0.0)
    assert torch.allclose(move_pixels(image, Motion()), image, atol=1e-6)


def test_animation_changes_the_frames(output_dir):
    _, still, _ = run_vqgan(output_dir, prompt="x", steps=6, every=2, lr=1e-6)
    _, moving, details = run_vqgan(output_dir, prompt="x", steps=6, animate_every=2, zoom=1.3, rotate=10,
                                   translate_x=4, lr=1e-6)
    assert details["frames"] == 4 == media.count_frames(moving.path / "anim.mp4")  # step 1 + one per move
    import imageio.v2 as imageio
    with imageio.get_reader(still.path / "anim.mp4") as a, imageio.get_reader(moving.path / "anim.mp4") as b:
        last_still, last_moving = [f for f in a][-1], [f for f in b][-1]
    assert abs(last_still.astype(float) - last_moving.astype(float)).mean() > 5


# VQGAN checkpoints ------------------------------------------------------------------------------

def _write_pair(name: str, config: dict, prefix: str = "") -> None:
    torch.manual_seed(0)
    model, _ = build_vqgan(config)
    state = {prefix + k: v for k, v in model.state_dict().items()}
    folder = settings.assets_dir()
    torch.save({"state_dict": state}, folder / f"{name}.ckpt")
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config))


def _tiny_params(n_embed: int, **extra) -> dict:
    from logic.models.demo import DEMO_VQGAN_CONFIG
    ddconfig = {**DEMO_VQGAN_CONFIG["model"]["params"]["ddconfig"], "ch": 32, "z_channels": 16}
    return {"embed_dim": 16, "n_embed": n_embed, "ddconfig": ddconfig, **extra}


def test_gumbel_and_net2net_checkpoints_are_listed_and_run(output_dir):
    gumbel = {"model": {"target": "taming.models.vqgan.GumbelVQ", "params": _tiny_params(64, kl_weight=1e-8)}}
    net2net = {"model": {"target": "taming.models.cond_transformer.Net2NetTransformer", "params": {
        "first_stage_config": {"target": "taming.models.vqgan.VQModel", "params": _tiny_params(128)}}}}
    with installed_vqgans("tiny_gumbel", "tiny_net2net"):
        _write_pair("tiny_gumbel", gumbel)
        _write_pair("tiny_net2net", net2net, prefix="first_stage_model.")
        listed = {m["name"]: m for m in engine.available_vqgans()}
        assert (listed["tiny_gumbel"]["kind"], listed["tiny_gumbel"]["n_embed"]) == ("GumbelVQ", 64)
        assert (listed["tiny_net2net"]["kind"], listed["tiny_net2net"]["n_embed"]) == ("VQModel", 128)
        for name, kind in (("tiny_gumbel", "GumbelVQ"), ("tiny_net2net", "VQModel")):
            engine_, spec, run = jobs.submit_run("vqgan", {**TINY, "demo": False, "vqgan": name, "clip": "demo-clip",
                                                            "prompt": "x"}, output_dir)
            spec.clip = "demo-clip"
            jobs.execute_run(engine_, spec, run, device="cpu", cache=CACHE)
            details = runs.read_details(run.path)
            assert details["status"] == "done", details["error"]
            assert details["model"]["vqgan_kind"] == kind


# Steps, video, GIF, size ------------------------------------------------------------------------

def test_run_until_stopped_keeps_what_was_made(output_dir):
    engine_, spec, run = jobs.submit_run("vqgan", {**TINY, "prompt": "x", "steps": -1}, output_dir)
    state = jobs.new_state(run)
    thread = threading.Thread(target=jobs.execute_run, args=(engine_, spec, run),
                              kwargs={"device": "cpu", "cache": CACHE, "state": state})
    thread.start()
    deadline = time.monotonic() + 60
    while state.step < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    state.stop_event.set()
    thread.join(60)
    details = runs.read_details(run.path)
    assert details["status"] == "stopped" and details["progress"]["step"] >= 4
    assert (run.path / "output.png").is_file() and (run.path / "state.pt").is_file()


def test_gif_fps_and_frame_interval(output_dir):
    _, run, details = run_vqgan(output_dir, prompt="x", steps=6, every=3, fps=7, gif=True)
    assert details["frames"] == 3 and details["resolved"]["fps"] == 7
    assert (run.path / "anim.gif").is_file()


def test_size_is_rounded_to_the_model_factor_and_recorded(output_dir):
    _, _, details = run_vqgan(output_dir, prompt="x", size=[35, 29], steps=1)
    assert details["resolved"]["size"] == [36, 28] and details["resolved"]["size_requested"] == [35, 29]
    assert "rounded" in details["size_note"]


# Out of memory and memory -----------------------------------------------------------------------

def test_out_of_memory_fails_with_a_sentence_and_the_next_run_works(output_dir, monkeypatch):
    real_step = engine.train_step

    def exhausted(opt, step):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine, "train_step", exhausted)
    state, _, details = run_vqgan(output_dir, prompt="x")
    assert details["status"] == "failed" and "smaller size" in details["error"] and "cutouts" in details["error"]
    monkeypatch.setattr(engine, "train_step", real_step)
    _, _, details = run_vqgan(output_dir, prompt="x")
    assert details["status"] == "done"


def test_ten_runs_in_one_process_do_not_grow_memory(output_dir):
    import gc
    import psutil

    process = psutil.Process()
    run_vqgan(output_dir, prompt="warm up", steps=1)
    gc.collect()
    before = process.memory_info().rss
    for i in range(10):
        run_vqgan(output_dir, prompt=f"run {i}", steps=1)
    gc.collect()
    assert process.memory_info().rss - before < 40 * 2**20


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_on_cuda(output_dir, precision):
    engine_, spec, run = jobs.submit_run("vqgan", {**TINY, "prompt": "x", "precision": precision}, output_dir)
    jobs.execute_run(engine_, spec, run, device="cuda", cache=jobs.ModelCache())
    details = runs.read_details(run.path)
    assert details["status"] == "done" and details["precision_used"] == precision
