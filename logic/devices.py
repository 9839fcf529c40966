"""Picking and cleaning up compute devices."""

from __future__ import annotations

import gc

import torch

from .errors import UserError


def resolve_device(name: str | None) -> str:
    """'auto'/None -> cuda when available, else cpu; checks that a named CUDA device exists."""
    if not name or name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"Device {name} was asked for but no CUDA GPU is available: use the device cpu.")
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"Device {name} does not exist: this machine has {torch.cuda.device_count()} GPU(s).")
        return name
    if name == "mps" and torch.backends.mps.is_available():
        return name
    raise UserError(f"Unknown device {name!r}: use cpu, cuda or cuda:N.")


def has_cuda() -> bool:
    return torch.cuda.is_available()


def free_memory() -> None:
    """Return cached memory to the system after a run or a model switch."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
