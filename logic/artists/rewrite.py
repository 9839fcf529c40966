"""Prompt rewriting: "a graffiti gorilla" -> "a graffiti gorilla, in the style of Banksy".

The rewrite is skipped when the prompt already names an artist (any known artist's name or alias, or
a phrase such as "in the style of" / "by <Name>") or carries a DreamBooth token (``sks``-style rare
tokens, ``<token>`` textual-inversion placeholders): those prompts already say whose style they want.
Weighted VQGAN prompts ("text:weight | text") get the style on their first part, weights kept.
"""

from __future__ import annotations

import re

from ..prompts import SEPARATOR, parse_prompt

_STYLE_PHRASES = re.compile(r"\b(in the style of|in the manner of|style of|after the style of)\b", re.I)
_BY_NAME = re.compile(r"\b(?:painted|drawn|made|art|artwork|painting|drawing|print) by\s+[A-Z][\w'\-]*")
_PLACEHOLDER = re.compile(r"<[^<>\s]+>")


def clean_spacing(text: str) -> str:
    """One space between words, none before punctuation, no doubled or trailing commas."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r",(\s*,)+", ",", text)
    text = re.sub(r",(?=\S)", ", ", text)
    return text.strip(" ,;")


def names_an_artist(prompt: str, names: list[str] | tuple[str, ...] = ()) -> str | None:
    """The artist name (or style phrase) the prompt already carries, else None."""
    lowered = prompt.casefold()
    for name in sorted(names, key=len, reverse=True):
        if name and re.search(rf"(?<!\w){re.escape(name.casefold())}(?!\w)", lowered):
            return name
    phrase = _STYLE_PHRASES.search(prompt) or _BY_NAME.search(prompt)
    return phrase.group(0) if phrase else None


def dreambooth_token(prompt: str, tokens: list[str] | tuple[str, ...] = ()) -> str | None:
    """The DreamBooth / textual-inversion token in the prompt, else None."""
    placeholder = _PLACEHOLDER.search(prompt)
    if placeholder:
        return placeholder.group(0)
    words = set(re.findall(r"\w+", prompt.casefold()))
    return next((t for t in tokens if t.casefold() in words), None)


def skip_reason(prompt: str, artist_names=(), tokens=()) -> str | None:
    """Why the prompt must not be rewritten, as a short phrase, or None."""
    named = names_an_artist(prompt, artist_names)
    if named:
        return f"the prompt already names an artist or style ({named!r})"
    token = dreambooth_token(prompt, tokens)
    if token:
        return f"the prompt carries a DreamBooth token ({token!r})"
    return None


def rewrite_prompt(prompt: str, artist: str, template: str = "{prompt}, in the style of {artist}") -> str:
    """Add the artist to the prompt with clean spacing; weighted parts keep their weights."""
    parts = prompt.split(SEPARATOR)
    first = parts[0].strip()
    text = parse_prompt(first).text if first else ""
    suffix = first[len(text):] if first.startswith(text) else ""
    styled = clean_spacing(template.format(prompt=clean_spacing(text).rstrip("."), artist=artist.strip()))
    rest = [p.strip() for p in parts[1:] if p.strip()]
    return f" {SEPARATOR} ".join([styled + suffix, *rest])
