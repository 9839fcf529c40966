"""Stable Diffusion extras on tiny models: LoRA, the tiny preview decoder, the real safety checker."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from logic import media, runs
from logic.engines import diffusion as engine
from logic.errors import UserError

from sd_helpers import BASE, pixels, run_engine, tiny_lora, tiny_models

PLAIN = {**BASE, "preview_every": 0, "seed": 4}


def addnet(path) -> str:
    data = path.read_bytes()
    return hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()


# LoRA ----------------------------------------------------------------------------------------------

def test_lora_changes_the_image_is_recorded_and_does_not_leak(output_dir):
    lora = tiny_lora()
    plain, _ = run_engine("diffusion", output_dir, **PLAIN)
    with_lora, state = run_engine("diffusion", output_dir, **PLAIN, lora=["tiny-lora:0.8"])
    assert state.status == runs.DONE, state.error
    zero, _ = run_engine("diffusion", output_dir, **PLAIN, lora=["tiny-lora:0"])
    plain_again, _ = run_engine("diffusion", output_dir, **PLAIN)  # after a LoRA run, on the same cache
    first = pixels(plain.file("output.png"))
    assert not np.array_equal(first, pixels(with_lora.file("output.png")))
    assert np.abs(first - pixels(zero.file("output.png"))).max() <= 1
    assert np.array_equal(first, pixels(plain_again.file("output.png")))
    sha = addnet(lora)   # A1111's LoRA hash: the data after the safetensors header
    [record] = with_lora.details["model"]["loras"]
    assert (record["name"], record["weight"], record["hash"]) == ("tiny-lora", 0.8, sha[:12])
    parsed = media.parse_parameters(media.read_png_parameters(with_lora.file("output.png")))
    assert parsed["Lora hashes"] == f"tiny-lora: {sha[:12]}" and parsed["Lora"] == "tiny-lora:0.8"
    assert "Lora" not in media.parse_parameters(media.read_png_parameters(plain.file("output.png")))


def test_lora_by_path_with_weight(output_dir):
    lora = tiny_lora()
    spec = engine.build_spec({**PLAIN, "lora": [f"{lora}:0.5"]})
    assert spec.lora == [f"{lora}:0.5"]


@pytest.mark.parametrize("item, words", [
    ("missing-lora", "The LoRA missing-lora was not found"),
    ("missing-lora:0.7", "The LoRA missing-lora was not found"),
    ("tiny-lora:lots", "The LoRA weight lots"),
])
def test_bad_lora_is_one_sentence_before_any_folder(output_dir, item, words):
    tiny_lora()
    with pytest.raises(UserError) as caught:
        engine.build_spec({**PLAIN, "lora": [item]})
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert not any(output_dir.iterdir())


# Tiny decoder previews ------------------------------------------------------------------------------

def test_tiny_decoder_previews_are_used_when_present_and_recorded(output_dir):
    from sd_helpers import previews, tiny_taesd

    folder = tiny_taesd()
    params = {**BASE, "seed": 2, "size": [48, 32], "preview_every": 1}
    decoded = previews({**params, "preview_decoder": "tiny-taesd"})
    linear = previews({**params, "preview_decoder": None})
    assert len(decoded) == len(linear) == 2
    for fast, rough in zip(decoded, linear):
        assert fast.size == rough.size == (48, 32)
        assert not np.array_equal(np.asarray(fast), np.asarray(rough))
    run, state = run_engine("diffusion", output_dir, **params, preview_decoder=str(folder))
    assert state.status == runs.DONE, state.error
    assert run.details["preview"] == {"method": "tiny decoder", "decoder": str(folder.resolve())}
    assert run.details["frames"] == 3


def test_previews_fall_back_to_the_linear_map_without_a_decoder(output_dir):
    run, state = run_engine("diffusion", output_dir, **BASE, seed=2, preview_decoder="no-such-taesd")
    assert state.status == runs.DONE, state.error
    assert run.details["preview"] == {"method": "linear", "decoder": None}


def test_a_folder_that_is_not_a_tiny_decoder_is_one_sentence(output_dir):
    models = tiny_models()
    with pytest.raises(UserError) as caught:
        engine.build_spec({**BASE, "preview_decoder": str(models["folder"])})
    assert "AutoencoderTiny" in str(caught.value) and "\n" not in str(caught.value)


# The real safety checker ---------------------------------------------------------------------------

def test_real_safety_checker_flags_into_a_placeholder_and_no_safety_keeps_the_image(output_dir):
    from sd_helpers import tiny_safe_model

    tiny_safe_model()
    params = {**PLAIN, "model": "tiny-safe"}
    checked, state = run_engine("diffusion", output_dir, **params)
    assert state.status == runs.DONE, state.error
    assert checked.details["safety_checker"] == "on"
    assert "flagged by the safety checker" in checked.details["safety"] and "seed 4" in checked.details["safety"]
    assert [r["safety_replaced"] for r in checked.details["images"]] == [True]
    image = pixels(checked.file("output.png"))
    assert image[16, 16].tolist() == [96, 96, 96] and image.max() > 0  # the placeholder, never a black square
    kept, state = run_engine("diffusion", output_dir, **params, safety=False)
    plain, _ = run_engine("diffusion", output_dir, **PLAIN)  # the same weights without a checker
    assert kept.details["safety_checker"] == "off" and kept.details["safety"] is None
    assert np.array_equal(pixels(kept.file("output.png")), pixels(plain.file("output.png")))


def test_a_walk_with_a_lora_records_it_in_the_png_too(output_dir):
    lora = tiny_lora()
    run, state = run_engine("walk", output_dir, prompt=None, prompts=["a red fox", "a blue bird"], frames=2,
                            **{k: v for k, v in PLAIN.items() if k not in ("prompt", "preview_every")},
                            lora=["tiny-lora:0.6"])
    assert state.status == runs.DONE, state.error
    parsed = media.parse_parameters(media.read_png_parameters(run.file("output.png")))
    sha = addnet(lora)[:12]
    assert parsed["Lora"] == "tiny-lora:0.6" and parsed["Lora hashes"] == f"tiny-lora: {sha}"
    assert parsed["Walk"] == "a red fox -> a blue bird"
