"""Every Stable Diffusion family on tiny random models: detection, folders and single files, runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from logic import media, runs
from logic.__main__ import main
from logic.errors import UserError
from logic.models import diffusion as sd
from logic.models.sd import single_file

from sd_family_helpers import tiny_fp16_variant, tiny_sd1_inpaint, tiny_sd2, tiny_sdxl, tiny_sdxl_inpaint
from sd_helpers import BASE, pixels, run_engine

PLAIN = {k: v for k, v in {**BASE, "preview_every": 1, "seed": 7, "size": [32, 32]}.items() if k != "model"}


def _family(run) -> str:
    return run.details["model"]["family"]


def test_registry_lists_every_family_and_errors_name_them():
    assert list(sd.families()) == ["flux", "sd3", "sdxl", "sd2", "sd1"]
    for family in sd.families().values():
        assert {"txt2img", "img2img", "inpaint"} <= set(family.pipelines)
        assert len(family.preview["factors"]) == family.latent_channels
    with pytest.raises(UserError) as caught:
        sd.get_family("sd9")
    assert "sd1 (Stable Diffusion 1.x)" in str(caught.value) and "flux (FLUX.1)" in str(caught.value)


def test_sdxl_folder_runs_as_sdxl_with_pooled_embeddings(output_dir):
    """The bug this fixes: an SDXL folder loaded as StableDiffusionPipeline and failed with
    "argument of type 'NoneType' is not iterable" (no added_cond_kwargs)."""
    tiny_sdxl()
    run, state = run_engine("diffusion", output_dir, **PLAIN, model="tiny-sdxl")
    assert state.status == runs.DONE, state.error
    assert _family(run) == "sdxl" and run.details["frames"] == 3
    parsed = media.parse_parameters(media.read_png_parameters(run.file("output.png")))
    assert parsed["Model family"] == "sdxl"


def test_sdxl_single_file_matches_its_folder_through_the_cli(output_dir, capsys):
    files = tiny_sdxl()
    folder_run, _ = run_engine("diffusion", output_dir, **{**PLAIN, "preview_every": 0}, model="tiny-sdxl")
    code = main(["diffusion", "-p", PLAIN["prompt"], "-n", PLAIN["negative"], "--model", files["single"].name,
                 "--steps", "2", "--size", "32", "32", "--cfg", "5", "--scheduler", "Euler", "--seed", "7",
                 "--preview-every", "0", "--output", str(output_dir), "--device", "cpu"])
    assert code == 0
    file_run = runs.open_run(capsys.readouterr().out.strip().splitlines()[-1])
    assert file_run.details["status"] == runs.DONE and _family(file_run) == "sdxl"
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in load_file(files["single"])
    assert np.abs(pixels(folder_run.file("output.png")) - pixels(file_run.file("output.png"))).max() <= 1


def test_sd2_folder_and_single_file_detect_openclip_and_v_prediction(output_dir):
    files = tiny_sd2()
    made = {}
    for model in ("tiny-sd2", files["single"].name):
        run, state = run_engine("diffusion", output_dir, **{**PLAIN, "preview_every": 0}, model=model)
        assert state.status == runs.DONE, state.error
        assert _family(run) == "sd2"
        made[model] = pixels(run.file("output.png"))
    assert np.abs(made["tiny-sd2"] - made[files["single"].name]).max() <= 1
    source = sd.resolve_model(files["single"].name, settings_models())
    assert source.sidecar["prediction_type"] == "v_prediction"  # read from A1111's LDM config sidecar
    assert "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight" in load_file(files["single"])


def settings_models():
    from logic.engines import sd_common

    return sd_common.models_dir()


def test_inpainting_single_file_is_sd1_and_gets_the_inpainting_config(output_dir):
    """The refusal this fixes: a 9-channel SD 1.5 inpainting file was checked against the 4-channel
    config and refused as 'a wrong base'. Its family is SD 1.x, its config the inpainting one."""
    files = tiny_sd1_inpaint()
    state = load_file(files["single"])
    family = single_file.detect_file_family(state, {}, files["single"].name)
    assert family.name == "sd1"
    assert single_file.config_folder(family, state, {}, "x").name == "sd15-inpaint"
    run, status = run_engine("diffusion", output_dir, **PLAIN, model=files["single"].name)  # txt2img on it
    assert status.status == runs.DONE, status.error
    assert run.details["model"]["inpaint_model"] is True and _family(run) == "sd1"


@pytest.mark.parametrize("name", ["sd15", "sd15-inpaint", "sd2", "sd2-inpaint", "sdxl", "sdxl-inpaint"])
def test_shipped_configs_build_the_full_size_modules_real_files_convert_into(name):
    """Full-size UNet and text encoders from each shipped config, empty (meta) weights: the original
    key layout of those modules goes through diffusers' converters back to exactly their keys and
    shapes, so a real file of that architecture fills every weight."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from logic.models.sd.export import _unet_key_to_original, open_clip_to_original

    folder = sd.CONFIGS_DIR / name
    config = dict(UNet2DConditionModel.load_config(folder / "unet"))
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(config)
    expected = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    original = {"model.diffusion_model." + _unet_key_to_original(k, config): v for k, v in unet.state_dict().items()}
    converted = convert_ldm_unet_checkpoint(original, config)
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected
    assert config["in_channels"] == (9 if name.endswith("inpaint") else 4)
    openclip = "text_encoder_2" if name.startswith("sdxl") else "text_encoder" if name.startswith("sd2") else None
    if openclip:
        text_config = CLIPTextConfig.from_json_file(str(folder / openclip / "config.json"))
        cls = CLIPTextModelWithProjection if openclip == "text_encoder_2" else CLIPTextModel
        with init_empty_weights():
            text = cls(text_config)
        state = open_clip_to_original(text.state_dict(), "p.")
        back = convert_open_clip_checkpoint(text, state, prefix="p.")
        want = {k if k.startswith(("text_model.", "text_projection")) else "text_model." + k
                for k in text.state_dict() if "position_ids" not in k}
        assert set(back) == want


def test_fp16_variant_only_folder_loads(output_dir):
    tiny_fp16_variant()
    assert sd.weights_variant(tiny_fp16_variant()["folder"]) == "fp16"
    run, state = run_engine("diffusion", output_dir, **{**PLAIN, "preview_every": 0}, model="tiny-fp16")
    assert state.status == runs.DONE, state.error


def test_unknown_file_names_what_it_holds_and_the_families(output_dir, tmp_path):
    import torch

    path = tmp_path / "mystery.safetensors"
    save_file({"blocks.0.weight": torch.zeros(2, 2), "blocks.1.weight": torch.zeros(2)}, str(path))
    run, state = run_engine("diffusion", output_dir, **PLAIN, model=str(path))
    assert state.status == runs.FAILED
    assert "2 tensors under blocks" in state.error and "sdxl (Stable Diffusion XL)" in state.error
    assert "\n" not in state.error


def test_sdxl_inpainting_folder_inpaints(output_dir, tmp_path):
    from PIL import Image

    tiny_sdxl_inpaint()
    image, mask = tmp_path / "image.png", tmp_path / "mask.png"
    Image.new("RGB", (32, 32), (200, 40, 40)).save(image)
    painted = Image.new("L", (32, 32), 0)
    painted.paste(255, (8, 8, 24, 24))
    painted.save(mask)
    run, state = run_engine("diffusion", output_dir, **{**PLAIN, "preview_every": 0}, model="tiny-sdxl-inpaint",
                            init_image=str(image), mask=str(mask), mask_blur=0)
    assert state.status == runs.DONE, state.error
    assert run.details["task"] == "inpaint" and run.details["model"]["inpaint_model"] is True
    out = pixels(run.file("output.png"))
    assert (out[:6, :6] == [200, 40, 40]).all()   # outside the mask: the original, exactly


@pytest.mark.parametrize("build, family", [("tiny_sd3", "sd3"), ("tiny_flux", "flux")])
def test_flow_families_run_txt2img_img2img_and_record_what_ran(output_dir, tmp_path, build, family):
    import sd_family_helpers
    from PIL import Image

    getattr(sd_family_helpers, build)()
    model = build.replace("_", "-")
    params = {**PLAIN, "model": model, "size": [48, 40], "scheduler": "DPM++ 2M Karras", "cfg": 3.5}
    run, state = run_engine("diffusion", output_dir, **params)
    assert state.status == runs.DONE, state.error
    assert _family(run) == family and run.details["size"] == [48, 32]   # multiples of 16 for these families
    assert run.details["sampler"] == "Euler"   # flow models keep their flow-matching Euler
    assert run.details["frames"] == 3
    parsed = media.parse_parameters(media.read_png_parameters(run.file("output.png")))
    assert parsed["Sampler"] == "Euler" and parsed["Model family"] == family
    if family == "flux":   # no negative prompt: recorded as not used
        assert run.details["negative_used"] is None and not parsed.get("negative")
        assert (parsed["CFG scale"], parsed["Distilled CFG Scale"]) == ("1", "3.5")   # as Forge writes Flux runs
    init = tmp_path / "init.png"
    Image.new("RGB", (48, 48), (30, 90, 200)).save(init)
    again, state = run_engine("diffusion", output_dir, **{**params, "preview_every": 0, "steps": 4},
                              init_image=str(init), strength=0.5)
    assert state.status == runs.DONE, state.error
    assert again.details["task"] == "img2img" and state.total == 2


def test_flux_transformer_files_in_bfl_and_diffusers_layouts_load_the_same_weights(output_dir, capsys):
    """A tiny transformer in BFL's layout (fused qkv, single blocks' fused linear1: sizes read from the
    tensors, not diffusers' full-size assumption) and in diffusers' own: both load to the folder's
    exact weights, and the BFL file draws through the CLI what the folder draws."""
    import torch
    import yaml
    from diffusers import FluxTransformer2DModel

    from logic.engines import sd_common
    from sd_family_helpers import tiny_flux

    files = tiny_flux()
    assert "double_blocks.1.img_attn.qkv.weight" in load_file(files["single"])
    assert "single_blocks.1.linear1.weight" in load_file(files["single"])
    want = FluxTransformer2DModel.from_pretrained(files["folder"], subfolder="transformer").state_dict()
    for key in ("single", "single_diffusers"):
        sidecar = yaml.safe_load(files[key].with_name(files[key].name + ".yaml").read_text())
        pipe, family = single_file.load_single_file(files[key], sidecar, torch.float32, sd_common.tokenizer_cache())
        got = pipe.transformer.state_dict()
        assert family.name == "flux" and set(got) == set(want)
        assert all(torch.equal(got[k], want[k]) for k in want), key
    folder_run, state = run_engine("diffusion", output_dir, **{**PLAIN, "preview_every": 0, "steps": 2, "cfg": 5},
                                   model="tiny-flux")
    assert state.status == runs.DONE, state.error
    file_run = _cli_run(output_dir, capsys, files["single"].name)
    assert file_run.details["status"] == runs.DONE and _family(file_run) == "flux"
    assert np.abs(pixels(folder_run.file("output.png")) - pixels(file_run.file("output.png"))).max() <= 1


def test_a_flux_file_without_a_base_folder_says_what_to_add(output_dir, tmp_path):
    import shutil

    from sd_family_helpers import tiny_flux

    alone = tmp_path / "flux-alone.safetensors"
    shutil.copy(tiny_flux()["single"], alone)
    run, state = run_engine("diffusion", output_dir, **{**PLAIN, "model": str(alone)})
    assert state.status == runs.FAILED and "FLUX.1 file" in state.error and "base: <folder>" in state.error


def test_a_walk_through_flux_and_sdxl_keeps_keyframes_equal_to_single_runs(output_dir):
    from sd_family_helpers import tiny_flux

    tiny_flux()
    tiny_sdxl()
    for model in ("tiny-flux", "tiny-sdxl"):
        walk = {k: v for k, v in PLAIN.items() if k not in ("prompt", "preview_every", "seed")}
        run, state = run_engine("walk", output_dir, **{**walk, "model": model, "size": [32, 32]},
                                prompts=["a red fox", "a blue bird"], seeds=[3, 4], frames=2)
        assert state.status == runs.DONE, state.error
        single, _ = run_engine("diffusion", output_dir, **{**PLAIN, "model": model, "size": [32, 32],
                                                           "prompt": "a blue bird", "seed": 4, "preview_every": 0})
        assert np.abs(pixels(run.file("keyframe-02.png")) - pixels(single.file("output.png"))).max() <= 1


def test_memory_plan_follows_each_familys_needs_and_is_overridable():
    gib = 1024 ** 3
    families = sd.families()
    assert sd.memory_plan("cuda", free_bytes=10 * gib, family=families["sd1"]).mode == "fast"
    sdxl = sd.memory_plan("cuda", free_bytes=10 * gib, family=families["sdxl"])
    assert sdxl.mode == "balanced" and sdxl.vae_tiling and sdxl.dtype == "fp16" and "SDXL" not in sdxl.reason
    flux = sd.memory_plan("cuda", free_bytes=30 * gib, family=families["flux"])
    assert flux.mode == "low" and flux.cpu_offload and flux.dtype == "bf16"
    tight = sd.memory_plan("cuda", free_bytes=10 * gib, family=families["flux"])
    assert tight.sequential_offload and not tight.cpu_offload and "FLUX.1 needs about 38 GiB" in tight.reason
    assert sd.memory_plan("cuda", "fp16", "fast", free_bytes=1 * gib, family=families["flux"]).record()["mode"] == "fast"
    assert sd.memory_plan("cpu", family=families["flux"]).dtype == "fp32"


def _cli_run(output_dir, capsys, model: str, **extra):
    args = ["diffusion", "-p", PLAIN["prompt"], "-n", PLAIN["negative"], "--model", model, "--steps", "2",
            "--size", "32", "32", "--cfg", "5", "--scheduler", "Euler", "--seed", "7", "--preview-every", "0", "--output", str(output_dir),
            "--device", "cpu"]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    assert main(args) == 0
    return runs.open_run(capsys.readouterr().out.strip().splitlines()[-1])


def test_sd35_single_files_with_and_without_encoders_match_the_folder_through_the_cli(output_dir, capsys):
    """Stability's layout (MMDiT under model.diffusion_model.joint_blocks, encoders under text_encoders.):
    the file with CLIP-L/CLIP-G/T5 and the one without (encoders from its sidecar's base) draw what the folder does."""
    from sd_family_helpers import tiny_sd3

    files = tiny_sd3()
    assert "model.diffusion_model.joint_blocks.0.x_block.attn2.qkv.weight" in load_file(files["single"])
    assert "text_encoders.t5xxl.transformer.shared.weight" in load_file(files["single"])
    assert not any(k.startswith("text_encoders.") for k in load_file(files["bare"]))
    folder_run, state = run_engine("diffusion", output_dir, **{**PLAIN, "preview_every": 0, "steps": 2, "cfg": 5},
                                   model="tiny-sd3")
    assert state.status == runs.DONE, state.error
    for key in ("single", "bare"):
        file_run = _cli_run(output_dir, capsys, files[key].name)
        assert file_run.details["status"] == runs.DONE and _family(file_run) == "sd3"
        assert file_run.details["model"]["text_encoders"] == ["text_encoder", "text_encoder_2", "text_encoder_3"]
        assert np.abs(pixels(folder_run.file("output.png")) - pixels(file_run.file("output.png"))).max() <= 1


def _config_only_copy(folder, target):
    """A diffusers folder's model_index.json and component configs, no weights or tokenizers: what a
    shipped config folder (logic/models/sd_configs/sd35-*) is, at the tiny model's sizes."""
    import shutil

    target.mkdir()
    shutil.copy(folder / "model_index.json", target / "model_index.json")
    for config in list(folder.glob("*/config.json")) + list(folder.glob("scheduler/scheduler_config.json")):
        if config.parent.name.startswith("tokenizer"):
            continue
        (target / config.parent.name).mkdir(exist_ok=True)
        shutil.copy(config, target / config.parent.name / config.name)
    return target


def test_sd35_file_with_encoders_loads_from_configs_alone_and_runs_on_its_clips(output_dir, tmp_path):
    """Offline with no base folder: the components from the file and configs, the CLIP tokenizers written
    offline; the T5 tokenizer is not shipped, so the run goes on CLIP-L + CLIP-G as an 'incl_clips' file does."""
    import shutil

    import yaml

    from sd_family_helpers import tiny_sd3

    files = tiny_sd3()
    configs = _config_only_copy(files["folder"], tmp_path / "configs-only")
    model = tmp_path / "sd35-offline.safetensors"
    shutil.copy(files["single"], model)
    (tmp_path / "sd35-offline.safetensors.yaml").write_text(yaml.safe_dump({"base": str(configs)}))
    run, state = run_engine("diffusion", output_dir, **{**PLAIN, "preview_every": 0}, model=str(model))
    assert state.status == runs.DONE, state.error
    assert _family(run) == "sd3" and run.details["model"]["text_encoders"] == ["text_encoder", "text_encoder_2"]

    bare = tmp_path / "sd3.5_large.safetensors"   # no encoders and no sidecar: one sentence on the base it needs
    shutil.copy(files["bare"], bare)
    run, state = run_engine("diffusion", output_dir, **{**PLAIN, "preview_every": 0}, model=str(bare))
    assert state.status == runs.FAILED and "\n" not in state.error
    assert "holds no text_encoder (Stable Diffusion 3.5)" in state.error
    assert "write `base: <folder>` in sd3.5_large.safetensors.yaml" in state.error


@pytest.mark.parametrize("name", ["sd35-large", "sd35-medium", "sd3-medium"])
def test_shipped_sd3_configs_fit_stability_files_and_are_picked_by_their_keys(name):
    """A full-size MMDiT from each shipped config, empty (meta) weights, in Stability's layout: the file's
    keys pick that config, and diffusers' converter takes every tensor back to exactly the model's."""
    from accelerate import init_empty_weights
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    from logic.models.sd.export import sd3_transformer_to_original

    config = dict(SD3Transformer2DModel.load_config(sd.CONFIGS_DIR / name / "transformer"))
    with init_empty_weights():
        model = SD3Transformer2DModel.from_config(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    original = sd3_transformer_to_original(model.state_dict())
    family = single_file.detect_file_family(original, {}, "x.safetensors")
    assert family.name == "sd3" and single_file.config_folder(family, original, {}, "x").name == name
    left = dict(original)
    converted = convert_sd3_transformer_checkpoint_to_diffusers(left)
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected and not left


def test_bfl_flux_layout_is_the_one_diffusers_converts_and_ours_reads_any_width():
    """BFL's names checked against diffusers' own converter at FLUX.1-dev's full size (meta weights); our
    shape-aware converter gives the same tensors and reads the config back from them."""
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    from logic.models.sd import bfl

    with init_empty_weights():
        model = FluxTransformer2DModel(guidance_embeds=True)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    original = bfl.to_bfl(model.state_dict(), prefix="model.diffusion_model.")
    assert "model.diffusion_model.double_blocks.18.img_attn.qkv.weight" in original
    assert "model.diffusion_model.single_blocks.37.linear1.weight" in original
    left = dict(original)
    converted = convert_flux_transformer_checkpoint_to_diffusers(left)
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected and not left
    ours, dims = bfl.to_diffusers(original)
    assert {k: tuple(v.shape) for k, v in ours.items()} == expected
    assert {k: model.config[k] for k in dims} == dims

    # a block with one tensor cut away is one sentence naming it, not a KeyError
    cut = {k: v for k, v in original.items() if k != "model.diffusion_model.single_blocks.5.linear2.weight"}
    with pytest.raises(UserError, match="lacks single_blocks.5.linear2.weight"):
        bfl.to_diffusers(cut)
