"""Loading checkpoints without running code from them.

A ``.ckpt``/``.pt``/``.bin`` file is a pickle, and unpickling can call any function the file names.
We load through torch's own ``weights_only`` unpickler, which calls only tensor rebuilders and a
few builtins, plus an allow-list of stand-ins for the data-only classes real checkpoints carry
(Lightning's callback keys and ``AttributeDict``, numpy scalars, arrays and dtypes,
``argparse.Namespace``). The stand-ins are our own: the file never reaches numpy's or Lightning's
classes, so it cannot change them (a pickle may ``BUILD`` any object it names). Anything else, a
TorchScript archive (torch would hand it to ``torch.jit.load``, which runs the archive's code
paths) or torch's pre-1.0 tar format is refused with one sentence. ``.safetensors`` files hold no
code at all; their header is checked before the library reads the data.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import pickle
import re
import struct
import tarfile
import threading
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import UnsafeCheckpointError, UserError

log = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024   # the safetensors library's own limit
_SAFETENSORS_ITEM_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2,
                          "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}

# torch's allow-list is process-wide while a ``safe_globals`` block runs: one load at a time, so a
# second thread's block cannot end (and remove the stand-ins) in the middle of another's load.
_LOAD_LOCK = threading.Lock()


# Stand-ins for the data-only classes real checkpoints name ------------------------------------------

class NumpyDtype:
    """What a pickled ``numpy.dtype(...)`` becomes: its spec, turned into a fresh dtype on use.

    numpy's own ``dtype(name, align, copy=False)`` returns the shared builtin dtype, which a
    following BUILD would then change for the whole process.
    """

    def __init__(self, name: Any = "f8", align: Any = False, copy: Any = True):
        if not isinstance(name, str):
            raise pickle.UnpicklingError(f"numpy dtype {name!r} is not a type name")
        self.name, self.byteorder = name, "="

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "=", "|"):
            self.byteorder = state[1]

    def numpy(self):
        import numpy as np

        dtype = np.dtype(self.name)
        if dtype.hasobject:
            raise pickle.UnpicklingError("numpy object arrays are not weights")
        return dtype.newbyteorder(self.byteorder) if self.byteorder in "<>" else dtype


def numpy_scalar(dtype: NumpyDtype, data: Any):
    """``numpy.core.multiarray.scalar``: a numpy number rebuilt from its bytes."""
    import numpy as np

    if not isinstance(dtype, NumpyDtype) or not isinstance(data, bytes):
        raise pickle.UnpicklingError("a numpy scalar without a dtype and bytes")
    return np.frombuffer(data, dtype=dtype.numpy(), count=1)[0]


def _numpy_array_class():
    import numpy as np

    class NumpyArray(np.ndarray):
        """A numpy array rebuilt from its shape, dtype spec and bytes (``ndarray.__setstate__``)."""

        def __new__(cls, *args, **kwargs):
            # Whatever shape a file asks for: the array is empty until BUILD gives it its bytes.
            return np.ndarray.__new__(cls, (0,), dtype="u1")

        def __setstate__(self, state) -> None:
            if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], NumpyDtype)
                    and isinstance(state[4], bytes)):
                raise pickle.UnpicklingError("a numpy array without a dtype and bytes")
            version, shape, dtype, fortran, data = state
            np.ndarray.__setstate__(self, (version, shape, dtype.numpy(), bool(fortran), data))

    NumpyArray.__module__, NumpyArray.__qualname__ = "numpy", "ndarray"
    return NumpyArray


def numpy_reconstruct(cls: Any, shape: Any, typecode: Any):
    """``numpy.core.multiarray._reconstruct``: an empty array that BUILD fills (only our class)."""
    return _NUMPY_ARRAY()


def _stand_ins() -> list[tuple[Any, str]]:
    """(object, dotted name in files) pairs for ``torch.serialization.safe_globals``."""
    pairs: list[tuple[Any, str]] = [(argparse.Namespace, "argparse.Namespace"),
                                    (frozenset, "builtins.frozenset"), (slice, "builtins.slice")]
    for prefix in ("pytorch_lightning", "lightning.pytorch"):
        for module, name in (("callbacks.model_checkpoint", "ModelCheckpoint"),
                             ("callbacks.early_stopping", "EarlyStopping")):
            # Old Lightning files key their callback states by the class: the key becomes its name.
            dotted = f"{prefix}.{module}.{name}"
            pairs.append((dotted, dotted))
    for module in ("pytorch_lightning.utilities.parsing", "lightning_fabric.utilities.data",
                   "lightning.fabric.utilities.data"):
        pairs.append((dict, f"{module}.AttributeDict"))   # hyper-parameters: a plain dict
    if _NUMPY_ARRAY is not None:
        pairs += [(NumpyDtype, "numpy.dtype"), (_NUMPY_ARRAY, "numpy.ndarray")]
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            pairs += [(numpy_scalar, f"{module}.scalar"), (numpy_reconstruct, f"{module}._reconstruct")]
    return pairs


try:
    _NUMPY_ARRAY = _numpy_array_class()
except ImportError:  # pragma: no cover - numpy comes with torch
    _NUMPY_ARRAY = None
_STAND_INS = _stand_ins()


# Loading -------------------------------------------------------------------------------------------

def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file (pickle-based or safetensors) without running code from it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"The checkpoint {path} does not exist: check the path or download it first.")
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return _load_safetensors(path, map_location)
    _refuse_archives_with_code(path)
    try:
        with _LOAD_LOCK, torch.serialization.safe_globals(_STAND_INS), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols; the person gets one sentence
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged pickle raises EOFError, struct.error, KeyError, ...
        raise refusal_for(path, exc) or _unreadable(path, exc) from None


def refusal_for(path: Path | str, exc: BaseException) -> UserError | None:
    """The sentence for a ``torch.load(weights_only=True)`` that refused ``path`` (None: not a refusal).

    Also for loads torch does for libraries (open_clip's local weights).
    """
    path = Path(path)
    if isinstance(exc, pickle.UnpicklingError):
        return _unpickling_refusal(path, str(exc))
    if isinstance(exc, RuntimeError) and "TorchScript" in str(exc):
        return UnsafeCheckpointError(_refusal(path, "is a TorchScript archive (a program, not just weights)"))
    if isinstance(exc, RuntimeError) and "legacy .tar" in str(exc):
        return UnsafeCheckpointError(_refusal(path, "is in torch's pre-1.0 tar format, which cannot be checked"))
    return None


def _refusal(path: Path, what: str) -> str:
    return (f"The checkpoint {path.name} {what}, which could run code, so it was not loaded: use a "
            f".safetensors copy, or if you trust its source convert it with "
            f"`python -m logic convert {path} --trust-code`.")


def _unreadable(path: Path, exc: BaseException) -> UserError:
    detail = str(exc).strip().split("\n")[0][:160] or type(exc).__name__
    return UserError(f"The checkpoint {path.name} could not be read ({detail}): it may be incomplete, "
                     "download it again.")


def _refuse_archives_with_code(path: Path) -> None:
    """TorchScript archives (torch.load would pass them to torch.jit.load) and the pre-1.0 tar format."""
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return  # torch's reader decides; it refuses what it cannot read
        if any(Path(name).name in ("constants.pkl", "bytecode.pkl") or "/code/" in name for name in names):
            raise UnsafeCheckpointError(_refusal(path, "is a TorchScript archive (a program, not just weights)"))
    elif _is_tar(path):
        raise UnsafeCheckpointError(_refusal(path, "is in torch's pre-1.0 tar format, which cannot be checked"))


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


_UNSAFE_GLOBAL = re.compile(r"GLOBAL (\S+) (?:was not an allowed global|whose module)")


def _unpickling_refusal(path: Path, message: str) -> UserError:
    """torch's weights-only unpickler refused something: say what, in one sentence."""
    found = _UNSAFE_GLOBAL.search(message)
    if found:
        return UnsafeCheckpointError(_refusal(path, f"names {found.group(1)}"))
    named = _first_stack_global(path) if "Unsupported operand" in message else None
    if named:
        return UnsafeCheckpointError(_refusal(path, f"names {named}"))
    for marker, what in (("call reduce", "calls a function that is not a tensor rebuilder"),
                         ("Can only build", "changes an object it did not make"),
                         ("Can only create new object", "creates an object that is not data"),
                         ("Can only append", "changes an object it did not make"),
                         ("Can only extend", "changes an object it did not make"),
                         ("Can only set", "changes an object it did not make"),
                         ("persistent_load", "asks for something other than its tensors"),
                         ("Unsupported operand", "uses pickle instructions beyond tensors and plain data")):
        if marker in message:
            return UnsafeCheckpointError(_refusal(path, what))
    inner = message.rsplit("WeightsUnpickler error:", 1)[-1].strip().split("\n")[0]
    return _unreadable(path, pickle.UnpicklingError(inner or "unreadable pickle"))


def _first_stack_global(path: Path, limit: int = 1 << 20) -> str | None:
    """The first ``module.name`` a protocol 4+ pickle (plain, or a torch zip's data.pkl) looks up, for the sentence.

    pickletools only reads opcodes, it never resolves or calls anything.
    """
    import pickletools

    strings: list[str] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                with archive.open(name) as member:
                    data = member.read(limit)
        else:
            with open(path, "rb") as handle:
                data = handle.read(limit)
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            if isinstance(arg, str) and "UNICODE" in opcode.name:
                strings = [*strings[-1:], arg]
            elif opcode.name == "STACK_GLOBAL" and len(strings) == 2:
                return ".".join(strings)
    except Exception:  # noqa: BLE001 - a best effort for the message only
        return None
    return None


def _load_safetensors(path: Path, map_location) -> dict[str, Any]:
    from safetensors.torch import load_file

    check_safetensors_header(path)
    try:
        return load_file(str(path), device=str(map_location))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        detail = str(exc).strip().split("\n")[0][:160]
        raise UserError(f"The weights file {path.name} could not be read ({detail}): download it again.") from None


def check_safetensors_header(path: Path | str) -> None:
    """Refuse a .safetensors file whose header lies (length past the end, offsets out of range, huge)."""
    read_safetensors_header(path)


def read_safetensors_header(path: Path | str) -> dict[str, Any]:
    """The checked header of a .safetensors file: tensor name -> {dtype, shape, data_offsets}, and
    ``__metadata__``; reads the header only, never the weights (UserError when it lies)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if length < 2 or length > min(size - 8, SAFETENSORS_MAX_HEADER):
            raise _bad_safetensors(path, f"its header claims {max(length, 0)} bytes of a {size}-byte file")
        try:
            header = json.loads(handle.read(length))
        except ValueError:
            raise _bad_safetensors(path, "its header is not JSON") from None
    if not isinstance(header, dict):
        raise _bad_safetensors(path, "its header is not a table of tensors")
    data_size = size - 8 - length
    for name, entry in header.items():
        if name != "__metadata__" and not _tensor_entry_fits(entry, data_size):
            raise _bad_safetensors(path, f"the tensor {str(name)[:60]!r} lies outside the file or has the wrong size")
    return header


def _tensor_entry_fits(entry: Any, data_size: int) -> bool:
    if not isinstance(entry, dict):
        return False
    shape, offsets, item = entry.get("shape"), entry.get("data_offsets"), _SAFETENSORS_ITEM_SIZE.get(entry.get("dtype"))
    if item is None or not isinstance(shape, list) or not isinstance(offsets, list) or len(offsets) != 2:
        return False
    if not all(type(n) is int and n >= 0 for n in [*shape, *offsets]):
        return False
    count = 1
    for n in shape:
        count *= n
    start, end = offsets
    return start <= end <= data_size and end - start == count * item


def _bad_safetensors(path: Path, why: str) -> UserError:
    return UserError(f"The weights file {path.name} is damaged or not a safetensors file ({why}): download it again.")


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

    Without ``trust_code`` the file is read like every other load (and refused the same way). With
    it the file is unpickled normally, and a TorchScript archive loaded with ``torch.jit.load``: both
    may run code, so only for files from a source the person trusts, on their say-so.
    """
    from safetensors.torch import save_file

    source = Path(source)
    target = Path(target) if target else source.with_suffix(".safetensors")
    if trust_code:
        checkpoint = torch.load(source, map_location="cpu", weights_only=False)
        if isinstance(checkpoint, torch.nn.Module):
            checkpoint = checkpoint.state_dict()
    else:
        checkpoint = load_checkpoint(source)
    tensors = {k: v.contiguous() for k, v in state_dict_of(checkpoint).items()}
    save_file(tensors, str(target))
    return target
