"""One exception type for every mistake a person can fix.

Front ends show ``str(error)`` as it is: one sentence that says what to change. Anything else that
escapes an engine is a bug or a resource problem and is turned into such a sentence by
``describe_failure``.
"""

from __future__ import annotations

import errno
from pathlib import Path


class UserError(Exception):
    """Bad input or a missing resource, explained in one sentence a person can act on."""


class UnsafeCheckpointError(UserError):
    """A checkpoint whose pickle would run code when loaded."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors and for host allocations that failed."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    text = str(exc).lower()
    return name == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text \
        or ("defaultcpuallocator" in text and "not enough memory" in text)


# What a full disk or quota says when the error reaches us without its errno (ffmpeg's stderr).
_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded", "file too large")


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC/EDQUOT/EFBIG, also when only an encoder's message says so."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    return isinstance(exc, OSError) and any(text in str(exc).lower() for text in _DISK_FULL_TEXT)


def describe_failure(exc: BaseException, folder: Path | str | None = None, log_file: Path | str | None = None) -> str:
    """The sentence shown for a run that failed with ``exc``.

    ``folder`` is where the run writes (named when the disk is full); ``log_file`` holds the
    traceback of an unexpected failure, and the sentence says so.
    """
    if isinstance(exc, UserError):
        return str(exc)
    if is_disk_full(exc):
        where = f"in {folder}" if folder else "on the output disk"
        return f"The disk is full: free space {where} and rerun."
    if is_out_of_memory(exc):
        return ("The run ran out of memory: try a smaller size, fewer cutouts or a smaller batch, "
                "and close other programs using the GPU.")
    details = f"details in {log_file}" if log_file else "the log has the details"
    return f"The run failed unexpectedly ({type(exc).__name__}: {_first_line(exc)}); {details}."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no message"
