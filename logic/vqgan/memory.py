"""Refusing runs that cannot fit, before the kernel kills the process for them.

A run asking for ``--cutn 100000``, a 4096x4096 image or a VQGAN config with enormous layers does
not fail with an error: the kernel's out-of-memory killer ends the whole process (the CLI, or the
app's server with every queued run). What such a run needs can be told before it starts. Two tiny
passes through the loaded models measure what autograd keeps per cutout and per latent cell
(``saved_bytes``); scaled to the run, that is a lower bound (allocator slack, optimiser state and
temporaries come on top), so a refused run could never have fitted. Runs near the limit still go
ahead and, if they do run out, fail with the out-of-memory sentence or are marked interrupted at the
next start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError

FLOAT_BYTES = 4
GIB = 1024 ** 3


@dataclass
class Need:
    """Bytes a run needs at least, by part, so the refusal can say what to lower."""

    image: int = 0
    cutouts: int = 0
    weights: int = 0

    @property
    def total(self) -> int:
        return self.image + self.cutouts + self.weights


def saved_bytes(fn, inputs: torch.Tensor, exclude: set[int]) -> int:
    """Bytes autograd keeps for backward when ``fn(inputs)`` runs (each storage once, weights in
    ``exclude`` left out), plus the output: measured on the real model, whatever its architecture."""
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in exclude:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.inference_mode(False), torch.enable_grad(), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = fn(inputs.clone().requires_grad_(True))
    return sum(seen.values()) + output.numel() * output.element_size()


def per_item(fn, make_input, exclude: set[int], small: int = 1, large: int = 2) -> float:
    """What one more item (a cutout, a latent cell) adds, from two tiny measured passes."""
    return max(0.0, (saved_bytes(fn, make_input(large), exclude) - saved_bytes(fn, make_input(small), exclude))
               / (large - small))


def storages(module: torch.nn.Module) -> set[int]:
    return {p.untyped_storage().data_ptr() for p in module.parameters()}


def vqgan_weights(ddconfig: dict) -> int:
    """The encoder's and decoder's widest level holds at least two 3x3 convolutions of its width
    (known from the config before anything is built)."""
    widest = int(ddconfig.get("ch", 128)) * max(int(m) for m in ddconfig.get("ch_mult", [1]))
    return 2 * 2 * 9 * widest * widest * FLOAT_BYTES


def available_memory(device: str) -> int | None:
    """Bytes a run on ``device`` can hope for: the GPU's total memory, or the RAM the kernel says is
    available (capped by a container's memory limit); None when unknown."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.mem_get_info(torch.device(device))[1]
    if device != "cpu":
        return None
    found = [value for value in (_meminfo_available(), _cgroup_room()) if value is not None]
    return min(found) if found else None


def _meminfo_available() -> int | None:
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        return (int(fields["MemAvailable"].split()[0]) + int(fields.get("SwapFree", "0 kB").split()[0])) * 1024
    except (OSError, KeyError, ValueError):
        return None


def _cgroup_room() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else int(limit) - used


def refuse_if_too_big(need: Need, device: str, what: str, available: int | None = None) -> None:
    """UserError naming the largest part when ``need`` cannot fit in ``device``'s memory."""
    available = available_memory(device) if available is None else available
    if available is None or need.total <= available:
        return
    part = max(("image", need.image), ("cutouts", need.cutouts), ("weights", need.weights), key=lambda p: p[1])[0]
    advice = {"image": "lower the size", "cutouts": "lower the number of cutouts (cutn)",
              "weights": "use a VQGAN config with smaller layers (ch, ch_mult)"}[part]
    raise UserError(f"This run needs at least {need.total / GIB:.1f} GiB of memory ({what}) but {device} has "
                    f"{available / GIB:.1f} GiB: {advice}.")
