"""The optimisers a run can use: a name -> constructor registry (torch.optim's maintained classes)."""

from __future__ import annotations

import functools

import torch

from ..errors import UserError

OPTIMISERS = {
    "Adam": torch.optim.Adam,
    "AdamW": torch.optim.AdamW,
    "Adagrad": torch.optim.Adagrad,
    "Adamax": torch.optim.Adamax,
    "RMSprop": torch.optim.RMSprop,
    "RAdam": torch.optim.RAdam,
    "NAdam": torch.optim.NAdam,
    "SGD": functools.partial(torch.optim.SGD, momentum=0.9),
}


def canonical_optimiser(name: str) -> str:
    """The registry's spelling of ``name`` (case-insensitive), or a sentence listing the known ones."""
    for known in OPTIMISERS:
        if known.lower() == str(name).strip().lower():
            return known
    raise UserError(f"Unknown optimiser {name!r}. Known: {', '.join(OPTIMISERS)}.")


def make_optimiser(name: str, params, lr: float) -> torch.optim.Optimizer:
    return OPTIMISERS[canonical_optimiser(name)](params, lr=lr)
