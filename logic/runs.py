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
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import socket
import string
import tempfile
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
STOP_REQUEST = "stop-request"   # present: whoever runs this run stops after the current step

QUEUED, RUNNING, DONE, STOPPED, FAILED, INTERRUPTED = (
    "queued", "running", "done", "stopped", "failed", "interrupted")
ACTIVE = (QUEUED, RUNNING)
FINISHED = (DONE, STOPPED, FAILED, INTERRUPTED)
STATUSES = ACTIVE + FINISHED

_ID_ALPHABET = string.ascii_letters + string.digits
_LEGACY_IMAGES = ("output.PNG", "output.png", "output.jpg", "output.JPEG")


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def new_run_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run folders are meant to be shared and served
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    if not owner or owner.get("host") != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
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
    def inputs_dir(self) -> Path:
        folder = self.path / INPUTS
        folder.mkdir(exist_ok=True)
        return folder

    def update(self, **changes: Any) -> None:
        self.details.update(changes)
        write_json_atomic(self.path / DETAILS, self.details)

    def append_metrics(self, rows: list[dict]) -> None:
        if not rows:
            return
        with open(self.path / METRICS, "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)


def create_run(output_dir: Path | str, mode: str, params: dict, **extra: Any) -> Run:
    """Make ``<output_dir>/<timestamp>-<run_id>/`` with a queued details.json."""
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
        "prompt": params.get("prompt", ""), "params": params,
        "progress": {"step": 0, "total": params.get("steps")}, "error": None,
        "owner": _process_token(), **extra,
    }
    run = Run(path, details)
    run.update()
    return run


def read_details(path: Path) -> dict | None:
    """The details of a run folder, normalised; None when it is not a readable run."""
    path = Path(path)
    try:
        raw = json.loads((path / DETAILS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("Skipping %s: details.json is unreadable (%s)", path, exc)
        return None
    if not isinstance(raw, dict):
        log.warning("Skipping %s: details.json is not an object", path)
        return None
    if "schema" not in raw:
        return _from_legacy(path, raw)
    return raw


def _from_legacy(path: Path, raw: dict) -> dict | None:
    """Map a folder written by the original vqgan-clip-app onto the current schema."""
    image = next((name for name in _LEGACY_IMAGES if (path / name).is_file()), None)
    if image is None:
        log.warning("Skipping %s: legacy run without an output image", path)
        return None
    prompt = raw.get("text_input") or raw.get("prompt") or ""
    stamp = path.name.split("_")[0]
    inputs = sorted(p.name for p in path.iterdir()
                    if p.name.startswith(("init-image", "image-prompt")))
    return {
        "schema": 0, "legacy": True, "run_id": path.name, "mode": "vqgan",
        "status": DONE, "created": _legacy_created(stamp, path), "prompt": prompt,
        "params": {k: v for k, v in raw.items() if k != "text_input"},
        "model": {"vqgan": raw.get("model"), "clip": raw.get("clip_model")},
        "seed": raw.get("seed"), "output_image": image,
        "legacy_inputs": inputs, "progress": {"step": raw.get("num_steps"), "total": raw.get("num_steps")},
    }


def _legacy_created(stamp: str, path: Path) -> str:
    for fmt in ("%Y%m%dT%H%M%S", "%Y%m%dT%H%M%S%f"):
        try:
            return datetime.strptime(stamp, fmt).astimezone().isoformat(timespec="seconds")
        except ValueError:
            continue
    return datetime.fromtimestamp(path.stat().st_mtime).astimezone().isoformat(timespec="seconds")


def open_run(path: Path | str) -> Run:
    """Open an existing run folder for reading or updating."""
    path = Path(path)
    details = read_details(path)
    if details is None:
        from .errors import UserError
        raise UserError(f"{path} is not a run folder: it has no readable details.json.")
    return Run(path, details)


def output_image(path: Path, details: dict) -> Path | None:
    """The final image of a run, current or legacy layout."""
    name = details.get("output_image") or OUTPUT
    image = Path(path) / name
    return image if image.is_file() else None


def iter_run_dirs(output_dir: Path | str) -> Iterator[Path]:
    """Run folders in ``output_dir``, newest first by name (names start with a timestamp)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return iter(())
    entries = [e for e in os.scandir(output_dir) if e.is_dir() and not e.name.startswith(".")]
    entries.sort(key=lambda e: e.name, reverse=True)
    return (Path(e.path) for e in entries)


def list_runs(output_dir: Path | str, limit: int | None = None) -> list[Run]:
    """Readable runs, newest first; broken folders are skipped with a log line."""
    runs: list[Run] = []
    for path in iter_run_dirs(output_dir):
        details = read_details(path)
        if details is None:
            continue
        runs.append(Run(path, effective_status(details)))
        if limit is not None and len(runs) >= limit:
            break
    return runs


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
    for path in itertools.islice(iter_run_dirs(output_dir), newest):
        details = read_details(path)
        if not details or details.get("legacy") or details.get("status") not in ACTIVE:
            continue
        if _owner_is_alive(details.get("owner")):
            continue
        run = Run(path, details)
        run.update(status=INTERRUPTED, finished=run.details.get("finished") or now_iso(),
                   error="The program running this run stopped before it finished.")
        marked.append(run.run_id)
        log.info("Marked %s as interrupted", path.name)
    return marked


def read_metrics(path: Path | str) -> list[dict]:
    """The per-step metrics of a run (empty when none were saved)."""
    rows = []
    try:
        with open(Path(path) / METRICS, encoding="utf-8") as handle:
            for line in handle:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue  # a line cut short by a crash
    except FileNotFoundError:
        pass
    return rows


def find_run(output_dir: Path | str, run_id: str) -> Run | None:
    """The run with this id (folder names end with it), or None."""
    for path in iter_run_dirs(output_dir):
        if path.name == run_id or path.name.endswith("-" + run_id):
            details = read_details(path)
            if details is not None:
                return Run(path, effective_status(details))
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
        return list(details.get("legacy_inputs") or [])
    folder = path / INPUTS
    if not folder.is_dir():
        return []
    return sorted(f"{INPUTS}/{p.name}" for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith("."))
