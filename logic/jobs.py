"""Running engines: one lifecycle for every run, and a model cache (the queue and its workers: logic.queue).

``execute_run`` is the whole life of a run (load, prepare, iterate, save) and is shared by the CLI
(in the foreground) and every queue worker (``logic.queue``: the app, the API server,
``python -m logic worker``). Whatever happens — done, stopped, failed — the run is saved through
``_finish``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from . import media, runs
from .devices import free_memory, resolve_device
from .engines import get_engine
from .engines.base import Progress, Result, RunContext
from .errors import UserError, describe_failure, is_disk_full, is_out_of_memory

log = logging.getLogger(__name__)

CHECKPOINT_EVERY_S = 2.0     # details.json + metrics flush
PREVIEW_EVERY_S = 0.5        # preview.jpg on disk (the UI gets every preview in memory)
LOSS_HISTORY = 2000          # points kept in memory for the live loss curve


@dataclass
class JobState:
    """What a front end shows about a run; updated by the thread that runs it."""

    run_id: str
    run_dir: Path
    mode: str
    status: str = runs.QUEUED
    step: int = 0
    total: int = 0
    it_s: float | None = None
    eta_s: float | None = None
    message: str = ""
    error: str | None = None
    preview: Image.Image | None = None
    loss_history: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LOSS_HISTORY))
    stop_event: threading.Event = field(default_factory=threading.Event)
    params: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in runs.FINISHED


class ModelCache:
    """Keeps the last loaded models; a different key releases them before loading the new ones."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._models: Any = None
        self._lock = threading.Lock()

    def get(self, key: tuple, load: Callable[[], Any]) -> tuple[Any, bool]:
        """The models for ``key`` and whether they were loaded now (False: reused)."""
        with self._lock:
            if self._key == key and self._models is not None:
                return self._models, False
            self.release()
            self._models = load()
            self._key = key
            return self._models, True

    def release(self) -> None:
        self._models, self._key = None, None
        free_memory()


class _Speedometer:
    """Step timing: recent it/s, ETA, and the median step for details.json."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._last = time.perf_counter()

    def tick(self) -> None:
        now = time.perf_counter()
        self.durations.append(now - self._last)
        self._last = now

    def it_s(self) -> float | None:
        recent = self.durations[-20:]
        return len(recent) / sum(recent) if recent and sum(recent) > 0 else None

    def eta_s(self, step: int, total: int) -> float | None:
        rate = self.it_s()
        return (total - step) / rate if rate and total > 0 else None

    def median(self) -> float | None:
        return statistics.median(self.durations) if self.durations else None


class _RunRecorder:
    """Turns progress events into the run folder's files: previews, video frames, metrics, checkpoints."""

    def __init__(self, run: runs.Run, state: JobState, fps: float):
        self.run, self.state = run, state
        self.video = media.FrameWriter(run.file(runs.ANIM), fps=fps)
        self.speed = _Speedometer()
        self.last_image: Image.Image | None = None
        self._metrics: list[dict] = []
        self._last_checkpoint = self._last_preview = 0.0

    def record(self, event: Progress) -> None:
        self.speed.tick()
        if stop_requested(self.run):  # a stop asked through the folder (CLI, API, another app)
            self.state.stop_event.set()
        state = self.state
        state.step, state.total = event.step, event.total
        state.it_s, state.eta_s = self.speed.it_s(), self.speed.eta_s(event.step, event.total)
        if event.message:
            state.message = event.message
        if event.metrics:
            row = {"step": event.step, **event.metrics}
            self._metrics.append(row)
            state.loss_history.append(row)
        if event.image is not None:
            self._show(event.image, event.frame)
        if time.monotonic() - self._last_checkpoint >= CHECKPOINT_EVERY_S:
            self.checkpoint()

    def _show(self, image: Image.Image, frame: bool) -> None:
        self.last_image = self.state.preview = image
        if frame:
            self.video.add(image)
        if time.monotonic() - self._last_preview >= PREVIEW_EVERY_S:
            media.save_preview(image, self.run.file(runs.PREVIEW))
            self._last_preview = time.monotonic()

    def checkpoint(self) -> None:
        self.run.append_metrics(self._metrics)
        self._metrics = []
        s = self.state
        self.run.update(progress={"step": s.step, "total": s.total},
                        it_s=_round(s.it_s), eta_s=_round(s.eta_s))
        self._last_checkpoint = time.monotonic()


def stop_requested(run: runs.Run) -> bool:
    """True once someone asked this run to stop through its folder (one stat, cheap every step)."""
    return run.file(runs.STOP_REQUEST).exists()


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def submit_run(mode: str, params: dict, output_dir: Path | str, **extra: Any) -> tuple[Any, Any, runs.Run]:
    """Check the inputs and create the queued run folder; returns (engine, spec, run).

    Bad input raises UserError here, before any folder is made.
    """
    engine = get_engine(mode)
    spec = engine.build_spec(params)
    run = runs.create_run(output_dir, mode, spec.to_params(), **extra)
    return engine, spec, run


def execute_run(engine, spec, run: runs.Run, *, device: str | None = None, cache: ModelCache | None = None,
                state: JobState | None = None) -> JobState:
    """Run a queued run to its end and save it; never raises for engine failures."""
    device = resolve_device(device)
    cache = cache or ModelCache()
    state = state or new_state(run)
    state.status = runs.RUNNING
    recorder = _RunRecorder(run, state, fps=float(getattr(spec, "fps", 10) or 10))
    timing: dict[str, float | None] = {"load_s": None, "generate_s": None, "median_step_s": None}
    result: Result | None = None
    try:
        run.reserve_space()
        # device_time: wall-clock times at sub-second precision, written with the start and the end
        # status, so any two runs of one device can be shown never to overlap (the queue's lock).
        run.update(status=runs.RUNNING, started=runs.now_iso(), device=device,
                   device_time={"device": device, "pid": os.getpid(), "from": round(time.time(), 4)})
        if stop_requested(run):
            state.stop_event.set()
        spec = keep_inputs(engine, spec, run)
        spec, models, timing["load_s"] = _load_and_prepare(engine, spec, run, device, cache, state)
        ctx = RunContext(run.path, device, state.stop_event, report=lambda m: setattr(state, "message", m))
        started = time.perf_counter()
        result = _iterate(engine.generate(spec, models, ctx), recorder)
        timing["generate_s"] = round(time.perf_counter() - started, 3)
        status, error = (runs.STOPPED if state.stop_event.is_set() else runs.DONE), None
    except KeyboardInterrupt:
        status, error = runs.STOPPED, None
    except Exception as exc:  # noqa: BLE001 - any failure ends as a failed run with a sentence
        status, error = runs.FAILED, _failure_sentence(run, exc)
        if not isinstance(exc, UserError) and is_out_of_memory(exc):
            cache.release()
    timing["median_step_s"] = _round(recorder.speed.median(), 4)
    _finish(run, state, recorder, result, status, error, timing, spec)
    return state


def _failure_sentence(run: runs.Run, exc: BaseException) -> str:
    """The one sentence for a failed run; an unexpected failure's traceback goes to its log.txt
    (and to the log at debug level: the CLI shows it with --verbose), never to the person's screen."""
    if isinstance(exc, UserError):
        return str(exc)
    log.debug("Run %s failed", run.run_id, exc_info=exc)
    if is_disk_full(exc) or is_out_of_memory(exc):
        log.info("Run %s failed: %s", run.run_id, exc)
        return describe_failure(exc, folder=run.path.parent)
    log_file = run.log_exception(exc)
    log.info("Run %s failed (%s: %s); traceback in %s", run.run_id, type(exc).__name__, exc, log_file)
    return describe_failure(exc, folder=run.path.parent, log_file=log_file)


def new_state(run: runs.Run) -> JobState:
    return JobState(run.run_id, run.path, run.details.get("mode", ""), params=run.details.get("params", {}),
                    total=run.details.get("progress", {}).get("total") or 0)


def keep_inputs(engine, spec, run: runs.Run):
    """Given files are copied into inputs/ first, and the recorded params point at the copies,
    so a rerun finds them even if the run fails or the originals move."""
    keep = getattr(engine, "keep_inputs", None)
    if keep is None:
        return spec
    spec = keep(spec, run.inputs_dir)
    run.update(params=spec.to_params(), inputs=sorted(p.name for p in run.inputs_dir.iterdir()))
    return spec


def _load_and_prepare(engine, spec, run: runs.Run, device: str, cache: ModelCache, state: JobState):
    state.message = "Loading models…"
    started = time.perf_counter()
    models, loaded = cache.get(engine.model_key(spec, device),
                               lambda: engine.load_models(spec, device, lambda m: setattr(state, "message", m)))
    load_s = round(time.perf_counter() - started, 3) if loaded else 0.0
    spec = engine.prepare(spec, models)
    spec, artist_match = _match_artist(spec, models, device, state)
    run.update(params=spec.to_params(), **engine.describe(spec, models), **artist_match)
    state.params = run.details["params"]
    state.message = ""
    return spec, models, load_s


def _match_artist(spec, models, device: str, state: JobState):
    """For specs with ``match_artist``: the prompt rewritten in the closest (or chosen) artist's style.

    Done here, once for every engine, after the models are loaded so a VQGAN run's CLIP is reused.
    """
    if not getattr(spec, "match_artist", False):
        return spec, {}
    from .artists import apply_artist_match, artist_settings

    state.message = "Matching the artist…"
    settings = artist_settings(demo=getattr(spec, "demo", False) or None, device=device)
    prompt_used, record = apply_artist_match(spec.prompt, settings, clip_model=getattr(models, "clip", None),
                                             chosen_artist=getattr(spec, "artist", None))
    return dataclasses.replace(spec, prompt=prompt_used), {"artist_match": record}


def _iterate(events, recorder: _RunRecorder) -> Result | None:
    result = None
    with torch.inference_mode(False):
        for event in events:
            if isinstance(event, Result):
                result = event
            else:
                recorder.record(event)
    return result


def _finish(run: runs.Run, state: JobState, recorder: _RunRecorder, result: Result | None, status: str,
            error: str | None, timing: dict, spec) -> None:
    """The one save path for done, stopped and failed runs: nothing already made is lost.

    Each file is saved on its own, so one that cannot be written (a full disk) costs only itself;
    the first such failure turns the run into a failed one with its sentence.
    """
    final = result.images[0] if result and result.images else recorder.last_image
    extra: dict = dict(result.details) if result else {}

    def attempt(what: str, save: Callable[[], Any]) -> None:
        nonlocal status, error
        try:
            save()
        except Exception as exc:  # noqa: BLE001 - one file lost must not lose the others
            log.debug("Could not save the %s of %s", what, run.run_id, exc_info=exc)
            if status != runs.FAILED:
                status, error = runs.FAILED, _failure_sentence(run, exc)

    attempt("metrics", recorder.checkpoint)
    attempt("video", recorder.video.close)
    if final is not None:
        attempt("image", lambda: _save_images(run, result, final))
        attempt("thumbnail", lambda: media.save_thumbnail(final, run.file(runs.THUMB)))
        if result and result.state is not None:
            attempt("state", lambda: media.save_state(result.state, run.file(runs.STATE)))
    if getattr(spec, "gif", False) and run.file(runs.ANIM).is_file():
        attempt("GIF", lambda: media.gif_from_mp4(run.file(runs.ANIM), run.file(runs.GIF)))
    run.file(runs.PREVIEW).unlink(missing_ok=True)
    run.release_space()
    state.status, state.error = status, error
    if final is not None:
        state.preview = final
    try:
        run.update(status=status, error=error, finished=runs.now_iso(), timing=timing,
                   progress={"step": state.step, "total": state.total}, frames=recorder.video.frames,
                   it_s=_round(state.it_s), eta_s=None, **extra,
                   device_time={**run.details.get("device_time", {}), "to": round(time.time(), 4)})
    except OSError as exc:
        # details.json keeps its last checkpoint; the next start marks the run interrupted
        log.warning("Could not record the end of %s: %s", run.run_id, exc)
        if status != runs.FAILED:
            state.status, state.error = runs.FAILED, describe_failure(exc, folder=run.path.parent)
    free_memory()


def _save_images(run: runs.Run, result: Result | None, final: Image.Image) -> None:
    """output.png and the engine's extra images, with the PNG 'parameters' text."""
    parameters = result.parameters if result else None
    media.save_png(final, run.file(runs.OUTPUT), parameters)
    for name, image in (result.extra_files.items() if result else ()):
        media.save_png(image, run.file(name), parameters)

