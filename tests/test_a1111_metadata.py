"""The 'parameters' text: A1111/Forge/Civitai forms read back, hashes, and the mapping onto a run."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from PIL import Image, PngImagePlugin

from logic.a1111 import metadata
from logic.a1111.from_image import map_parameters, settings_from_image
from logic.errors import UserError
from logic.models import hashes

# As A1111 1.10 writes it (multi-line prompt and negative, quoted hash lists, Schedule type).
A1111_TEXT = """masterpiece, (a red fox:1.2) in the snow,
[blurry background] <lora:ink-style:0.7>
Negative prompt: lowres, bad hands
watermark
Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567, Size: 512x768, \
Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, VAE: vae-ft-mse-840000-ema-pruned.safetensors, \
Denoising strength: 0.45, Clip skip: 2, Lora hashes: "ink-style: 0123456789ab", TI hashes: "easynegative: c74b4e810b03", \
Hires upscale: 2, Version: v1.10.1"""

# Forge adds its own keys; Civitai appends JSON values that hold commas and colons.
CIVITAI_TEXT = """a castle on a hill
Negative prompt: fog
Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 1024x1024, Model: juggernautXL_v9, \
Civitai resources: [{"type":"checkpoint","modelVersionId":288982,"modelVersionName":"V9, RDPhoto2"}], \
Civitai metadata: {"remixOfId": 1}, Module 1: sdxl_vae, Version: f2.0.1v1.10.1-previous-313"""


def test_a1111_text_reads_back_whole():
    found = metadata.parse_parameters(A1111_TEXT)
    assert found["prompt"] == "masterpiece, (a red fox:1.2) in the snow,\n[blurry background] <lora:ink-style:0.7>"
    assert found["negative"] == "lowres, bad hands\nwatermark"
    assert (found["Steps"], found["Sampler"], found["Schedule type"], found["CFG scale"], found["Seed"],
            found["Size"]) == ("30", "DPM++ 2M", "Karras", "6.5", "1234567", "512x768")
    assert found["Lora hashes"] == "ink-style: 0123456789ab" and found["TI hashes"] == "easynegative: c74b4e810b03"
    assert found["Clip skip"] == "2" and found["Version"] == "v1.10.1"


def test_civitai_and_forge_values_read_whole():
    found = metadata.parse_parameters(CIVITAI_TEXT)
    assert found["prompt"] == "a castle on a hill" and found["negative"] == "fog"
    assert found["Civitai resources"].startswith('[{"type":"checkpoint"') and found["Civitai resources"].endswith('"}]')
    assert found["Civitai metadata"] == '{"remixOfId": 1}'
    assert found["Module 1"] == "sdxl_vae" and found["Version"] == "f2.0.1v1.10.1-previous-313"


def test_a_prompt_without_settings_is_all_prompt():
    assert metadata.parse_parameters("just a prompt, with: a colon") == {"prompt": "just a prompt, with: a colon",
                                                                          "negative": ""}


def test_written_text_round_trips():
    fields = {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7.0, "Seed": 3, "Size": "64x64",
              "Lora hashes": "a: 1, b: 2", "Note": 'say "hi"', "Empty": None}
    text = metadata.format_parameters("line one\nline two", "neg", fields)
    assert 'Lora hashes: "a: 1, b: 2"' in text and "Empty" not in text
    found = metadata.parse_parameters(text)
    assert found["prompt"] == "line one\nline two" and found["Note"] == 'say "hi"' and found["Lora hashes"] == "a: 1, b: 2"


def _png_bytes(text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def test_read_parameters_from_png_path_bytes_and_jpeg_exif(tmp_path):
    data = _png_bytes(A1111_TEXT)
    (tmp_path / "a.png").write_bytes(data)
    assert metadata.read_parameters(tmp_path / "a.png")["Seed"] == "1234567"
    assert metadata.read_parameters(data)["raw"] == A1111_TEXT
    import piexif
    import piexif.helper

    # A1111's JPEG form: piexif's UserComment (UTF-16) in the EXIF
    comment = piexif.helper.UserComment.dump(CIVITAI_TEXT, encoding="unicode")
    exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: comment}})
    Image.new("RGB", (8, 8)).save(tmp_path / "b.jpg", exif=exif)
    assert metadata.read_parameters(tmp_path / "b.jpg")["Seed"] == "42"
    assert metadata.read_parameters(tmp_path / "b.jpg")["raw"] == CIVITAI_TEXT
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    assert metadata.read_parameters(tmp_path / "plain.png") == {}
    with pytest.raises(UserError, match="holds no generation parameters"):
        settings_from_image(tmp_path / "plain.png")
    (tmp_path / "not.png").write_text("hello")
    with pytest.raises(UserError, match="not an image"):
        metadata.read_parameters(tmp_path / "not.png")


def test_mapping_onto_a_run_lists_what_it_could_not_use():
    image = map_parameters(metadata.parse_parameters(A1111_TEXT))
    params = image.params
    assert params["scheduler"] == "DPM++ 2M Karras"          # Sampler + Schedule type
    assert (params["steps"], params["cfg"], params["seed"], params["size"], params["clip_skip"],
            params["strength"]) == (30, 6.5, 1234567, [512, 768], 2, 0.45)
    assert params["prompt"].endswith("<lora:ink-style:0.7>") and "lora" not in params
    assert "model" not in params and image.unknown["Model"] == "v1-5-pruned-emaonly"
    assert "Hires upscale" in image.unknown and "Version" not in image.unknown
    assert any("v1-5-pruned-emaonly" in note and "not installed" in note for note in image.notes)
    assert any("VAE" in note for note in image.notes)


# Hashes -----------------------------------------------------------------------------------------------

def test_model_hash_is_autov2_and_cached_by_size_and_mtime(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"x" * 5000)
    assert hashes.model_hash(path) == hashlib.sha256(b"x" * 5000).hexdigest()[:10]
    key = f"sha256:{path.resolve()}"
    import json

    cached = json.loads(hashes.cache_file().read_text())[key]
    assert cached["size"] == 5000 and cached["hash"] == hashlib.sha256(b"x" * 5000).hexdigest()
    path.write_bytes(b"y" * 5000)
    os.utime(path, ns=(1, 1))                                        # a new version of the file
    assert hashes.model_hash(path) == hashlib.sha256(b"y" * 5000).hexdigest()[:10]


def test_addnet_hash_skips_the_safetensors_header(tmp_path):
    import torch
    from safetensors.torch import save_file

    tensors = {"w": torch.arange(6, dtype=torch.float32)}
    save_file(tensors, tmp_path / "a.safetensors", metadata={"ss_note": "one"})
    save_file(tensors, tmp_path / "b.safetensors", metadata={"ss_note": "a different, longer note"})
    a, b = hashes.lora_hash(tmp_path / "a.safetensors"), hashes.lora_hash(tmp_path / "b.safetensors")
    assert a == b == hashlib.sha256(tensors["w"].numpy().tobytes()).hexdigest()[:12]
    assert hashes.file_sha256(tmp_path / "a.safetensors") != hashes.file_sha256(tmp_path / "b.safetensors")


@pytest.mark.parametrize("sampler, schedule, expected, said", [
    ("DPM++ 2M SDE", "Karras", "DPM++ 2M SDE Karras", None),
    ("Euler a", "Automatic", "Euler a", None),
    ("DPM++ 2M", "Exponential", "DPM++ 2M", "schedule type 'Exponential' is not available"),
    ("Weird sampler", "", None, "sampler 'Weird sampler' is not available"),
])
def test_samplers_map_with_their_schedule_or_are_named(sampler, schedule, expected, said):
    found = {"prompt": "a", "negative": "", "Sampler": sampler, **({"Schedule type": schedule} if schedule else {})}
    image = map_parameters(found)
    assert image.params.get("scheduler") == expected
    assert (said is None and not image.notes) or any(said in note for note in image.notes)
