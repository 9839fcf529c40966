"""Samplers by the names people know (A1111's / ComfyUI's) -> a diffusers scheduler class and its options."""

from __future__ import annotations

import re
from typing import Any

from ...errors import UserError

# name -> (diffusers class, options). Names as in A1111/ComfyUI so people find what they know.
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++",
                                                            "use_karras_sigmas": True}),
    "DPM++ 2S": ("DPMSolverSinglestepScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "PNDM": ("PNDMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "DEIS": ("DEISMultistepScheduler", {}),
}


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower().replace("++", "pp").replace("karras", "k").replace("ancestral", "a"))


def resolve_scheduler(name: str) -> str:
    """The canonical sampler name for ``name`` ('euler_a', 'dpmpp 2m karras', ...), or a UserError listing them."""
    wanted = _norm(str(name))
    for known in SCHEDULERS:
        if _norm(known) == wanted:
            return known
    raise UserError(f"Unknown scheduler {name!r}. Available: {', '.join(SCHEDULERS)}.")


def make_scheduler(name: str, base_config) -> Any:
    """A fresh scheduler of the named kind keeping the model's betas and prediction type."""
    import diffusers

    if is_flow(base_config):
        return make_flow_scheduler(name, base_config)
    class_name, options = SCHEDULERS[resolve_scheduler(name)]
    return getattr(diffusers, class_name).from_config(base_config, **options)


# Rectified-flow models (SD 3.5, Flux) sample with flow-matching schedulers; the other names have no
# flow form, so such a model keeps its own Euler and the run records the sampler that ran.
FLOW_SCHEDULERS: dict[str, tuple[str, dict]] = {
    "Euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "Heun": ("FlowMatchHeunDiscreteScheduler", {}),
}


def is_flow(base_config) -> bool:
    return str(dict(base_config).get("_class_name", "")).startswith("FlowMatch")


def sampler_for(name: str, base_config) -> str:
    """The sampler that will run for ``name`` on a model with this scheduler config."""
    name = resolve_scheduler(name)
    if is_flow(base_config) and name not in FLOW_SCHEDULERS:
        return "Euler"
    return name


def make_flow_scheduler(name: str, base_config) -> Any:
    import diffusers

    class_name, options = FLOW_SCHEDULERS[sampler_for(name, base_config)]
    return getattr(diffusers, class_name).from_config(base_config, **options)
