"""A1111's prompt syntax: attention weights, ``BREAK`` and ``<lora:name:weight>`` tags.

``parse_attention`` follows the grammar of A1111's ``modules/prompt_parser.parse_prompt_attention``
(written anew here, same results): ``(text)`` multiplies the weight by 1.1, ``[text]`` divides it by
1.1, ``(text:1.3)`` sets the multiplier, ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are literal characters,
unbalanced brackets close at the end, and ``BREAK`` (capitals, a word of its own) starts a new
75-token chunk. Runs with equal weights are merged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BREAK = "BREAK"
ROUND = 1.1
SQUARE = 1 / 1.1

_TOKEN = re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|   # escapes (and a lone backslash)
\(|\[|                        # openers
:([+-]?[.\d]+)\)|           # ':1.3)' closes a round bracket with an explicit weight
\)|]|                         # closers
[^\\()\[\]:]+|                # plain text
:                             # a colon that is not a weight
""", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_LORA_TAG = re.compile(r"<(lora|lyco):([^:>]+)(?::([^:>]*))?(?::[^>]*)?>", re.I)


def parse_attention(text: str) -> list[tuple[str, float]]:
    """``text`` -> [(piece, weight)], with (``BREAK``, -1) where a chunk must end."""
    pieces: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _TOKEN.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            pieces.append([token[1:], 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open:
            multiply(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            multiply(round_open.pop(), ROUND)
        elif token == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
        else:
            for index, part in enumerate(_BREAK.split(token)):
                if index:
                    pieces.append([BREAK, -1])
                pieces.append([part, 1.0])
    for start in round_open:
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)
    return _merge_equal_weights(pieces or [["", 1.0]])


def _merge_equal_weights(pieces: list[list]) -> list[tuple[str, float]]:
    merged: list[list] = []
    for text, weight in pieces:
        if merged and merged[-1][1] == weight:
            merged[-1][0] += text
        else:
            merged.append([text, weight])
    return [(text, weight) for text, weight in merged]


@dataclass(frozen=True)
class LoraTag:
    """One ``<lora:name:weight>`` tag as written in a prompt."""

    name: str
    weight: float
    text: str            # the tag exactly as written

    @property
    def item(self) -> str:
        """The same LoRA in the ``--lora NAME:WEIGHT`` form."""
        return f"{self.name}:{self.weight:g}"


def find_lora_tags(prompt: str) -> list[LoraTag]:
    """The ``<lora:name:weight>`` (and ``<lyco:...>``) tags of a prompt, in order; the weight defaults to 1.

    A weight that is not a number is kept as NaN so the caller can name it in one sentence.
    """
    tags = []
    for match in _LORA_TAG.finditer(prompt or ""):
        weight_text = (match.group(3) or "1").strip()
        try:
            weight = float(weight_text)
        except ValueError:
            weight = float("nan")
        tags.append(LoraTag(match.group(2).strip(), weight, match.group(0)))
    return tags


def strip_lora_tags(prompt: str) -> str:
    """The prompt without its LoRA tags (what the text encoder reads); the spacing left behind is tidied."""
    text = _LORA_TAG.sub("", prompt or "")
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r"\s+,", ",", text)
    return re.sub(r",\s*,", ",", text).strip(" \t,")


def set_lora_tag_weight(prompt: str, name: str, weight: float) -> str:
    """The prompt with the weight of every ``<lora:name:...>`` tag set to ``weight`` (the app's sliders)."""
    def replace(match: re.Match) -> str:
        if match.group(2).strip() != name:
            return match.group(0)
        return f"<{match.group(1)}:{match.group(2)}:{weight:g}>"

    return _LORA_TAG.sub(replace, prompt or "")
