"""A1111 extras in real runs on the tiny model: LoRA tags and formats, embeddings, clip skip, VAE, PNG
parameters read by the real readers (sd-parsers, sd-prompt-reader) and by ``--from-image``."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from logic import runs, settings
from logic.__main__ import main
from logic.a1111.metadata import read_parameters
from logic.engines import diffusion as engine
from logic.engines import sd_common
from logic.errors import UserError

from sd_helpers import BASE, CACHE, pixels, run_engine, tiny_lora, tiny_models

PLAIN = {**BASE, "preview_every": 0, "seed": 4}


def _sha(path, length):
    return hashlib.sha256(path.read_bytes()).hexdigest()[:length]


# LoRA tags and formats ----------------------------------------------------------------------------------

def test_a_lora_tag_is_the_same_as_the_lora_option_and_stays_in_the_png(output_dir):
    tiny_lora()
    by_option, _ = run_engine("diffusion", output_dir, **PLAIN, lora=["tiny-lora:0.8"])
    by_tag, state = run_engine("diffusion", output_dir, **{**PLAIN, "prompt": "a red fox <lora:tiny-lora:0.8>"})
    assert state.status == runs.DONE, state.error
    assert np.array_equal(pixels(by_option.file("output.png")), pixels(by_tag.file("output.png")))
    found = read_parameters(by_tag.file("output.png"))
    assert found["prompt"] == "a red fox <lora:tiny-lora:0.8>" and "Lora" not in found   # the tag says it
    assert found["Lora hashes"].startswith("tiny-lora: ")
    with pytest.raises(UserError, match="The LoRA nowhere was not found"):
        engine.build_spec({**PLAIN, "prompt": "a fox <lora:nowhere:0.5>"})
    with pytest.raises(UserError, match="not a number"):
        engine.build_spec({**PLAIN, "prompt": "a fox <lora:tiny-lora:lots>"})


def _old_diffusers_format(peft: dict) -> dict:
    """train_dreambooth_lora (diffusers <= 0.20) keys: X.processor.to_q_lora.down.weight."""
    out = {}
    for key, value in peft.items():
        module, side = key[len("unet."):].rsplit(".lora_", 1)
        module, projection = module.rsplit(".", 1) if not module.endswith("to_out.0") else (module[:-9], "to_out")
        out[f"{module}.processor.{projection}_lora.{'down' if side.startswith('A') else 'up'}.weight"] = value
    return out


def _kohya_format(peft: dict, rank: int = 4) -> dict:
    """kohya sd-scripts' on-disk layout: lora_unet_<module with _>.lora_down/.lora_up/.alpha."""
    out = {}
    for key, value in peft.items():
        module, side = key[len("unet."):].rsplit(".lora_", 1)
        name = "lora_unet_" + module.replace(".", "_")
        out[f"{name}.{'lora_down' if side.startswith('A') else 'lora_up'}.weight"] = value
        out[f"{name}.alpha"] = torch.tensor(float(rank))
    return out


def test_old_diffusers_and_kohya_loras_load_to_the_same_result(output_dir):
    peft = load_file(str(tiny_lora()))
    folder = sd_common.loras_dir()
    save_file(_old_diffusers_format(peft), folder / "old-format.safetensors")
    kohya = _kohya_format(peft)
    assert all(k.startswith("lora_unet_down_blocks_") or k.startswith(("lora_unet_up_", "lora_unet_mid_"))
               for k in kohya)
    save_file(kohya, folder / "kohya.safetensors")
    torch.manual_seed(9)
    text = {}
    for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):   # kohya trains all four
        name = f"lora_te_text_model_encoder_layers_0_self_attn_{projection}"
        text.update({f"{name}.lora_down.weight": torch.randn(4, 32), f"{name}.lora_up.weight": torch.randn(32, 4),
                     f"{name}.alpha": torch.tensor(4.0)})
    save_file({**kohya, **text}, folder / "kohya-te.safetensors")
    images = {}
    for name in ("tiny-lora", "old-format", "kohya", "kohya-te"):
        run, state = run_engine("diffusion", output_dir, **PLAIN, lora=[f"{name}:1"])
        assert state.status == runs.DONE, f"{name}: {state.error}"
        images[name] = pixels(run.file("output.png"))
    assert np.abs(images["tiny-lora"] - images["old-format"]).max() <= 1
    assert np.abs(images["tiny-lora"] - images["kohya"]).max() <= 1
    assert np.abs(images["kohya"] - images["kohya-te"]).max() > 1          # the text encoder part applied


@pytest.mark.parametrize("name, tensors, words", [
    ("a-loha", {"lora_unet_x.hada_w1_a": torch.zeros(2, 2), "lora_unet_x.hada_w1_b": torch.zeros(2, 2)}, "LoHa"),
    ("a-lokr", {"lora_unet_x.lokr_w1": torch.zeros(2, 2)}, "LoKr"),
    ("an-embedding", {"emb_params": torch.zeros(2, 32)}, "textual-inversion embedding, not a LoRA"),
    ("no-lora", {"something.weight": torch.zeros(2, 2)}, "holds no LoRA weights"),
    ("other-model", {"unet.no_such_block.to_q.lora_A.weight": torch.zeros(4, 32),
                     "unet.no_such_block.to_q.lora_B.weight": torch.zeros(32, 4)}, None),
])
def test_files_that_are_not_usable_loras_get_one_sentence(output_dir, name, tensors, words):
    tiny_models()
    save_file(tensors, sd_common.loras_dir() / f"{name}.safetensors")
    run, state = run_engine("diffusion", output_dir, **PLAIN, lora=[f"{name}:1"])
    assert state.status == runs.FAILED and "\n" not in state.error and name in state.error
    assert (words or "") in state.error and "Traceback" not in state.error
    if words is None:
        assert "names no layer of this model" in state.error or "does not fit this model" in state.error
    plain, state = run_engine("diffusion", output_dir, **PLAIN)          # the cached model is left clean
    assert state.status == runs.DONE, state.error


# Embeddings, clip skip, VAE ---------------------------------------------------------------------------

def _write_fox_embedding() -> None:
    """An A1111 .pt embedding whose two vectors are the tiny encoder's own vectors for "red fox"."""
    from logic.models.diffusion_demo import build_tiny_pipeline

    pipe = build_tiny_pipeline(sd_common.tokenizer_cache(), seed=0)
    ids = pipe.tokenizer("red fox", add_special_tokens=False).input_ids
    vectors = pipe.text_encoder.get_input_embeddings().weight[ids].detach().clone()
    folder = settings.assets_dir() / "embeddings"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"string_to_param": {"*": vectors}, "name": "foxemb", "step": 1}, folder / "foxemb.pt")


def test_an_embedding_in_the_prompt_and_clip_skip_are_used_and_recorded(output_dir):
    tiny_models()
    _write_fox_embedding()
    written, _ = run_engine("diffusion", output_dir, **{**PLAIN, "prompt": "a photo of red fox"})
    embedded, state = run_engine("diffusion", output_dir, **{**PLAIN, "prompt": "a photo of foxemb"})
    assert state.status == runs.DONE, state.error
    assert np.array_equal(pixels(written.file("output.png")), pixels(embedded.file("output.png")))
    ti_hash = _sha(settings.assets_dir() / "embeddings" / "foxemb.pt", 12)
    assert embedded.details["prompt_encoding"]["embeddings"] == {"foxemb": ti_hash}
    assert read_parameters(embedded.file("output.png"))["TI hashes"] == f"foxemb: {ti_hash}"
    skipped, state = run_engine("diffusion", output_dir, **PLAIN, clip_skip=2)
    assert state.status == runs.DONE, state.error
    assert read_parameters(skipped.file("output.png"))["Clip skip"] == "2"
    assert skipped.details["prompt_encoding"]["clip_skip"] == 2 and skipped.details["params"]["clip_skip"] == 2
    plain, _ = run_engine("diffusion", output_dir, **PLAIN)
    assert not np.array_equal(pixels(plain.file("output.png")), pixels(skipped.file("output.png")))
    assert "Clip skip" not in read_parameters(plain.file("output.png"))


def _write_vae_file(name: str) -> None:
    """The tiny model's VAE with changed decoder weights, as one file in the original key layout."""
    from logic.models import diffusion as sd
    from logic.models.diffusion_demo import build_tiny_pipeline

    pipe = build_tiny_pipeline(sd_common.tokenizer_cache(), seed=0)
    vae = {k: v.clone() for k, v in pipe.vae.state_dict().items()}
    vae["decoder.conv_out.bias"] += 0.3
    original = sd.diffusers_to_original({}, vae, {}, dict(pipe.unet.config))
    folder = settings.assets_dir() / "vae"
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k[len("first_stage_model."):]: v.contiguous() for k, v in original.items()}, folder / name)


def test_a_vae_override_is_used_recorded_and_taken_off_again(output_dir):
    tiny_models()
    _write_vae_file("bright-vae.safetensors")
    plain, _ = run_engine("diffusion", output_dir, **PLAIN)
    with_vae, state = run_engine("diffusion", output_dir, **PLAIN, vae="bright-vae")
    assert state.status == runs.DONE, state.error
    brighter = pixels(with_vae.file("output.png")).mean() - pixels(plain.file("output.png")).mean()
    assert brighter > 10
    found = read_parameters(with_vae.file("output.png"))
    assert found["VAE"] == "bright-vae" and found["VAE hash"] == _sha(settings.assets_dir() / "vae" / "bright-vae.safetensors", 10)
    assert with_vae.details["model"]["vae"]["name"] == "bright-vae"
    again, _ = run_engine("diffusion", output_dir, **PLAIN)
    assert np.array_equal(pixels(plain.file("output.png")), pixels(again.file("output.png")))
    with pytest.raises(UserError, match="The VAE missing-vae was not found"):
        engine.build_spec({**PLAIN, "vae": "missing-vae"})


# PNG parameters: the real readers, and --from-image ---------------------------------------------------

def _read_with_sd_parsers(path):
    from sd_parsers import ParserManager

    info = ParserManager().parse(str(path))
    [sampler] = info.samplers
    return info, sampler


def _read_with_sd_prompt_reader(path):
    pytest.importorskip("sd_prompt_reader", reason="install it: pip install --no-deps -r requirements-readers.txt")
    from sd_prompt_reader.image_data_reader import ImageDataReader

    return ImageDataReader(str(path))


@pytest.mark.parametrize("kind", ["txt2img", "img2img", "lora+embedding"])
def test_real_readers_read_every_field_of_our_pngs(output_dir, tmp_path, kind):
    tiny_models()
    params = {**PLAIN, "prompt": "a red fox,\nsecond line", "negative": "blurry\nugly", "clip_skip": 2,
              "scheduler": "DPM++ 2M Karras", "model": "tiny-file.safetensors"}
    if kind == "img2img":
        from PIL import Image

        Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "init.png")
        params.update(init_image=str(tmp_path / "init.png"), strength=0.6)
    if kind == "lora+embedding":
        tiny_lora()
        _write_fox_embedding()
        params.update(prompt="a photo of foxemb <lora:tiny-lora:0.7>")
    run, state = run_engine("diffusion", output_dir, **params)
    assert state.status == runs.DONE, state.error
    png = run.file("output.png")
    ours = read_parameters(png)
    model_hash = _sha(tiny_models()["single"], 10)
    assert ours["Model hash"] == model_hash and ours["Model"] == "tiny-file"

    info, sampler = _read_with_sd_parsers(png)
    assert [p.value for p in sampler.prompts] == [params["prompt"]]
    assert [p.value for p in sampler.negative_prompts] == ["blurry\nugly"]
    assert sampler.name == "DPM++ 2M Karras"
    assert (sampler.parameters["steps"], sampler.parameters["cfg_scale"], sampler.parameters["seed"]) == ("2", "5.0", "4")
    assert (sampler.model.name, sampler.model.hash) == ("tiny-file", model_hash)
    assert info.metadata["Size"] == "32x32" and info.metadata["Clip skip"] == "2"
    if kind == "img2img":
        assert info.metadata["Denoising strength"] == "0.6"

    reader = _read_with_sd_prompt_reader(png)
    assert reader.tool == "A1111 webUI" and reader.status.name == "READ_SUCCESS"
    assert reader.positive == params["prompt"] and reader.negative == "blurry\nugly"
    assert (reader.width, reader.height) == ("32", "32")
    assert reader.parameter["model"] == "tiny-file" and reader.parameter["sampler"] == "DPM++ 2M Karras"
    assert (reader.parameter["seed"], reader.parameter["cfg"], reader.parameter["steps"]) == ("4", "5.0", "2")
    assert "Clip skip: 2" in reader.setting
    if kind == "lora+embedding":
        # quoted values as A1111 writes them (sd-parsers' splitter skips quoted values, A1111's own included)
        assert f'Lora hashes: "tiny-lora: {ours["Lora hashes"].split(": ")[1]}"' in reader.setting
        assert 'TI hashes: "foxemb: ' in reader.setting


def test_from_image_reruns_our_png_and_options_override(output_dir, capsys):
    first, state = run_engine("diffusion", output_dir, **{**PLAIN, "prompt": "a red fox,\nin (snow:1.3)",
                                                         "scheduler": "Euler a", "seed": 21})
    assert state.status == runs.DONE, state.error
    png = str(first.file("output.png"))
    args = ["diffusion", "--from-image", png, "--output", str(output_dir), "--device", "cpu", "--preview-every", "0"]
    assert main(args) == 0
    same = runs.open_run(capsys.readouterr().out.strip().splitlines()[-1])
    assert same.details["params"]["prompt"] == "a red fox,\nin (snow:1.3)"
    assert (same.details["params"]["seed"], same.details["params"]["scheduler"]) == (21, "Euler a")
    assert np.array_equal(pixels(first.file("output.png")), pixels(same.file("output.png")))
    assert main([*args, "--steps", "3", "--seed", "5"]) == 0
    changed = runs.open_run(capsys.readouterr().out.strip().splitlines()[-1])
    assert (changed.details["params"]["steps"], changed.details["params"]["seed"]) == (3, 5)
    assert changed.details["params"]["prompt"] == "a red fox,\nin (snow:1.3)"


def test_from_image_with_an_a1111_png_names_what_it_did_not_use(output_dir, tmp_path, capsys):
    from PIL import Image, PngImagePlugin

    tiny_models()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a castle\nNegative prompt: fog\nSteps: 2, Sampler: Euler, CFG scale: 4, Seed: 8, "
                                "Size: 32x32, Model hash: 0123456789, Model: not-here, Hires upscale: 2, Version: v1.10.1")
    Image.new("RGB", (32, 32)).save(tmp_path / "a1111.png", pnginfo=info)
    code = main(["diffusion", "--from-image", str(tmp_path / "a1111.png"), "--model", "tiny", "--output",
                 str(output_dir), "--device", "cpu", "--preview-every", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "not-here" in captured.err and "Hires upscale: 2" in captured.err and "Traceback" not in captured.err
    run = runs.open_run(captured.out.strip().splitlines()[-1])
    assert (run.details["params"]["prompt"], run.details["params"]["negative"], run.details["params"]["cfg"]) == (
        "a castle", "fog", 4.0)
    assert main(["diffusion", "--output", str(output_dir)]) == 2
    assert "--prompt" in capsys.readouterr().err


def test_vqgan_png_keeps_the_prompt_weights(output_dir):
    from logic import jobs

    engine_module, spec, run = jobs.submit_run("vqgan", {"prompt": "a red fox:1 | snow:-0.5", "demo": True,
                                                         "size": [32, 32], "cutn": 2, "steps": 2, "seed": 1},
                                               output_dir)
    state = jobs.execute_run(engine_module, spec, run, device="cpu", cache=CACHE)
    assert state.status == runs.DONE, state.error
    assert read_parameters(runs.open_run(run.path).file("output.png"))["prompt"] == "a red fox:1 | snow:-0.5"


def test_a_long_prompt_runs_in_chunks_and_the_cli_says_so(output_dir, capsys):
    tiny_models()
    long = ", ".join(["a (red:1.2) fox in deep snow"] * 25) + " BREAK watercolour"
    assert main(["diffusion", "--prompt", long, "--model", "tiny", "--steps", "2", "--size", "32", "32",
                 "--output", str(output_dir), "--device", "cpu", "--preview-every", "0", "--seed", "3"]) == 0
    captured = capsys.readouterr()
    run = runs.open_run(captured.out.strip().splitlines()[-1])
    encoding = run.details["prompt_encoding"]
    assert encoding["chunks"] == 4 and encoding["tokens"][0] > 150 and encoding["truncated"] is False
    assert "note: The prompt is" in captured.err and "4 chunks" in captured.err
    assert read_parameters(run.file("output.png"))["prompt"] == long
