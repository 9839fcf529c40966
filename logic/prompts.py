"""Parsing of weighted prompts: ``"text:weight:stop | text:weight | text"``.

The part after the last colon is a weight only when it parses as a number, so "photo: a fox" and
URLs stay text. Negative weights push the image away from a prompt; ``stop`` is a floor below which
the prompt's loss no longer pulls (as in the VQGAN-CLIP notebooks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import UserError

SEPARATOR = "|"


@dataclass(frozen=True)
class Prompt:
    text: str
    weight: float = 1.0
    stop: float = float("-inf")

    def to_dict(self) -> dict:
        return {"text": self.text, "weight": self.weight,
                "stop": None if math.isinf(self.stop) else self.stop}


def _as_number(part: str) -> float | None:
    try:
        value = float(part.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_prompt(item: str) -> Prompt:
    """Parse one ``text[:weight[:stop]]`` item; trailing parts count only when numeric."""
    text, numbers = item.strip(), []
    while len(numbers) < 2 and ":" in text:
        head, _, tail = text.rpartition(":")
        value = _as_number(tail)
        if value is None or not tail.strip():
            break
        numbers.insert(0, value)
        text = head.strip()
    if not text:
        raise UserError(f"The prompt part {item.strip()!r} has no text: write the words before the weight.")
    weight = numbers[0] if numbers else 1.0
    stop = numbers[1] if len(numbers) > 1 else float("-inf")
    return Prompt(text, weight, stop)


def parse_prompts(text: str) -> list[Prompt]:
    """Parse a whole prompt line into its weighted parts; empty parts are ignored."""
    items = [part for part in (text or "").split(SEPARATOR) if part.strip()]
    return [parse_prompt(part) for part in items]


def require_prompts(text: str, what: str = "prompt") -> list[Prompt]:
    """Like ``parse_prompts`` but refuses an empty prompt."""
    prompts = parse_prompts(text)
    if not prompts:
        raise UserError(f"The {what} is empty: type what the image should show.")
    return prompts


def plain_text(prompts: list[Prompt]) -> str:
    """The prompts' texts joined, for display and metadata."""
    return " | ".join(p.text for p in prompts)
