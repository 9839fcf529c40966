"""What the API's routes share: its settings, the queue it submits to, and run lookups.

Routes stay thin: they turn requests into ``submit`` calls and run folders into response models.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import queue, runs
from ..devices import resolve_device
from ..errors import UserError
from ..settings import assets_dir
from . import schemas
from .security import MAX_BODY_BYTES, confine_paths, decode_image_data

UPLOADS = ".uploads"   # in the output folder; an upload lives until its run has copied it into inputs/
WORKER_GRACE_S = 10.0
WORKER_READY = "ready"
RUN_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


@dataclass
class ApiConfig:
    """How ``python -m logic serve`` was started."""

    output_dir: Path
    device: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    api_key: str | None = None
    demo: bool = False          # A1111 requests use the demo model unless they name a checkpoint
    worker: bool = True         # this server also runs the queue
    max_body_bytes: int = MAX_BODY_BYTES


def start_worker(device: str, output_dir: Path) -> subprocess.Popen:
    """The queue's worker in its own process: generation (and the full garbage collection after
    each run) then never holds this server's interpreter, so requests are answered meanwhile.
    It exits when the server does (``--parent``)."""
    return subprocess.Popen([sys.executable, "-m", "logic", "worker", "--device", device, "--output", str(output_dir),
                             "--parent", str(os.getpid())], cwd=Path(__file__).resolve().parents[2],
                            stdout=subprocess.PIPE, text=True)


@dataclass
class ApiService:
    config: ApiConfig
    device: str = ""
    worker: subprocess.Popen | None = None   # `python -m logic worker`, started and stopped with the server
    options: dict = field(default_factory=dict)   # A1111 options set through /sdapi/v1/options
    _worker_ready: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.device = resolve_device(self.config.device)
        self.config.output_dir = Path(self.config.output_dir)
        self.config.output_dir.mkdir(parents=True, exist_ok=True)
        if self.config.worker:
            self.worker = start_worker(self.device, self.config.output_dir)
            threading.Thread(target=self._wait_for_worker, daemon=True).start()

    def _wait_for_worker(self) -> None:
        # The worker says "ready" once it handles SIGUSR1 (before that the signal would end it).
        for line in self.worker.stdout:
            if line.strip() == WORKER_READY:
                self._worker_ready.set()

    def close(self) -> None:
        """Stop the worker: it finishes its run if that is quick, else the run reads as interrupted."""
        if self.worker is None or self.worker.poll() is not None:
            return
        self.worker.terminate()
        try:
            self.worker.wait(WORKER_GRACE_S)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait()

    def wake(self) -> None:
        """Tell the worker a run was queued (else it sees it at its next look, within 0.2 s)."""
        if self._worker_ready.is_set() and self.worker.poll() is None:
            os.kill(self.worker.pid, signal.SIGUSR1)

    @property
    def worker_alive(self) -> bool:
        return self.worker is not None and self.worker.poll() is None

    # submitting -----------------------------------------------------------------------------------

    def submit(self, mode: str, params: dict, init_image: bytes | None = None, **extra) -> runs.Run:
        """Check and queue a run (UserError: one sentence); an init image is kept in the run's inputs/."""
        params = dict(params)
        confine_paths(params, self.roots())
        upload = self._store_upload(init_image) if init_image is not None else None
        try:
            if upload is not None:
                params["init_image"] = str(upload)
            run = queue.enqueue(mode, params, self.config.output_dir, **{"via": "api", **extra})
        finally:
            if upload is not None:
                upload.unlink(missing_ok=True)
        self.wake()
        return run

    def submit_b64(self, mode: str, params: dict, image_b64: str | None, **extra) -> runs.Run:
        data = decode_image_data(image_b64, "init image") if image_b64 else None
        return self.submit(mode, params, data, **extra)

    def _store_upload(self, data: bytes) -> Path:
        folder = self.config.output_dir / UPLOADS
        folder.mkdir(exist_ok=True)
        path = folder / f"{secrets.token_hex(8)}{_suffix(data)}"
        path.write_bytes(data)
        return path

    def roots(self) -> list[Path]:
        return [assets_dir(), self.config.output_dir]

    # reading ------------------------------------------------------------------------------------

    def run(self, run_id: str) -> runs.Run:
        if not run_id or len(run_id) > 64 or not set(run_id) <= RUN_ID_CHARS:
            raise LookupError(f"{run_id!r} is not a run id.")
        found = runs.find_run(self.config.output_dir, run_id)
        if found is None:
            raise LookupError(f"There is no run {run_id} in this server's output folder.")
        return found

    def queue_positions(self) -> dict[str, int]:
        return {e.run_id: i for i, e in enumerate(queue.entries(self.config.output_dir), 1)}

    def status(self, run: runs.Run, positions: dict[str, int] | None = None) -> schemas.RunStatus:
        d = runs.effective_status(run.details)
        progress = d.get("progress") or {}
        step, total = progress.get("step") or 0, progress.get("total")
        if positions is None and d.get("status") == runs.QUEUED:
            positions = self.queue_positions()
        base = f"/api/v1/runs/{run.run_id}"
        return schemas.RunStatus(
            run_id=run.run_id, folder=str(run.path), mode=d.get("mode", ""), status=d.get("status", ""),
            prompt=str(d.get("prompt") or ""), progress=schemas.RunProgress(step=step, total=total),
            fraction=(min(step / total, 1.0) if isinstance(total, int) and total > 0 else None),
            it_s=d.get("it_s"), eta_s=d.get("eta_s"), error=d.get("error"), created=d.get("created"),
            started=d.get("started"), finished=d.get("finished"),
            queue_position=(positions or {}).get(run.run_id),
            links=schemas.Links(status=base, preview=base + "/preview", image=base + "/image", stop=base + "/stop"))

    def current_run(self) -> runs.Run | None:
        """The run on this device now, whichever process runs it."""
        info = queue.DeviceLock(self.device).holder() or {}
        details = runs.read_details(Path(info["run_dir"])) if info.get("run_dir") else None
        return runs.Run(Path(info["run_dir"]), details) if details and details.get("status") == runs.RUNNING else None

    def queue_view(self) -> schemas.QueueView:
        positions = self.queue_positions()
        queued = []
        for entry in queue.entries(self.config.output_dir):
            details = runs.read_details(entry.path)
            if details:
                queued.append(self.status(runs.Run(entry.path, details), positions))
        current = self.current_run()
        return schemas.QueueView(running=self.status(current) if current else None, queued=queued)

    def wait_until_finished(self, run: runs.Run, poll: float = 0.02) -> runs.Run:
        """Block until the run ends (for A1111's synchronous txt2img/img2img)."""
        while True:
            details = runs.read_details(run.path)
            if details and runs.effective_status(details).get("status") in runs.FINISHED:
                return runs.Run(run.path, runs.effective_status(details))
            time.sleep(poll)


_MAGIC = {b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg", b"RIFF": ".webp", b"GIF8": ".gif"}


def _suffix(data: bytes) -> str:
    """A suffix from the file's first bytes, so the kept input has a name image tools recognise."""
    return next((suffix for magic, suffix in _MAGIC.items() if data.startswith(magic)), ".img")


def check_found(service: ApiService, run_id: str) -> runs.Run:
    """The run or an HTTP 404 with a sentence."""
    from fastapi import HTTPException

    try:
        return service.run(run_id)
    except LookupError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


def user_error_to_400(exc: UserError):
    from fastapi import HTTPException

    return HTTPException(status_code=400, detail=str(exc))
