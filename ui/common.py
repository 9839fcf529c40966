"""Widget helpers shared by the mode sidebars."""

from __future__ import annotations


def parse_seed(text: str) -> int | str | None:
    """An int, None for empty; other text is passed on so the engine names the mistake."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text
