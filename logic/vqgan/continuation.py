"""Continue a run: the state a finished run keeps (state.pt) and how a new run picks it up.

state.pt holds only tensors and plain containers (the latent, the optimiser's ``state_dict``), so
it loads through ``logic.models.checkpoints`` (torch's weights-only unpickler), like any checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .. import runs
from ..errors import UserError
from ..models.checkpoints import load_checkpoint

STATE_FILE = "state.pt"
# Parameters a continued run takes from its parent unless given again.
NOT_INHERITED = ("seed", "size_requested", "init_image", "init_noise", "continue_from", "steps")


def make_state(z: torch.Tensor, optimiser: torch.optim.Optimizer, optimiser_name: str, steps: int,
               vqgan_name: str) -> dict:
    return {"z": z.detach().cpu().clone(), "optimiser": _to_cpu(optimiser.state_dict()),
            "optimiser_name": optimiser_name, "steps": int(steps), "vqgan": vqgan_name}


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def read_target(path: str | Path) -> dict:
    """The details of a run that can be continued, or a sentence saying why it cannot."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"{path} is not a run folder: give a folder from output/ to continue.")
    details = runs.read_details(path)
    if details is None:
        raise UserError(f"{path} is not a run folder (no readable details.json): give a folder from output/.")
    if details.get("mode") != "vqgan":
        raise UserError(f"{path.name} is a {details.get('mode') or 'legacy'} run, not a VQGAN+CLIP run "
                        "made here: only those can be continued.")
    if not (path / STATE_FILE).is_file():
        raise UserError(f"{path.name} kept no latent to continue from ({STATE_FILE} is missing): "
                        "continue a run that got past its first step.")
    return details


def check_same_model(path: str | Path, details: dict, vqgan_name: str) -> None:
    parent = (details.get("model") or {}).get("vqgan")
    if parent and parent != vqgan_name:
        raise UserError(f"{Path(path).name} was made with the VQGAN {parent!r} but this run uses "
                        f"{vqgan_name!r}: continue with the same model ({parent}).")


def inherited_params(path: str | Path, depth: int = 0) -> dict:
    """The parent's settings, the base a continued run's own settings override.

    Taken from what the parent was asked (its rerun request: the prompt as typed, not rewritten
    for an artist; the size asked for) over, for a parent that itself continued a run, what that
    one inherited; with the recorded seed and models pinned."""
    try:
        run = runs.open_run(Path(path).expanduser())
    except UserError:
        return {}
    request = runs.rerun_request(run)
    base = {}
    if request.get("continue_from") and depth < 100:
        base = inherited_params(request["continue_from"], depth + 1)
    merged = {**base, **request}
    return {k: v for k, v in merged.items() if k not in NOT_INHERITED}


def load_state(path: str | Path, device) -> dict:
    state = load_checkpoint(Path(path) / STATE_FILE, map_location=device)
    if not isinstance(state, dict) or not isinstance(state.get("z"), torch.Tensor):
        raise UserError(f"{Path(path).name}/{STATE_FILE} holds no latent: it was not written by this engine.")
    return state


def resize_latent_like(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Bilinear resize of a latent-shaped tensor to (h, w) of ``shape``."""
    if tensor.shape == shape:
        return tensor
    return F.interpolate(tensor, size=tuple(shape[-2:]), mode="bilinear", align_corners=False)


def resize_optimiser_state(state: dict, old_shape: torch.Size, new_shape: torch.Size) -> dict:
    """Resize per-element moments (Adam's exp_avg, ...) that follow the latent's layout."""
    def fit(value):
        if isinstance(value, torch.Tensor) and value.shape == old_shape:
            return resize_latent_like(value, new_shape)
        return value
    return {**state, "state": {k: {n: fit(v) for n, v in s.items()} for k, s in state["state"].items()}}
