"""Prompt schedules ("stories"): prompt stages separated by ``^`` that change every N steps.

The separator is the VQGAN-CLIP generator's: ``"backyard in spring ^ backyard in summer"``; each
stage is itself a weighted prompt line (``"a | b:0.5"``). After the last stage the last one stays.
"""

from __future__ import annotations

STAGE_SEPARATOR = "^"


def split_stages(prompt: str) -> list[str]:
    return [stage.strip() for stage in (prompt or "").split(STAGE_SEPARATOR) if stage.strip()]


def stage_at(step: int, every: int, stages: int) -> int:
    """The stage index in effect at ``step`` (1-based steps)."""
    return min((step - 1) // every, stages - 1) if stages > 1 else 0
