"""A1111 prompt syntax and chunked weighted encoding on tiny CLIP encoders (SD 1.x layout and SDXL's pair)."""

from __future__ import annotations

import functools
import pickle

import pytest
import torch

from logic.a1111 import encode
from logic.a1111.prompt_syntax import (find_lora_tags, parse_attention, set_lora_tag_weight, strip_lora_tags)
from logic.engines import sd_common
from logic.errors import UserError
from logic.models import embeddings as emb
from logic.models import diffusion as sd
from logic.models.diffusion_demo import build_tiny_pipeline

# A1111's own docstring examples of parse_prompt_attention (modules/prompt_parser.py), verbatim.
A1111_EXAMPLES = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
      (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)]),
]


@pytest.mark.parametrize("text, expected", A1111_EXAMPLES)
def test_parse_attention_gives_a1111s_own_results(text, expected):
    assert parse_attention(text) == expected


def test_square_brackets_break_and_escapes():
    assert parse_attention("[faint]") == [("faint", 1 / 1.1)]
    assert parse_attention("[[faint]]") == [("faint", 1 / 1.1 / 1.1)]
    assert parse_attention("a cat BREAK a dog") == [("a cat", 1.0), ("BREAK", -1), ("a dog", 1.0)]
    assert parse_attention("a breakfast") == [("a breakfast", 1.0)]          # only the word BREAK
    assert parse_attention("\\\\ back") == [("\\ back", 1.0)]
    assert parse_attention("(word: 1.3)") == [("word: 1.3", 1.1)]           # A1111: no space allowed


def test_lora_tags_are_found_stripped_and_reweighted():
    prompt = "a fox <lora:ink-style:0.7>, snow, <lora:other> <lyco:old:0.5>"
    assert [(t.name, t.weight) for t in find_lora_tags(prompt)] == [("ink-style", 0.7), ("other", 1.0), ("old", 0.5)]
    assert strip_lora_tags(prompt) == "a fox, snow"
    assert set_lora_tag_weight(prompt, "ink-style", 1.2).startswith("a fox <lora:ink-style:1.2>, snow")


# Encoding ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def sd1():
    return build_tiny_pipeline(sd_common.tokenizer_cache(), seed=0)


def branches():
    return encode.branches_of(sd1())


def test_a_plain_short_prompt_equals_diffusers_own_encoding():
    pipe = sd1()
    ours = encode.encode_texts(branches(), ["a red fox", "blurry"])
    cond, uncond = pipe.encode_prompt("a red fox", "cpu", 1, True, "blurry")
    assert torch.equal(ours.embeds[0], cond) and torch.equal(ours.embeds[1], uncond)


def test_weights_scale_tokens_and_restore_the_chunk_mean():
    plain = encode.encode_texts(branches(), ["a red fox"]).embeds[0]
    weighted = encode.encode_texts(branches(), ["a (red:1.5) fox"]).embeds[0]
    # by hand: weight the 'red' state (position 2 after <start> a), then restore the mean
    weights = torch.ones(77)
    weights[2] = 1.5
    by_hand = plain * weights.reshape(1, -1, 1)
    by_hand = by_hand * (plain.mean() / by_hand.mean())
    assert torch.allclose(weighted, by_hand, atol=1e-6)
    assert not torch.allclose(weighted, plain)


def test_long_prompts_are_chunked_not_cut_and_the_negative_is_padded():
    long = ", ".join(["a red fox in deep snow"] * 30)
    encoded = encode.encode_texts(branches(), [long, "blurry"])
    count = encode.token_count(sd1().tokenizer, long)
    assert count > 150 and encoded.token_counts[0] == count
    assert encoded.chunks == 3 and [e.shape for e in encoded.embeds] == [torch.Size([1, 231, 32])] * 2
    assert "3 chunks" in encode.chunk_note(encoded) and "nothing was cut" in encode.chunk_note(encoded)
    # the negative's 2nd and 3rd chunks are encoded empty chunks
    empty = encode.encode_texts(branches(), [""]).embeds[0]
    assert torch.equal(encoded.embeds[1][:, 77:154], empty) and torch.equal(encoded.embeds[1][:, 154:], empty)


def test_a_full_chunk_moves_the_words_after_its_last_comma_to_the_next_chunk():
    tokenizer = sd1().tokenizer
    head = " ".join(["fox"] * 70) + ", red cat dog bird owl hen"     # comma at 71, chunk full at 75
    chunks, _ = encode._tokenize_line(tokenizer, head, {})
    comma = tokenizer.get_vocab()[",</w>"]
    assert len(chunks) == 2 and chunks[0].tokens[-1] == comma and len(chunks[0].tokens) == 71
    assert tokenizer.decode(chunks[1].tokens) == "red cat dog bird owl hen"


def test_break_starts_a_new_chunk():
    encoded = encode.encode_texts(branches(), ["a red fox BREAK snow"])
    alone = encode.encode_texts(branches(), ["a red fox", "snow"])
    assert encoded.chunks == 2
    assert torch.equal(encoded.embeds[0][:, :77], alone.embeds[0])
    assert torch.equal(encoded.embeds[0][:, 77:], alone.embeds[1])


def test_clip_skip_takes_an_earlier_layer_through_the_final_norm():
    pipe = sd1()
    skipped = encode.encode_texts(branches(), ["a red fox"], clip_skip=2).embeds[0]
    ids = pipe.tokenizer("a red fox", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        by_hand = pipe.text_encoder.final_layer_norm(hidden)
    assert torch.allclose(skipped, by_hand, atol=1e-6)
    assert not torch.allclose(skipped, encode.encode_texts(branches(), ["a red fox"]).embeds[0])
    with pytest.raises(UserError, match="Clip skip 5"):
        encode.encode_texts(branches(), ["a red fox"], clip_skip=5)


def test_sd2_style_padding_after_the_end_token_matches_diffusers():
    """SD 2.x's OpenCLIP tokenizer pads with "!" (id 0), not the end token: chunks are padded the same way."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    base = sd1()
    tokenizer = CLIPTokenizer.from_pretrained(str(sd_common.tokenizer_cache()), local_files_only=True, pad_token="!")
    pipe = StableDiffusionPipeline(**{**base.components, "tokenizer": tokenizer})
    ours = encode.encode_texts(encode.branches_of(pipe), ["a (red) fox", "blurry"])
    plain = encode.encode_texts(encode.branches_of(pipe), ["a red fox", "blurry"])
    cond, uncond = pipe.encode_prompt("a red fox", "cpu", 1, True, "blurry")
    assert torch.equal(plain.embeds[0], cond) and torch.equal(plain.embeds[1], uncond)
    assert not torch.equal(plain.embeds[0], encode.encode_texts(branches(), ["a red fox"]).embeds[0])
    assert not torch.equal(ours.embeds[0], plain.embeds[0])


# SDXL: two encoders, CLIP-G padded with "!", pooled output ----------------------------------------------

@functools.lru_cache(maxsize=1)
def sdxl():
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder = sd.write_clip_tokenizer(sd_common.tokenizer_cache())
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    tokenizer_2 = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True, pad_token="!")
    config = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=3,
                  vocab_size=49408, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    torch.manual_seed(5)
    first = CLIPTextModel(CLIPTextConfig(**config)).eval()
    second = CLIPTextModelWithProjection(CLIPTextConfig(**{**config, "hidden_size": 40, "projection_dim": 24})).eval()
    return StableDiffusionXLPipeline(vae=None, text_encoder=first, text_encoder_2=second, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer_2, unet=None, scheduler=None,
                                     force_zeros_for_empty_prompt=False)


def test_sdxl_short_prompt_equals_diffusers_own_encoding_with_pooled():
    pipe = sdxl()
    ours = encode.encode_texts(encode.branches_of(pipe), ["a red fox", "blurry"], device="cpu")
    cond, uncond, pooled, negative_pooled = pipe.encode_prompt("a red fox", device="cpu", do_classifier_free_guidance=True,
                                                               negative_prompt="blurry")
    assert ours.embeds[0].shape == (1, 77, 72)
    assert torch.allclose(ours.embeds[0], cond, atol=1e-6) and torch.allclose(ours.embeds[1], uncond, atol=1e-6)
    assert torch.allclose(ours.pooled[0], pooled, atol=1e-6) and torch.allclose(ours.pooled[1], negative_pooled, atol=1e-6)
    kwargs = encode.pipeline_kwargs(ours)
    assert set(kwargs) == {"prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                           "negative_pooled_prompt_embeds"}


def test_sdxl_long_prompt_uses_both_encoders_in_chunks():
    long = " ".join(["fox"] * 100)
    ours = encode.encode_texts(encode.branches_of(sdxl()), [long, ""], device="cpu")
    assert ours.chunks == 2 and ours.embeds[0].shape == (1, 154, 72) and ours.pooled[0].shape == (1, 24)


# Textual inversion ------------------------------------------------------------------------------------

def _token_vectors(text_encoder, tokenizer, words: str) -> torch.Tensor:
    ids = tokenizer(words, add_special_tokens=False).input_ids
    return text_encoder.get_input_embeddings().weight[ids].detach().clone()


def test_an_a1111_pt_embedding_stands_for_its_vectors(tmp_path):
    pipe = sd1()
    vectors = _token_vectors(pipe.text_encoder, pipe.tokenizer, "red fox")
    path = tmp_path / "foxemb.pt"
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.nn.Parameter(vectors)},
                "name": "foxemb", "step": 100}, path)
    embedding = emb.embeddings_in(["a photo of foxemb"], tmp_path)["foxemb"]
    with_embedding = encode.encode_texts(branches(), ["a photo of foxemb"], embeddings={"foxemb": embedding})
    written_out = encode.encode_texts(branches(), ["a photo of red fox"])
    assert torch.allclose(with_embedding.embeds[0], written_out.embeds[0], atol=1e-6)
    assert list(with_embedding.embeddings_used) == ["foxemb"]


def test_safetensors_and_sdxl_embeddings_fit_each_encoder(tmp_path):
    from safetensors.torch import save_file

    pipe = sdxl()
    save_file({"clip_l": _token_vectors(pipe.text_encoder, pipe.tokenizer, "red fox"),
               "clip_g": _token_vectors(pipe.text_encoder_2, pipe.tokenizer_2, "red fox")}, tmp_path / "xlfox.safetensors")
    found = emb.embeddings_in(["xlfox"], tmp_path)
    assert sorted(found["xlfox"].vectors) == [32, 40]
    ours = encode.encode_texts(encode.branches_of(pipe), ["a photo of xlfox"], embeddings=found, device="cpu")
    plain = encode.encode_texts(encode.branches_of(pipe), ["a photo of red fox"], device="cpu")
    assert torch.allclose(ours.embeds[0], plain.embeds[0], atol=1e-6)
    save_file({"emb_params": torch.zeros(2, 16)}, tmp_path / "narrow.safetensors")
    narrow = emb.load_embedding(tmp_path / "narrow.safetensors")
    with pytest.raises(UserError, match="narrow was made for"):
        encode.encode_texts(branches(), ["narrow"], embeddings={"narrow": narrow})


class _Evil:
    def __reduce__(self):
        return (print, ("ran code",))


def test_an_embedding_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"string_to_param": {"*": _Evil()}}, handle)
    with pytest.raises(UserError, match="could not be read safely"):
        emb.load_embedding(path)


# Encoders with a hard limit ---------------------------------------------------------------------------

def test_truncation_is_said_in_one_sentence():
    tokenizer = sd1().tokenizer
    assert encode.truncation_note(tokenizer, "a red fox", 77, "T5") is None
    note = encode.truncation_note(tokenizer, " ".join(["fox"] * 300), 256, "T5")
    assert "300 tokens" in note and "first 255" in note and "45 were cut" in note


def test_t5_families_get_plain_text_and_a_cut_is_recorded():
    """A pipeline with a T5 encoder (here SD 3's slot holds a tokenizer with a small limit) is never cut silently."""
    from types import SimpleNamespace

    from logic.a1111 import run_prompts

    pipe = SimpleNamespace(tokenizer=sd1().tokenizer, text_encoder=sd1().text_encoder, tokenizer_3=sd1().tokenizer,
                           text_encoder_3=object(), text_encoder_2=None, _execution_device="cpu")
    assert not run_prompts.is_clip_only(pipe) and run_prompts.is_clip_only(sd1()) and run_prompts.is_clip_only(sdxl())
    long = "a (red:1.3) fox BREAK " + " ".join(["snow"] * 300)
    result = run_prompts.encode_run_prompts(pipe, [long + " <lora:x:0.5>"], "blurry")
    assert result.kwargs() == {"prompt": "a red fox " + " ".join(["snow"] * 300), "negative_prompt": "blurry"}
    record = result.record
    assert record["truncated"] is True and record["max_tokens"] == 255 and record["tokens"] == [303]
    assert any("were cut" in note for note in record["notes"]) and any("not applied" in n for n in record["notes"])
    short = run_prompts.encode_run_prompts(pipe, ["a fox"], "")
    assert short.record["truncated"] is False and short.record["notes"] == []
