"""The persistent queue shared by every front end, and the worker that runs it.

The queue lives on disk, so it survives any process and every process sees the same one:

- A queued run is a run folder with status ``queued``: its details.json holds the request and the
  checked spec, so nothing else is needed to run it. Queued runs have no owner (``owner: null``)
  until a worker claims them; a claimed run belongs to the claiming process like any running run.
- ``<output>/.queue/<folder name>`` is the index entry of a queued run. Its modification time is
  its place in the order (moving a run to the front re-times it), so a worker lists one small
  folder, not every details.json. ``rebuild_index`` restores it from the run folders.
- Claiming is unlinking that entry: exactly one process succeeds, so no run is taken twice.
- One process runs models on a device at a time: ``DeviceLock`` is an ``fcntl.flock`` on
  ``<locks>/<device>.lock`` (the kernel drops it when the holder dies), held while a run runs;
  the holder writes which run it runs beside it, so others can say what they wait for.
- Stop goes through the folder: a ``stop-request`` file the runner checks every step
  (``jobs.stop_requested``), so any process can stop any run.

An entry whose ``held_by`` names a process is a CLI run waiting in the foreground for the device:
workers leave it to that process (which prints its progress), and clear it if that process died.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import jobs, runs
from .devices import resolve_device
from .engines import get_engine
from .errors import UserError

log = logging.getLogger(__name__)

QUEUE_DIR = ".queue"
POLL_S = 0.2           # how often an idle worker looks at the queue (a listing of one small folder)
PREVIEW_NAMES = (runs.PREVIEW, runs.OUTPUT)


# --- The index of queued runs -------------------------------------------------------------------

@dataclass
class Entry:
    """One queued run as the index sees it."""

    path: Path            # the run folder
    order_ns: int         # smaller runs first
    held_by: dict | None  # a foreground CLI process waiting for the device, or None

    @property
    def run_id(self) -> str:
        return self.path.name.split("-", 1)[-1]


def queue_dir(output_dir: Path | str) -> Path:
    return Path(output_dir) / QUEUE_DIR


def _entry_file(run_path: Path) -> Path:
    return queue_dir(run_path.parent) / run_path.name


def _write_entry(run_path: Path, held_by: dict | None, order_ns: int | None = None) -> None:
    """Create the index entry atomically (a reader never sees half of one)."""
    folder = queue_dir(run_path.parent)
    folder.mkdir(exist_ok=True)
    tmp = folder / f".tmp-{os.getpid()}-{threading.get_ident()}-{run_path.name}"
    tmp.write_text(json.dumps({"held_by": held_by}), encoding="utf-8")
    if order_ns is not None:
        os.utime(tmp, ns=(order_ns, order_ns))
    os.replace(tmp, folder / run_path.name)


def entries(output_dir: Path | str) -> list[Entry]:
    """The queued runs in the order they will run."""
    folder = queue_dir(output_dir)
    found = []
    try:
        scan = os.scandir(folder)
    except FileNotFoundError:
        return []
    with scan:
        for item in scan:
            if item.name.startswith("."):
                continue
            try:
                order = item.stat().st_mtime_ns
                held = json.loads(Path(item.path).read_text(encoding="utf-8") or "{}").get("held_by")
            except (OSError, ValueError):
                continue  # claimed (removed) while we looked
            found.append(Entry(Path(output_dir) / item.name, order, held))
    found.sort(key=lambda e: (e.order_ns, e.path.name))
    return found


def claim(entry_path: Path) -> bool:
    """Take a queued run out of the index; True for the one process that got it."""
    try:
        os.unlink(_entry_file(entry_path))
        return True
    except FileNotFoundError:
        return False


def rebuild_index(output_dir: Path | str) -> list[str]:
    """Index entries for queued, ownerless run folders that lack one (a process died between making
    the folder and its entry); returns their ids. Looks at every folder: run at worker start."""
    added = []
    for path in runs.iter_run_dirs(output_dir):
        details = runs.read_details(path)
        if details and details.get("status") == runs.QUEUED and details.get("owner") is None \
                and not _entry_file(path).exists():
            _write_entry(path, None)
            added.append(path.name)
    return added


# --- Submitting and controlling runs --------------------------------------------------------------

def enqueue(mode: str, params: dict, output_dir: Path | str, *, held_by: dict | None = None,
            **extra: Any) -> runs.Run:
    """Check the request (UserError, no folder made), create the queued run folder and index it.

    Files the person gave are copied into the run's inputs/ now, so a worker in another process (or
    folder) finds them; ``request`` keeps what was asked as given.
    """
    engine, spec, run = jobs.submit_run(mode, params, output_dir, owner=held_by, request=params, **extra)
    jobs.keep_inputs(engine, spec, run)
    _write_entry(run.path, held_by)
    return run


def find(output_dir: Path | str, run: str) -> runs.Run:
    """A run by id or folder path, or a UserError saying it was not found."""
    path = Path(run)
    if path.is_dir() and (path / runs.DETAILS).is_file():
        return runs.open_run(path)
    found = runs.find_run(output_dir, run)
    if found is None:
        raise UserError(f"No run {run!r} in {output_dir}: give a run id or a run folder.")
    return found


def request_stop(run: runs.Run) -> str:
    """Stop a run from any process: a queued one is taken out of the queue (status stopped), a
    running one stops after its current step. Returns the status the run has or will have."""
    if run.status in runs.FINISHED:
        return run.status
    run.file(runs.STOP_REQUEST).touch()
    if run.status == runs.QUEUED and claim(run.path):
        run.update(status=runs.STOPPED, finished=runs.now_iso(), error=None)
        log.info("Removed %s from the queue", run.path.name)
    return runs.STOPPED


def move_to_front(run: runs.Run) -> None:
    """Put a queued run first in the queue."""
    queued = entries(run.path.parent)
    if not any(e.path == run.path for e in queued):
        raise UserError(f"The run {run.run_id} is not waiting in the queue (it is {run.status}).")
    first = min(e.order_ns for e in queued)
    try:
        os.utime(_entry_file(run.path), ns=(first - 1, first - 1))
    except FileNotFoundError:
        raise UserError(f"The run {run.run_id} has just started: it is no longer in the queue.") from None


def requeue(run: runs.Run) -> None:
    """Queue an interrupted (or failed/stopped) run again, in the same folder, at the back."""
    if run.status not in (runs.INTERRUPTED, runs.FAILED, runs.STOPPED):
        raise UserError(f"The run {run.run_id} is {run.status}: only an interrupted, failed or stopped run can be "
                        "queued again (`python -m logic rerun` makes a new run from any run).")
    for name in (runs.STOP_REQUEST, runs.PREVIEW, runs.METRICS, runs.ANIM):
        run.file(name).unlink(missing_ok=True)
    run.update(status=runs.QUEUED, owner=None, started=None, finished=None, error=None,
               progress={"step": 0, "total": runs.resolved_of(run.details).get("steps")})
    _write_entry(run.path, None)


# --- One worker per device ----------------------------------------------------------------------

def device_name(device: str) -> str:
    """The lock name of a device ('cuda' is 'cuda:0': the same GPU must get the same lock)."""
    device = resolve_device(device)
    return "cuda:0" if device == "cuda" else device


class DeviceLock:
    """An exclusive ``fcntl.flock`` per device, shared by every process on this machine."""

    def __init__(self, device: str):
        from .settings import locks_dir

        self.device = device_name(device)
        folder = locks_dir()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_uid != os.getuid():  # in a shared /tmp someone else could have made it first
            raise UserError(f"The lock folder {folder} belongs to another user: set ATELIER_LOCKS to a folder of yours.")
        self.path = folder / (self.device.replace(":", "-") + ".lock")
        self.info_path = self.path.with_suffix(".json")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        self._fd = fd
        return True

    def announce(self, run: runs.Run | None) -> None:
        """Say which run the holder runs (read by those waiting, and by the app and the API)."""
        info = {"owner": runs.process_token()}
        if run is not None:
            info.update(run_dir=str(run.path), run_id=run.run_id)
        runs.write_json_atomic(self.info_path, info)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.info_path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> dict | None:
        """What the holder announced, or None when the device is free."""
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if self._fd is None and not runs.owner_is_alive(info.get("owner")):
            return None  # an announcement left behind by a killed holder
        return info


def run_claimed(run: runs.Run, device: str, cache: jobs.ModelCache, state: jobs.JobState | None = None,
                lock: DeviceLock | None = None) -> jobs.JobState:
    """Run a claimed queued run while holding the device lock (``execute_run`` records in
    ``device_time`` when it had the device)."""
    state = state or jobs.new_state(run)
    run.update(owner=runs.process_token())
    if lock is not None:
        lock.announce(run)
    if jobs.stop_requested(run):
        run.update(status=runs.STOPPED, finished=runs.now_iso())
        state.status = runs.STOPPED
        return state
    try:
        engine = get_engine(run.details["mode"])
        spec = engine.build_spec(runs.rerun_request(run))  # what was asked, seed and inputs pinned
    except UserError as exc:  # e.g. a model removed since the run was queued
        run.update(status=runs.FAILED, error=str(exc), finished=runs.now_iso())
        state.status, state.error = runs.FAILED, str(exc)
        return state
    jobs.execute_run(engine, spec, run, device=device, cache=cache, state=state)
    return state


class Worker:
    """Runs the shared queue of one output folder on one device, in a background thread.

    Any number of processes may run one (the app, the API server, ``python -m logic worker``): the
    device lock makes sure only one of them runs a model at a time, and claiming makes sure each
    run runs once. Front ends ask it for the queue and the running run, wherever they run.
    """

    def __init__(self, device: str | None, output_dir: Path | str, *, start: bool = True):
        self.device = resolve_device(device)
        self.output_dir = Path(output_dir)
        self.cache = jobs.ModelCache()
        self.lock = DeviceLock(self.device)
        self._states: dict[str, jobs.JobState] = {}
        self._paths: dict[str, Path] = {}
        self._order: list[str] = []
        self._wake = threading.Event()
        self._closed = threading.Event()
        self.on_idle: Callable[[], None] | None = None
        runs.mark_interrupted_runs(self.output_dir)
        clear_orphaned_entries(self.output_dir)
        rebuild_index(self.output_dir)
        self._thread = threading.Thread(target=self._loop, name=f"atelier-worker-{self.device}", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        self._thread.start()

    # front ends -----------------------------------------------------------------------------------

    def submit(self, mode: str, params: dict, **extra: Any) -> jobs.JobState:
        run = enqueue(mode, params, self.output_dir, **extra)
        state = jobs.new_state(run)
        self._remember(run, state)
        self.wake()
        return state

    def wake(self) -> None:
        """Look at the queue now (a run was just queued) rather than at the next poll."""
        self._wake.set()

    def stop(self, run_id: str) -> None:
        """Stop a running run or take a queued one out of the queue, whichever process has it."""
        state = self._states.get(run_id)
        if state is not None and state.status == runs.RUNNING:
            state.stop_event.set()
        run = self._open(run_id)
        if run is not None:
            status = request_stop(run)
            if state is not None and state.status == runs.QUEUED:
                state.status = status

    def move_to_front(self, run_id: str) -> None:
        run = self._open(run_id)
        if run is not None:
            move_to_front(run)

    def state(self, run_id: str) -> jobs.JobState | None:
        """This process's live state of a run it runs, else the run as its folder shows it."""
        state = self._states.get(run_id)
        if state is not None and state.status == runs.RUNNING:
            return state
        run = self._open(run_id)
        if run is None:
            return state
        if state is not None:
            refresh_state(state, run)
            return state
        return state_from_disk(run)

    def current(self) -> jobs.JobState | None:
        """The run running on this device now, from any process (None when idle)."""
        mine = next((s for s in self._states.values() if s.status == runs.RUNNING), None)
        if mine is not None:
            return mine
        info = self.lock.holder()
        if not info or not info.get("run_dir"):
            return None
        details = runs.read_details(Path(info["run_dir"]))
        if not details or details.get("status") != runs.RUNNING:
            return None
        return state_from_disk(runs.Run(Path(info["run_dir"]), details))

    def queued(self) -> list[jobs.JobState]:
        """The whole queue of this output folder, whoever submitted each run, in order."""
        found = []
        for entry in entries(self.output_dir):
            details = runs.read_details(entry.path)
            if details and details.get("status") == runs.QUEUED:
                found.append(state_from_disk(runs.Run(entry.path, details)))
        return found

    def recent(self, limit: int = 10) -> list[jobs.JobState]:
        return [self.state(i) for i in reversed(self._order[-limit:])]

    def release_models(self) -> None:
        self.cache.release()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self, timeout: float | None = None) -> None:
        """Stop taking runs (the running one finishes first)."""
        self._closed.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # the loop -----------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._closed.is_set():
            try:
                ran = self._run_next()
            except Exception:  # noqa: BLE001 - the worker must survive anything to run the next job
                log.exception("The queue worker hit an error; it goes on with the next run")
                ran = False
            if ran and any(e.held_by for e in entries(self.output_dir)):
                # A foreground CLI waits for the device: give it a chance at the lock (it polls).
                self._closed.wait(2 * POLL_S)
            if not ran:
                if self.on_idle is not None:
                    self.on_idle()
                self._wake.wait(POLL_S)
                self._wake.clear()

    def _run_next(self) -> bool:
        """Run the first claimable queued run if the device is free; False when there was none."""
        waiting = [e for e in entries(self.output_dir) if e.held_by is None]
        if not waiting or not self.lock.try_acquire():
            return False
        try:
            for entry in waiting:
                if claim(entry.path):
                    self._run(runs.open_run(entry.path))
                    return True
            return False
        finally:
            self.lock.release()

    def _run(self, run: runs.Run) -> None:
        state = self._states.get(run.run_id) or jobs.new_state(run)
        self._remember(run, state)
        try:
            run_claimed(run, self.device, self.cache, state, self.lock)
        except Exception:  # noqa: BLE001
            log.exception("Worker could not save run %s", run.run_id)
            state.status, state.error = runs.FAILED, "The run could not be saved; the log has the details."

    def _remember(self, run: runs.Run, state: jobs.JobState) -> None:
        if run.run_id not in self._states:
            self._order.append(run.run_id)
        self._states[run.run_id] = state
        self._paths[run.run_id] = run.path

    def _open(self, run_id: str) -> runs.Run | None:
        path = self._paths.get(run_id)
        if path is not None:
            details = runs.read_details(path)
            return runs.Run(path, runs.effective_status(details)) if details else None
        found = runs.find_run(self.output_dir, run_id)
        if found is not None:
            self._paths[run_id] = found.path
        return found


def clear_orphaned_entries(output_dir: Path | str) -> list[str]:
    """Entries held by a foreground CLI that died while waiting: its run reads as interrupted
    (its owner is gone) and leaves the queue."""
    cleared = []
    for entry in entries(output_dir):
        if entry.held_by and not runs.owner_is_alive(entry.held_by) and claim(entry.path):
            run = runs.open_run(entry.path)
            run.update(status=runs.INTERRUPTED, finished=runs.now_iso(),
                       error="The program running this run stopped before it finished.")
            cleared.append(run.run_id)
    return cleared


def running_runs(output_dir: Path | str) -> list[tuple[str, runs.Run]]:
    """(device, run) for each device lock whose holder runs a run of ``output_dir`` now."""
    from .settings import locks_dir

    found = []
    for info_path in sorted(locks_dir().glob("*.json")):
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        path = Path(info.get("run_dir") or "")
        if not runs.owner_is_alive(info.get("owner")) or path.parent.resolve() != Path(output_dir).resolve():
            continue
        details = runs.read_details(path)
        if details and details.get("status") == runs.RUNNING:
            found.append((info_path.stem, runs.Run(path, details)))
    return found


# --- Reading a run someone else runs -------------------------------------------------------------

def state_from_disk(run: runs.Run) -> jobs.JobState:
    """A JobState as the run's folder shows it (details.json + preview.jpg), for runs of other processes."""
    state = jobs.new_state(run)
    refresh_state(state, run)
    return state


def refresh_state(state: jobs.JobState, run: runs.Run) -> None:
    d = runs.effective_status(run.details)
    progress = d.get("progress") or {}
    state.status = d.get("status", state.status)
    state.step, state.total = progress.get("step") or 0, progress.get("total") or 0
    state.it_s, state.eta_s, state.error = d.get("it_s"), d.get("eta_s"), d.get("error")
    state.params = runs.request_of(d) or state.params  # as new_state has it: what was asked
    image = latest_image(run.path)
    if image is not None:
        from PIL import Image

        try:
            with Image.open(image) as opened:
                state.preview = opened.convert("RGB")
        except OSError:
            pass  # replaced while we read it; the next poll gets it


def latest_image(run_path: Path) -> Path | None:
    """The newest picture of a run: the live preview while it runs, then the final image."""
    for name in PREVIEW_NAMES:
        if (run_path / name).is_file():
            return run_path / name
    return None


# --- The CLI in the foreground --------------------------------------------------------------------

def wait_for_device(run: runs.Run, lock: DeviceLock, say: Callable[[str], None],
                    stop: threading.Event) -> bool:
    """Block until this process holds the device lock and its own run is claimed; False when the
    run was stopped while it waited. Says once per different run what it waits for."""
    said = None
    while True:
        if stop.is_set() or jobs.stop_requested(run):
            if claim(run.path):
                run.update(status=runs.STOPPED, finished=runs.now_iso())
            return False
        if lock.try_acquire():
            if claim(run.path):
                return True
            lock.release()
            return False  # someone took it out of the queue (stopped)
        holder = (lock.holder() or {}).get("run_id") or "another program"
        if holder != said:
            say(f"Waiting for the run {holder} to finish (device {lock.device})…")
            said = holder
        time.sleep(POLL_S)


_workers: dict[tuple[str, str], Worker] = {}
_workers_lock = threading.Lock()


def get_worker(device: str | None = None, output_dir: Path | str | None = None) -> Worker:
    """The process-wide worker for a device and output folder (created on first use, and again
    after it was closed: a closed worker takes no runs, so handing it out would leave them queued)."""
    from .settings import defaults, output_dir as default_output

    device = resolve_device(device or defaults().get("device"))
    key = (device, str(Path(output_dir or default_output()).resolve()))
    with _workers_lock:
        if key not in _workers or _workers[key].closed:
            _workers[key] = Worker(device, key[1])
        return _workers[key]
