"""The run-folder contract: the one interface between generation and everything that shows runs.

```
output/20261121T093015-vTf6Aot6/
  details.json   written atomically (temp file + os.replace) at start, checkpoints and end
  output.png     final image (PNG text chunk 'parameters')
  anim.mp4       the progression
  thumb.jpg      small image for the gallery
  preview.jpg    latest preview while running
  metrics.jsonl  one JSON object per step: {"step": n, "<metric>": value, ...}
  inputs/        init image and image prompts exactly as given
```

Readers tolerate unknown keys, older schemas, and the folders written by the original
vqgan-clip-app (``output.PNG`` and a ``details.json`` with ``text_input``).

Run folders may come from anyone (shared, downloaded, hand-edited), so they are read in one place:
``read_record`` checks details.json (size, encoding, NaN, nesting, the type of every key the code
uses) and returns a typed ``RunRecord``, or None with a warning naming the folder. Symlinks inside
a run folder, or a run folder that is a symlink, are never followed.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import math
import os
import re
import secrets
import socket
import stat
import string
import tempfile
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

SCHEMA = 1
DETAILS = "details.json"
OUTPUT = "output.png"
ANIM = "anim.mp4"
GIF = "anim.gif"
THUMB = "thumb.jpg"
PREVIEW = "preview.jpg"
METRICS = "metrics.jsonl"
INPUTS = "inputs"
STATE = "state.pt"
LOG = "log.txt"
RESERVE = ".reserve"
RESERVE_BYTES = 64 * 1024    # freed when a run ends, so its last details.json and log.txt fit on a full disk
STOP_REQUEST = "stop-request"   # present: whoever runs this run stops after the current step

QUEUED, RUNNING, DONE, STOPPED, FAILED, INTERRUPTED = (
    "queued", "running", "done", "stopped", "failed", "interrupted")
ACTIVE = (QUEUED, RUNNING)
FINISHED = (DONE, STOPPED, FAILED, INTERRUPTED)
STATUSES = ACTIVE + FINISHED

_ID_ALPHABET = string.ascii_letters + string.digits
_LEGACY_IMAGES = ("output.PNG", "output.png", "output.jpg", "output.JPEG")
MAX_DETAILS_BYTES = 8 * 1024 * 1024  # a real details.json is a few kB; a larger one is not read at all
MAX_DEPTH = 32                        # nesting of a real details.json is 4 or 5 levels
MAX_PID = 1 << 22                     # Linux's largest pid_max: larger is not a process


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def new_run_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


@contextlib.contextmanager
def replacing(path: Path | str) -> Iterator[Path]:
    """A hidden temp path beside ``path`` that replaces it only when the block ends without error.

    Readers see the old file or the new one, never half of one; a write that fails (a full disk, a
    crash in an encoder) leaves no file under the real name pretending to be a result. The suffix is
    kept so that writers choosing a format by extension (Pillow, ffmpeg) still do.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _sync(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run folders are meant to be shared and served
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _finite(value):
    """``value`` with NaN and infinities as None: JSON has no such numbers and readers refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _sync(path: str | Path) -> None:
    """Make the kernel write the file now: a disk that fills reports it here (delayed allocation
    would otherwise lose the data after the rename, when nobody is listening)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write bytes through ``replacing``. Python's buffered writer retries a short write, so a
    disk that fills raises here instead of leaving the file short (C encoders writing straight to
    a descriptor, as Pillow does, can stop short without a word)."""
    with replacing(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    write_bytes_atomic(path, json.dumps(_finite(data), indent=2, ensure_ascii=False, default=str).encode("utf-8"))


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a process, so a reused pid is not mistaken for the owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _process_token() -> dict:
    """Who owns a run: host, pid and process start, so a dead owner can be detected later."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def owner_is_alive(owner: dict | None) -> bool:
    """Whether the process that owns a run (or holds a lock) still runs; see ``_owner_is_alive``."""
    return _owner_is_alive(owner)


process_token = _process_token  # public name for the queue, which hands a run to the worker that claims it


def _owner_is_alive(owner: dict | None) -> bool:
    """False only when we can tell the owning process is gone; another host's run counts as alive."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= MAX_PID:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = _process_start(pid)
    return owner.get("start") is None or start is None or start == owner.get("start")


@dataclass
class Run:
    """One run folder and its details, updated only through ``update`` (atomic rewrite)."""

    path: Path
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.details.get("run_id") or self.path.name.split("-", 1)[-1]

    @property
    def status(self) -> str:
        return self.details.get("status", "")

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def record(self) -> "RunRecord":
        """The details as a checked, typed record (MalformedRun when they are the wrong shape)."""
        return record_from_details(self.path, self.details)

    @property
    def inputs_dir(self) -> Path:
        folder = self.path / INPUTS
        folder.mkdir(exist_ok=True)
        return folder

    def update(self, **changes: Any) -> None:
        self.details.update(changes)
        write_json_atomic(self.path / DETAILS, self.details)

    def append_metrics(self, rows: list[dict]) -> None:
        """Append whole lines: a write cut short (a full disk) is cut back, so no half row is left."""
        if not rows:
            return
        path = self.path / METRICS
        size = path.stat().st_size if path.exists() else None
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("".join(json.dumps(row) + "\n" for row in rows))
        except OSError:
            with contextlib.suppress(OSError):
                if size is None:
                    path.unlink(missing_ok=True)
                else:
                    os.truncate(path, size)
            raise

    def write_log(self, text: str) -> Path | None:
        """Append to the run's log.txt (tracebacks a person can send); None when it cannot be written."""
        path = self.path / LOG
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(f"--- {now_iso()}\n{text.rstrip()}\n")
        except OSError:
            log.warning("Could not write %s", path)
            return None
        return path

    def log_exception(self, exc: BaseException) -> Path | None:
        return self.write_log("".join(traceback.format_exception(exc)))

    def reserve_space(self) -> None:
        """Hold a little disk space for the run's last words (see ``RESERVE_BYTES``)."""
        path = self.path / RESERVE
        try:
            with open(path, "wb") as handle:
                try:
                    os.posix_fallocate(handle.fileno(), 0, RESERVE_BYTES)
                except (AttributeError, OSError) as exc:
                    if getattr(exc, "errno", None) == errno.ENOSPC:
                        raise
                    handle.write(bytes(RESERVE_BYTES))  # filesystems without fallocate
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def release_space(self) -> None:
        (self.path / RESERVE).unlink(missing_ok=True)


def create_run(output_dir: Path | str, mode: str, request: dict, resolved: dict | None = None,
               **extra: Any) -> Run:
    """Make ``<output_dir>/<timestamp>-<run_id>/`` with a queued details.json.

    ``request`` is what the person asked, as given (unset options left out); ``resolved`` is the
    checked spec, updated as the run resolves it (input copies, rounded size, rewritten prompt)."""
    request = as_request(request)
    resolved = dict(resolved if resolved is not None else request)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    while True:
        run_id = new_run_id()
        path = output_dir / f"{stamp}-{run_id}"
        try:
            path.mkdir()
            break
        except FileExistsError:
            continue
    details = {
        "schema": SCHEMA, "run_id": run_id, "mode": mode, "status": QUEUED,
        "created": now_iso(), "started": None, "finished": None,
        "prompt": request.get("prompt") or resolved.get("prompt", ""), "request": request, "resolved": resolved,
        "params": resolved, "progress": {"step": 0, "total": resolved.get("steps")}, "error": None,
        "owner": _process_token(), **extra,
    }
    run = Run(path, details)
    try:
        run.update()
    except OSError as exc:
        path.rmdir()  # a folder without details.json would only be skipped by every reader
        from .errors import UserError, describe_failure, is_disk_full
        if is_disk_full(exc):
            raise UserError(describe_failure(exc, folder=output_dir)) from None
        raise
    return run


def as_request(params: dict) -> dict:
    """What a person asked, JSON-safe and without the options left unset (None)."""
    return json.loads(json.dumps({k: v for k, v in params.items() if v is not None}, default=str))


def request_of(details: dict) -> dict:
    """The run's request; runs made before the split recorded only ``params``."""
    return dict(details.get("request") or details.get("params") or {})


def resolved_of(details: dict) -> dict:
    """What the run ran with (the resolved spec); older runs: their ``params``."""
    return dict(details.get("resolved") or details.get("params") or {})


# Recorded choices a rerun keeps although the request left them to chance or to defaults.yaml.
PINNED = ("seed", "seeds", "vqgan", "clip", "clip_weights", "model", "lora", "demo")
# Files the person gave: the resolved spec points at the run's own inputs/ copies.
INPUT_FILES = ("init_image", "image_prompts", "mask", "image")


def rerun_request(run: Run) -> dict:
    """The params a rerun (or "Continue this run", "Again, alone") starts from.

    The person's request, as given, so a rewritten prompt is rewritten again rather than twice
    and a size is rounded again from what was asked; with the recorded seed and models, the
    inputs/ copies of given files (found in this folder even after it moved) and, for a
    continued run, its parent found by run id in the same output folder. A folder of the original
    vqgan-clip-app: its recorded settings mapped onto a VQGAN+CLIP request (``legacy_rerun``).
    """
    if run.details.get("legacy"):
        from . import legacy_rerun

        return legacy_rerun.request(run.record)
    details, request = run.details, request_of(run.details)
    resolved = resolved_of(details)
    for key in PINNED + INPUT_FILES:
        if resolved.get(key) not in (None, [], ""):
            request[key] = resolved[key]
    for key in ("init_image", "mask", "image"):
        if isinstance(request.get(key), str):
            request[key] = _relocated_input(run, request[key])
    if isinstance(request.get("image_prompts"), list):
        request["image_prompts"] = [{**item, "path": _relocated_input(run, item["path"])}
                                    if isinstance(item, dict) and item.get("path") else item
                                    for item in request["image_prompts"]]
    artist = (details.get("artist_match") or {}).get("artist")
    if request.get("match_artist") and artist and not request.get("artist"):
        request["artist"] = artist  # the same artist, even if the library grew since
    if request.get("continue_from") or resolved.get("continue_from"):
        request["continue_from"] = _parent_folder(run, resolved.get("continue_from") or request["continue_from"])
    return request


def rerun_refusal(record: "RunRecord") -> str | None:
    """Why a rerun of this run is refused (one sentence), or None when it can be made again.

    The one answer for ``python -m logic rerun`` and for the gallery, which offers no rerun
    command for a run the command would refuse."""
    if record.legacy and record.mode == LEGACY_GUIDED:
        return (f"{record.name} is a CLIP-guided diffusion run of the original vqgan-clip-app, "
                "and Atelier has no guided-diffusion engine to make it again.")
    if record.legacy:
        from . import legacy_rerun  # its own module: what the original app fixed in code, by version

        return legacy_rerun.refusal(record)
    if not record.mode or not rerun_request(Run(record.path, record.as_details())):
        return f"{record.name}/details.json has no mode or parameters to rerun."
    return None


def _relocated_input(run: Run, path: str) -> str:
    """A kept input by its name in this run's inputs/ when the recorded path is gone (folder moved)."""
    if Path(path).is_file():
        return path
    moved = run.path / INPUTS / Path(path).name
    return str(moved) if is_regular_file(moved) else path


def _parent_folder(run: Run, recorded: str) -> str:
    """The continued run's folder: as recorded, else by its run id beside this run."""
    parent_id = run.details.get("parent_run_id")
    if Path(recorded).is_dir() or not parent_id:
        return recorded
    parent = find_run(run.path.parent, parent_id)
    return str(parent.path) if parent is not None else recorded


# --- Reading a run folder: one validating reader, a typed record ----------------------------


class MalformedRun(ValueError):
    """A details.json that is there but cannot be trusted; the message says why (a phrase)."""


_NUMBER = (int, float)
# Every key the code reads, with the JSON types it may hold (null is always allowed). Unknown keys
# are kept as they are: later schemas add keys, and nothing here reads them.
_FIELD_TYPES: dict[str, tuple] = {
    "run_id": (str,), "mode": (str,), "status": (str,), "created": (str,), "started": (str,),
    "finished": (str,), "prompt": (str,), "prompt_used": (str,), "params": (dict,), "request": (dict,),
    "resolved": (dict,),
    "model": (dict, str), "progress": (dict,), "it_s": _NUMBER, "eta_s": _NUMBER, "timing": (dict,),
    "error": (str,), "parent_run_id": (str,), "owner": (dict,), "artist_match": (dict,),
    "seed": (int,), "frames": (int,), "size": (list,), "device": (str,), "demo": (bool,),
    "legacy": (bool,), "output_image": (str,), "legacy_inputs": (list,),
}


@dataclass(frozen=True)
class RunRecord:
    """What a run folder says about its run, checked: every field has the type it names."""

    path: Path
    run_id: str
    mode: str
    status: str
    created: str
    prompt: str
    params: dict
    model: dict
    step: int | float | None
    total: int | float | None
    started: str | None = None
    finished: str | None = None
    seed: int | None = None
    error: str | None = None
    parent_run_id: str | None = None
    it_s: float | None = None
    eta_s: float | None = None
    timing: dict = field(default_factory=dict)
    owner: dict | None = None
    legacy: bool = False
    output_image: str = OUTPUT
    legacy_inputs: tuple[str, ...] = ()
    details: dict = field(default_factory=dict)  # the checked object, unknown keys kept (for rewriting)

    @property
    def name(self) -> str:
        return self.path.name

    def as_details(self) -> dict:
        """The details with every known key in its one canonical shape (what indexes store)."""
        return {**self.details, "run_id": self.run_id, "mode": self.mode, "status": self.status,
                "created": self.created, "started": self.started, "finished": self.finished,
                "prompt": self.prompt, "params": self.params, "model": self.model, "seed": self.seed,
                "progress": {"step": self.step, "total": self.total}, "it_s": self.it_s,
                "eta_s": self.eta_s, "timing": self.timing, "error": self.error,
                "parent_run_id": self.parent_run_id, "owner": self.owner, "legacy": self.legacy,
                "output_image": self.output_image, "legacy_inputs": list(self.legacy_inputs)}


def read_record(path: Path | str) -> RunRecord | None:
    """The checked record of a run folder; None (with a warning naming the folder) when it is not
    a readable run. Never raises for what is inside the folder."""
    path = Path(path)
    try:
        raw = _load_details(path)
        if raw is None:
            return None
        return record_from_details(path, raw)
    except MalformedRun as exc:
        log.warning("Skipping %s: %s", path, exc)
        return None


def read_details(path: Path) -> dict | None:
    """The checked details of a run folder as a dict, every known key in its canonical shape
    (unknown keys kept); None when it is not a readable run."""
    record = read_record(path)
    return None if record is None else record.as_details()


def _load_details(path: Path) -> dict | None:
    """details.json parsed: a regular file (no symlink), at most MAX_DETAILS_BYTES, UTF-8, no NaN,
    nested at most MAX_DEPTH deep, holding an object. None when the folder has no details.json."""
    if os.path.islink(path):
        raise MalformedRun("the run folder is a symbolic link, which is not followed")
    data = _read_regular(path / DETAILS, MAX_DETAILS_BYTES)
    if data is None:
        data = _legacy_details_txt(path)
        if data is None:
            return None
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise MalformedRun("details.json is nested too deeply") from None
    except UnicodeDecodeError:
        raise MalformedRun("details.json is not UTF-8 text") from None
    except ValueError as exc:
        raw = _salvaged_legacy(path, data)
        if raw is None:
            raise MalformedRun(f"details.json is unreadable: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise MalformedRun(f"details.json holds a {type(raw).__name__}, not an object")
    if not _depth_at_most(raw, MAX_DEPTH):
        raise MalformedRun(f"details.json is nested more than {MAX_DEPTH} levels deep")
    return raw


def _read_regular(path: Path, limit: int) -> bytes | None:
    """The bytes of a regular file that is not a symlink, if no larger than ``limit``; None if absent."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not hang
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise MalformedRun(f"{path.name} is a symbolic link, which is not followed") from None
        raise MalformedRun(f"{path.name} cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise MalformedRun(f"{path.name} is not a regular file")
        if info.st_size > limit:
            raise MalformedRun(f"{path.name} is {info.st_size / 1e6:.0f} MB, more than the "
                               f"{limit // 1_000_000} MB a run's details can be")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise MalformedRun(f"{path.name} is larger than the {limit // 1_000_000} MB a run's details can be")
    return data


def _refuse_constant(name: str):
    raise ValueError(f"it holds {name}, which JSON does not allow")


def _depth_at_most(value, limit: int) -> bool:
    """True when ``value`` nests no deeper than ``limit`` (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


def record_from_details(path: Path | str, raw: dict) -> RunRecord:
    """The one place a details object becomes a record: every key the code reads is type-checked
    (MalformedRun names the first that is wrong); legacy folders are mapped first."""
    path = Path(path)
    if "schema" not in raw:
        raw = _from_legacy(path, raw)
    for key, types in _FIELD_TYPES.items():
        value = raw.get(key)
        if value is not None and not _is_instance(value, types):
            raise MalformedRun(f"details.json has {key!r} as {_json_type(value)}, "
                               f"not {' or '.join(_json_type_name(t) for t in types)}")
    progress = raw.get("progress") or {}
    step, total = (_number_or_fail(progress, k, "progress") for k in ("step", "total"))
    timing = {str(k): _number_or_fail(raw.get("timing") or {}, k, "timing") for k in raw.get("timing") or {}}
    model = raw.get("model") or {}
    run_id = raw.get("run_id") or path.name.split("-", 1)[-1]
    if "/" in run_id or "\x00" in run_id or len(run_id) > 200:
        raise MalformedRun(f"details.json has a run_id that is not a name ({run_id[:40]!r})")
    return RunRecord(
        path=path, run_id=run_id, mode=raw.get("mode") or "", status=raw.get("status") or "",
        created=raw.get("created") or "", prompt=raw.get("prompt") or "", params=raw.get("params") or {},
        model=model if isinstance(model, dict) else {"name": model}, step=step, total=total,
        started=raw.get("started"), finished=raw.get("finished"), seed=raw.get("seed"),
        error=raw.get("error"), parent_run_id=raw.get("parent_run_id"), it_s=raw.get("it_s"),
        eta_s=raw.get("eta_s"), timing=timing, owner=_checked_owner(raw.get("owner")),
        legacy=bool(raw.get("legacy")), output_image=_image_name(raw),
        legacy_inputs=tuple(_legacy_input_names(raw)), details=raw)


def _is_instance(value, types: tuple) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is not a number
    return isinstance(value, types)


def _json_type(value) -> str:
    name = _json_type_name(type(value))
    return name if name == "text" else ("an " if name[0] in "aeiou" else "a ") + name


def _json_type_name(kind: type) -> str:
    return {dict: "object", list: "list", str: "text", int: "integer", float: "number",
            bool: "true/false"}.get(kind, kind.__name__)


def _number_or_fail(mapping: dict, key: str, where: str):
    value = mapping.get(key)
    if value is not None and not _is_instance(value, _NUMBER):
        raise MalformedRun(f"details.json has {where}.{key} as {_json_type(value)}, not a number")
    return value


def _checked_owner(owner: dict | None) -> dict | None:
    if owner is None:
        return None
    host, pid, start = owner.get("host"), owner.get("pid"), owner.get("start")
    if not (isinstance(host, str) and _is_instance(pid, (int,)) and 0 < pid <= MAX_PID
            and (start is None or isinstance(start, str))):
        raise MalformedRun("details.json has an 'owner' that is not {host, pid, start}")
    return {"host": host, "pid": pid, "start": start}


def _image_name(raw: dict) -> str:
    """Only the legacy names can be a run's image: a name from the file never points elsewhere."""
    name = raw.get("output_image")
    return name if raw.get("legacy") and name in _LEGACY_IMAGES else OUTPUT


def _legacy_input_names(raw: dict) -> list[str]:
    if not raw.get("legacy"):
        return []
    names = raw.get("legacy_inputs") or []
    return [n for n in names if isinstance(n, str) and "/" not in n and not n.startswith(".")]


def is_regular_file(path: Path) -> bool:
    """A regular file, not a symlink to one."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


# The original vqgan-clip-app (github.com/tnwei/vqgan-clip-app, 2021-22) named its folders by a
# local time, "20210808T101500" until 2021-09-20 and "20210920T101500-<run_id>" after (the run id
# is URL-safe base64, so it may hold "-" and "_"). Its details.json grew over its history: see
# tests/legacy_app_layouts.py for every shape it wrote.
_LEGACY_NAME = re.compile(r"(\d{8}T\d{6})(?:-(.+))?")
_LEGACY_TIME = "%Y%m%dT%H%M%S"
LEGACY_GUIDED = "guided-diffusion"  # its diffusion_app.py: CLIP-guided diffusion, no engine here


def _legacy_image(path: Path) -> str | None:
    return next((name for name in _LEGACY_IMAGES if is_regular_file(path / name)), None)


def _legacy_details_txt(path: Path) -> bytes | None:
    """details.txt: what its first versions wrote for a run stopped early (a finished one got
    details.json). Read only beside an original-app image, so no other folder gains a second file."""
    if _legacy_image(path) is None:
        return None
    return _read_regular(path / "details.txt", MAX_DETAILS_BYTES)


def _salvaged_legacy(path: Path, data: bytes) -> dict | None:
    """The keys before the cut in a details.json the original app left half written.

    Its version of 2021-09-25 passed datetimes to json.dump, which raised after writing every key
    up to ``"start_time": ``; the image and video were already saved. Only such a file beside an
    original-app image is read this way: a JSON object cut after a comma, closed again."""
    if _legacy_image(path) is None:
        return None
    text = data.decode("utf-8", errors="replace").rstrip()
    if not (text.startswith("{") and text.endswith(":") and ",\n" in text):
        return None
    try:
        raw = json.loads(text[:text.rindex(",\n")] + "\n}", parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict) or "schema" in raw:
        return None
    log.info("Reading %s: its details.json was cut short when written; showing the keys before the cut", path)
    return raw


def _from_legacy(path: Path, raw: dict) -> dict:
    """Map a folder written by the original vqgan-clip-app onto the current schema."""
    image = _legacy_image(path)
    if image is None:
        raise MalformedRun("legacy run without an output image")
    prompt = raw.get("text_input") or raw.get("prompt") or ""
    if not isinstance(prompt, str):
        raise MalformedRun(f"details.json has the prompt as {_json_type(prompt)}, not text")
    steps, planned = (_int_or_none(raw.get(k)) for k in ("num_steps", "planned_num_steps"))
    started, finished = (_legacy_time(raw.get(k)) for k in ("start_time", "end_time"))
    inputs = sorted(entry.name for entry in os.scandir(path)
                    if entry.name.startswith(("init-image", "image-prompt"))
                    and entry.is_file(follow_symlinks=False))
    timing = {}
    if started and finished:  # whole seconds: that is all its times hold
        timing["generate_s"] = int((datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds())
    guided = "diffusion_method" in raw or ("ckpt" in raw and "vqgan_ckpt" not in raw)
    return {
        "schema": 0, "legacy": True, "run_id": _legacy_run_id(path, raw),
        "mode": LEGACY_GUIDED if guided else "vqgan", "status": _legacy_status(path, steps, planned),
        "created": _legacy_created(path, started), "started": started, "finished": finished,
        "prompt": prompt, "params": {k: v for k, v in raw.items() if k != "text_input"},
        "model": _legacy_model(raw, guided), "parent_run_id": _text_or_none(raw.get("prev_run_id")),
        "seed": _int_or_none(raw.get("seed")), "output_image": image, "timing": timing,
        "legacy_inputs": inputs,
        "progress": {"step": steps, "total": planned if planned and planned > 0 else steps},
    }


def _int_or_none(value) -> int | None:
    return value if _is_instance(value, (int,)) else None


def _text_or_none(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _legacy_run_id(path: Path, raw: dict) -> str:
    """Its recorded run_id (what a continued run names as prev_run_id), else the folder's."""
    recorded = _text_or_none(raw.get("run_id"))
    if recorded and "/" not in recorded:
        return recorded
    match = _LEGACY_NAME.fullmatch(path.name)
    return match.group(2) if match and match.group(2) else path.name


def _legacy_model(raw: dict, guided: bool) -> dict:
    """The models it recorded (none before 2021-09-05); unrecorded ones are left out, not shown as None."""
    if guided:
        found = {"diffusion": _text_or_none(raw.get("ckpt")) or _text_or_none(raw.get("diffusion_method"))}
    else:
        found = {"vqgan": _text_or_none(raw.get("vqgan_ckpt")) or _text_or_none(raw.get("model")),
                 "clip": _text_or_none(raw.get("clip_model"))}
    return {k: v for k, v in found.items() if v}


def _legacy_status(path: Path, steps: int | None, planned: int | None) -> str:
    """Stopped when it ended before its planned steps (-1: it ran until stopped) or wrote the
    stop path's details.txt; done otherwise."""
    if not is_regular_file(path / DETAILS) and is_regular_file(path / "details.txt"):
        return STOPPED
    if planned is not None and (planned < 0 or (steps is not None and steps < planned)):
        return STOPPED
    return DONE


def _legacy_time(value) -> str | None:
    """Its start_time/end_time ("20210926T101112", local time) as ISO 8601 with the offset."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, _LEGACY_TIME).astimezone().isoformat(timespec="seconds")
    except ValueError:
        return None


def _legacy_created(path: Path, started: str | None) -> str:
    """The time in the folder name (when the run started; before 2021-09-25, when it was saved),
    else its start_time, else the folder's modification time."""
    match = _LEGACY_NAME.match(path.name)
    if match:
        with contextlib.suppress(ValueError):
            return datetime.strptime(match.group(1), _LEGACY_TIME).astimezone().isoformat(timespec="seconds")
    if started:
        return started
    return datetime.fromtimestamp(path.stat().st_mtime).astimezone().isoformat(timespec="seconds")


def open_run(path: Path | str) -> Run:
    """Open an existing run folder for reading or updating (UserError saying why it cannot be)."""
    path = Path(path)
    try:
        raw = _load_details(path)
        record = None if raw is None else record_from_details(path, raw)
    except MalformedRun as exc:
        from .errors import UserError
        raise UserError(f"{path} cannot be read as a run folder: {exc}.") from None
    if record is None:
        from .errors import UserError
        raise UserError(f"{path} is not a run folder: it has no details.json.")
    return Run(path, record.as_details())


def output_image(path: Path, details: dict) -> Path | None:
    """The final image of a run, current or legacy layout (a regular file, never a symlink)."""
    name = _image_name(details)
    image = Path(path) / name
    return image if is_regular_file(image) else None


def iter_run_dirs(output_dir: Path | str) -> Iterator[Path]:
    """Run folders in ``output_dir``, newest first by name (names start with a timestamp).

    Symlinked folders are left out: they may point anywhere, and the folder name must be the run's.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return iter(())
    with os.scandir(output_dir) as scan:
        entries = [e for e in scan if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
    entries.sort(key=lambda e: e.name, reverse=True)
    return (Path(e.path) for e in entries)


def iter_records(output_dir: Path | str, newest: int | None = None) -> Iterator[RunRecord]:
    """Checked records of the readable runs among the newest ``newest`` folders, newest first;
    malformed folders are skipped with a warning naming them."""
    for path in itertools.islice(iter_run_dirs(output_dir), newest):
        record = read_record(path)
        if record is not None:
            yield record


def list_runs(output_dir: Path | str, limit: int | None = None) -> list[Run]:
    """Readable runs, newest first; broken folders are skipped with a log line."""
    found = itertools.islice(iter_records(output_dir), limit)
    return [Run(record.path, effective_status(record.as_details())) for record in found]


def effective_status(details: dict) -> dict:
    """Details with status 'interrupted' when a running run's process is gone (read-only)."""
    if details.get("status") in ACTIVE and not _owner_is_alive(details.get("owner")):
        return {**details, "status": INTERRUPTED}
    return details


def mark_interrupted_runs(output_dir: Path | str, newest: int | None = None) -> list[str]:
    """Mark runs left queued/running by a process that no longer exists; returns their ids.

    ``newest`` limits the look to the newest N folders (a quick check at each CLI start; the app's
    worker looks at all of them once).
    """
    marked = []
    for record in iter_records(output_dir, newest):
        if record.legacy or record.status not in ACTIVE or _owner_is_alive(record.owner):
            continue
        run = Run(record.path, record.details)
        run.update(status=INTERRUPTED, finished=record.finished or now_iso(),
                   error="The program running this run stopped before it finished.")
        marked.append(record.run_id)
        log.info("Marked %s as interrupted", record.name)
    return marked


MAX_METRICS_BYTES = 256 * 1024 * 1024  # ~2 million steps of a few losses each


def read_metrics(path: Path | str) -> list[dict]:
    """The per-step metrics of a run (empty when none were saved): JSON objects only, from a
    regular file (never through a symlink), up to MAX_METRICS_BYTES."""
    rows: list[dict] = []
    metrics = Path(path) / METRICS
    if not is_regular_file(metrics):
        return rows
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        handle = open(os.open(metrics, flags), encoding="utf-8", errors="replace")
    except OSError:
        return rows
    with handle:
        read = 0
        for line in handle:
            read += len(line)
            if read > MAX_METRICS_BYTES:
                log.warning("Reading only the first %d MB of %s", MAX_METRICS_BYTES >> 20, metrics)
                break
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line cut short by a crash, or not ours
            if isinstance(row, dict):
                rows.append(row)
    return rows


def find_run(output_dir: Path | str, run_id: str) -> Run | None:
    """The run with this id (folder names end with it), or None."""
    for path in iter_run_dirs(output_dir):
        if path.name == run_id or path.name.endswith("-" + run_id):
            record = read_record(path)
            if record is not None:
                return Run(path, effective_status(record.as_details()))
    return None


# --- Cheap listing for indexes (the gallery): names and times, no file contents -------------


def scan_run_dirs(output_dir: Path | str) -> dict[str, int]:
    """Run folder name -> folder modification time (ns), reading no file.

    A run's folder time changes whenever a file in it is created or replaced (details.json is
    replaced atomically at every checkpoint), so an index can re-read only the folders whose time
    changed. Hidden folders and symlinks (which may point outside ``output_dir``) are left out.
    """
    found: dict[str, int] = {}
    try:
        entries = os.scandir(output_dir)
    except (FileNotFoundError, NotADirectoryError):
        return found
    with entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                found[entry.name] = entry.stat(follow_symlinks=False).st_mtime_ns
            except OSError:
                continue  # removed while we looked
    return found


def list_inputs(path: Path | str, details: dict) -> list[str]:
    """The input files of a run (init image, image prompts), as paths relative to its folder."""
    path = Path(path)
    if details.get("legacy"):
        return _legacy_input_names(details)
    folder = path / INPUTS
    if os.path.islink(folder) or not folder.is_dir():
        return []  # a symlinked inputs/ could list any folder
    with os.scandir(folder) as scan:
        return sorted(f"{INPUTS}/{entry.name}" for entry in scan
                      if entry.is_file(follow_symlinks=False) and not entry.name.startswith("."))
