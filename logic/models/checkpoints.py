"""Loading checkpoints without running code from them.

A ``.ckpt``/``.pt``/``.bin`` file is a pickle, and unpickling can call any function the file names.
We unpickle with an allow-list: tensor rebuilding, OrderedDict and a few harmless builtins. Any
other global the file names becomes an inert placeholder; a file that tries to *call* such a global
(``os.system``, a class constructor, ...) is refused before anything runs. Placeholders that are
only referenced, like the Lightning callback classes old checkpoints use as dict keys, are harmless
and let the weights load. ``.safetensors`` files hold no code at all and are preferred.
"""

from __future__ import annotations

import collections
import logging
import pickle
import types
from pathlib import Path
from typing import Any

import torch

from ..errors import UnsafeCheckpointError, UserError

log = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")

# Callables a weights file legitimately calls while unpickling.
_ALLOWED_CALLABLES: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): getattr(torch._utils, "_rebuild_tensor_v3", None),
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): getattr(torch._utils, "_rebuild_parameter_with_state", None),
    ("torch._utils", "_rebuild_qtensor"): getattr(torch._utils, "_rebuild_qtensor", None),
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("_codecs", "encode"): None,  # filled below: bytes in protocol-2 pickles
    ("numpy.core.multiarray", "scalar"): None,
    ("numpy._core.multiarray", "scalar"): None,
    ("numpy", "dtype"): None,
}


class AttributeDict(dict):
    """Stands for Lightning's AttributeDict (hyper-parameters in old checkpoints): a plain dict."""


def _fill_optional_allowed() -> None:
    import argparse
    import codecs

    _ALLOWED_CALLABLES[("_codecs", "encode")] = codecs.encode
    # Hyper-parameter containers of Lightning checkpoints: building them runs no code of the file's.
    _ALLOWED_CALLABLES[("argparse", "Namespace")] = argparse.Namespace
    for module in ("pytorch_lightning.utilities.parsing", "lightning_fabric.utilities.data",
                   "lightning.fabric.utilities.data"):
        _ALLOWED_CALLABLES[(module, "AttributeDict")] = AttributeDict
    try:
        import numpy as np

        _ALLOWED_CALLABLES[("numpy", "dtype")] = np.dtype
        multiarray = getattr(getattr(np, "_core", np.core), "multiarray")
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            # Numpy scalars and arrays (e.g. a saved metric): rebuilt from their bytes, no code run.
            _ALLOWED_CALLABLES[(module, "scalar")] = multiarray.scalar
            _ALLOWED_CALLABLES[(module, "_reconstruct")] = multiarray._reconstruct
        _ALLOWED_CALLABLES[("numpy", "ndarray")] = np.ndarray
    except (ImportError, AttributeError):
        pass


_fill_optional_allowed()

_STORAGE_NAMES = {
    "FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
    "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage", "UntypedStorage", "TypedStorage",
}


class _Inert:
    """Stands for a global the file names but may not use; calling it refuses the file."""

    qualified_name = "?"

    def __new__(cls, *args, **kwargs):
        raise UnsafeCheckpointError(_refusal(cls.qualified_name))

    def __reduce__(self):  # pragma: no cover - never instantiated
        raise UnsafeCheckpointError(_refusal(self.qualified_name))


def _refusal(name: str) -> str:
    return (f"This checkpoint would run code while loading (it calls {name}), so it was not loaded: "
            "use a .safetensors copy, or convert it on a machine you trust with "
            "`python -m logic convert FILE`.")


def _inert_global(module: str, name: str) -> type:
    qualified = f"{module}.{name}"
    return type(name, (_Inert,), {"qualified_name": qualified, "__module__": "atelier.inert"})


def _resolve_torch_global(module: str, name: str) -> Any | None:
    if module == "torch" and (name in _STORAGE_NAMES or isinstance(getattr(torch, name, None), torch.dtype)):
        return getattr(torch, name)
    if module == "torch.storage" and name in _STORAGE_NAMES:
        return getattr(torch.storage, name)
    return None


class SafeUnpickler(pickle.Unpickler):
    """Resolves only allowed globals; everything else is an inert placeholder that cannot be called."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_CALLABLES.get((module, name))
        if allowed is not None:
            return allowed
        resolved = _resolve_torch_global(module, name)
        if resolved is not None:
            return resolved
        log.debug("Checkpoint names %s.%s; kept inert", module, name)
        return _inert_global(module, name)


class _SafePickleModule(types.ModuleType):
    """What ``torch.load(pickle_module=...)`` expects: a module with Unpickler and load."""

    Unpickler = SafeUnpickler

    @staticmethod
    def load(file, **kwargs):
        return SafeUnpickler(file, **kwargs).load()


_safe_pickle = _SafePickleModule("atelier_safe_pickle")
_safe_pickle.__dict__.update(pickle.__dict__)
_safe_pickle.Unpickler = SafeUnpickler
_safe_pickle.load = _SafePickleModule.load


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file (pickle-based or safetensors) without running code from it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"The checkpoint {path} does not exist: check the path or download it first.")
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return _load_safetensors(path, map_location)
    try:
        return torch.load(path, map_location=map_location, pickle_module=_safe_pickle, weights_only=False)
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as exc:
        raise UserError(f"The checkpoint {path.name} could not be read ({exc}): it may be incomplete, "
                        "download it again.") from None


def _load_safetensors(path: Path, map_location) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(map_location))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise UserError(f"The weights file {path.name} could not be read ({exc}): download it again.") from None


def state_dict_of(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: Lightning's 'state_dict', a 'model' entry, or the dict itself."""
    for key in ("state_dict", "model", "module"):
        inner = checkpoint.get(key) if isinstance(checkpoint, dict) else None
        if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner
    if isinstance(checkpoint, dict):
        return {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    raise UserError("The checkpoint holds no weights (no state_dict): is it the right file?")


def convert_to_safetensors(source: Path | str, target: Path | str | None = None,
                           trust_code: bool = False) -> Path:
    """Write the weights of a checkpoint as .safetensors.

    With ``trust_code`` the file is unpickled normally (it may run code): only for files from a
    source the person trusts, on their say-so.
    """
    from safetensors.torch import save_file

    source = Path(source)
    target = Path(target) if target else source.with_suffix(".safetensors")
    if trust_code:
        checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    else:
        checkpoint = load_checkpoint(source)
    tensors = {k: v.contiguous() for k, v in state_dict_of(checkpoint).items()}
    save_file(tensors, str(target))
    return target
