import math

import pytest

from logic.errors import UserError
from logic.prompts import parse_prompt, parse_prompts, require_prompts


@pytest.mark.parametrize("text, expected", [
    ("a red fox", ("a red fox", 1.0, -math.inf)),
    ("a red fox:2", ("a red fox", 2.0, -math.inf)),
    ("a red fox:2:0.5", ("a red fox", 2.0, 0.5)),
    ("blurry:-0.5", ("blurry", -0.5, -math.inf)),
    ("photo: a fox", ("photo: a fox", 1.0, -math.inf)),
    ("https://example.com/fox.png", ("https://example.com/fox.png", 1.0, -math.inf)),
    ("https://example.com/fox.png:0.5", ("https://example.com/fox.png", 0.5, -math.inf)),
    ("ratio 16:9 poster", ("ratio 16:9 poster", 1.0, -math.inf)),
    ("time 10:30:2", ("time 10", 30.0, 2.0)),
    ("  spaced out  :  3 ", ("spaced out", 3.0, -math.inf)),
    ("a:b:c", ("a:b:c", 1.0, -math.inf)),
    ("weight nan:nan", ("weight nan:nan", 1.0, -math.inf)),
    ("1e3", ("1e3", 1.0, -math.inf)),
])
def test_parse_prompt_table(text, expected):
    prompt = parse_prompt(text)
    assert (prompt.text, prompt.weight, prompt.stop) == expected


def test_parse_prompts_splits_on_bars_and_skips_empty_parts():
    prompts = parse_prompts("a lighthouse in a storm:1 | blurry:-0.5 | | ")
    assert [(p.text, p.weight) for p in prompts] == [("a lighthouse in a storm", 1.0), ("blurry", -0.5)]


def test_a_weight_without_text_is_one_clear_sentence():
    with pytest.raises(UserError, match="has no text"):
        parse_prompts(":2")


def test_empty_prompt_is_refused():
    with pytest.raises(UserError, match="empty"):
        require_prompts("  |  ")
