"""The memory plan: dtype, attention slicing, VAE slicing/tiling, model or sequential CPU offload.

Chosen from the free VRAM against what the family needs at its default size (``vram_gib`` in the
family file, see docs/diffusion.md); ``precision`` and ``memory`` override the pick, and the plan
with its reason is recorded in details.json.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PRECISIONS = ("auto", "fp16", "bf16", "fp32")
MEMORY_MODES = ("auto", "fast", "balanced", "low", "minimal")
_GIB = 1024 ** 3
_DEFAULT_NEEDS = {"fast": 8.0, "balanced": 4.0, "low": 2.0}


@dataclass(frozen=True)
class MemoryPlan:
    """How to fit the model: dtype name, attention slicing, VAE tiling, model/sequential CPU offload."""

    dtype: str = "fp32"
    attention_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False
    reason: str = ""
    sequential_offload: bool = False
    mode: str = "fast"

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[self.dtype]

    def record(self) -> dict:
        return {"dtype": self.dtype, "mode": self.mode, "attention_slicing": self.attention_slicing,
                "vae_tiling": self.vae_tiling, "cpu_offload": self.cpu_offload,
                "sequential_offload": self.sequential_offload, "reason": self.reason}


def free_vram(device: str) -> int | None:
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def memory_plan(device: str, precision: str = "auto", memory: str = "auto", free_bytes: int | None = None,
                family=None) -> MemoryPlan:
    """Pick dtype and memory savers from the free VRAM; ``precision``/``memory`` override the pick.

    On CUDA the family's dtype (fp16; bf16 for SD 3.5 and Flux, whose activations overflow fp16),
    fp32 on the CPU. ``fast``: nothing saved; ``balanced``: attention slicing + VAE tiling;
    ``low``: also model CPU offload (one component on the GPU at a time); ``minimal``: sequential
    offload (layer by layer: slowest, smallest). ``auto`` compares the free VRAM with the family's
    ``vram_gib`` {fast, balanced, low} and takes the fastest mode that fits.
    """
    gpu = device.startswith("cuda")
    wanted = getattr(family, "dtype", "fp16")
    dtype = precision if precision != "auto" else (wanted if gpu else "fp32")
    if not gpu and dtype == "fp16":
        dtype = "fp32"  # half precision convolutions are not implemented (or very slow) on the CPU
    if memory == "auto":
        memory, reason = _auto_mode(device, gpu, free_bytes, family)
    else:
        reason = f"memory mode {memory} chosen by hand"
    return MemoryPlan(dtype=dtype, attention_slicing=memory in ("balanced", "low", "minimal"),
                      vae_tiling=memory in ("balanced", "low", "minimal"), cpu_offload=gpu and memory == "low",
                      sequential_offload=gpu and memory == "minimal", reason=reason, mode=memory)


def _auto_mode(device: str, gpu: bool, free_bytes: int | None, family) -> tuple[str, str]:
    if not gpu:
        return "fast", "CPU: full precision, no slicing (it would only slow the CPU down)"
    needs = {**_DEFAULT_NEEDS, **(getattr(family, "vram_gib", None) or {})}
    free = (free_bytes if free_bytes is not None else (free_vram(device) or 0)) / _GIB
    if free >= needs["fast"]:
        mode = "fast"
    elif free >= needs["balanced"]:
        mode = "balanced"
    elif free >= needs["low"]:
        mode = "low"
    else:
        mode = "minimal"
    name = getattr(family, "title", "this model")
    return mode, (f"{free:.1f} GiB free on {device}; {name} needs about {needs['fast']:g} GiB to run "
                  f"without savers, {needs['balanced']:g} GiB with slicing and tiling")


def place_pipeline(pipe, device: str, plan: MemoryPlan) -> None:
    """Move to the device and switch on the memory savers the plan asks for."""
    if plan.sequential_offload:
        pipe.enable_sequential_cpu_offload(device=device)
    elif plan.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if plan.attention_slicing and hasattr(pipe, "enable_attention_slicing"):
        pipe.enable_attention_slicing()
    if plan.vae_tiling and hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling()
        pipe.vae.enable_slicing()
