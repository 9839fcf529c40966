"""One exception type for every mistake a person can fix.

Front ends show ``str(error)`` as it is: one sentence that says what to change. Anything else that
escapes an engine is a bug or a resource problem and is turned into such a sentence by
``describe_failure``.
"""

from __future__ import annotations


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


def describe_failure(exc: BaseException) -> str:
    """The sentence shown for a run that failed with ``exc``."""
    if isinstance(exc, UserError):
        return str(exc)
    if is_out_of_memory(exc):
        return ("The run ran out of memory: try a smaller size, fewer cutouts or a smaller batch, "
                "and close other programs using the GPU.")
    return f"The run failed unexpectedly ({type(exc).__name__}: {exc}); the log has the details."
