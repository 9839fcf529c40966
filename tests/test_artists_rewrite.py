"""Prompt rewrite rules."""

import pytest

from logic.artists.rewrite import clean_spacing, dreambooth_token, names_an_artist, rewrite_prompt, skip_reason


@pytest.mark.parametrize("prompt, expected", [
    ("a graffiti gorilla", "a graffiti gorilla, in the style of Banksy"),
    ("  a graffiti   gorilla ,  ", "a graffiti gorilla, in the style of Banksy"),
    ("a graffiti gorilla.", "a graffiti gorilla, in the style of Banksy"),
    ("a gorilla,, at night", "a gorilla, at night, in the style of Banksy"),
    ("a gorilla:1.5 | rain:0.5", "a gorilla, in the style of Banksy:1.5 | rain:0.5"),
    ("photo: a gorilla", "photo: a gorilla, in the style of Banksy"),
])
def test_rewrite_has_clean_spacing(prompt, expected):
    assert rewrite_prompt(prompt, " Banksy ") == expected


def test_rewrite_template_is_used():
    assert rewrite_prompt("a cat", "Klimt", "{prompt} by {artist}") == "a cat by Klimt"


@pytest.mark.parametrize("prompt", [
    "a gorilla by banksy", "Banksy gorilla", "a cat in the style of someone", "a cat painted by Rembrandt",
    "a cat, style of the old masters",
])
def test_prompts_that_name_an_artist_are_not_rewritten(prompt):
    assert names_an_artist(prompt, ["Banksy", "Vincent van Gogh"])
    assert skip_reason(prompt, ["Banksy"]).startswith("the prompt already names")


def test_names_match_whole_words_only():
    assert names_an_artist("a monetary crisis", ["Monet"]) is None
    assert names_an_artist("water lilies like monet", ["Monet"]) == "Monet"
    assert names_an_artist("a cat by the window", ["Monet"]) is None


@pytest.mark.parametrize("prompt, token", [("a photo of sks dog", "sks"), ("ohwx man on a horse", "ohwx"),
                                           ("a <cat-toy> on a table", "<cat-toy>")])
def test_dreambooth_tokens_stop_the_rewrite(prompt, token):
    assert dreambooth_token(prompt, ["sks", "ohwx"]) == token
    assert "DreamBooth" in skip_reason(prompt, [], ["sks", "ohwx"])


def test_plain_prompts_are_rewritten():
    assert skip_reason("a graffiti gorilla", ["Banksy"], ["sks"]) is None
    assert dreambooth_token("asks for nothing", ["sks"]) is None


def test_clean_spacing():
    assert clean_spacing(" a ,b ,, c  . ") == "a, b, c."
