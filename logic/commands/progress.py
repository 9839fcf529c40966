"""Running a run in the foreground for the CLI: progress on stderr, Ctrl-C stops and keeps the work."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time

from .. import jobs, queue, runs
from ..devices import resolve_device
from ..settings import output_dir as default_output_dir


RECENT_RUNS_CHECKED = 200  # at each CLI start, runs left "running" by a dead process among these are marked


class ProgressPrinter(threading.Thread):
    """Draws a progress line on stderr from the run's JobState (a bar on a terminal, lines otherwise)."""

    def __init__(self, state: jobs.JobState, interval: float = 0.5):
        super().__init__(daemon=True)
        self.state, self.interval = state, interval
        self.tty = sys.stderr.isatty()
        self._done = threading.Event()
        self._last_line = ""

    def run(self) -> None:
        while not self._done.wait(self.interval if self.tty else 5.0):
            self.draw()

    def draw(self, end: str = "") -> None:
        line = format_progress(self.state)
        try:
            if self.tty:
                sys.stderr.write("\r" + line.ljust(len(self._last_line)) + end)
            elif line != self._last_line:
                sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except OSError:
            pass  # the terminal went away (SIGHUP): the run goes on saving without it
        self._last_line = line

    def finish(self) -> None:
        self._done.set()
        self.draw(end="\n")


def format_progress(state: jobs.JobState, width: int = 30) -> str:
    if state.message and state.step == 0:
        return state.message
    total = state.total if state.total and state.total > 0 else None
    bar = ""
    if total:
        filled = int(width * min(state.step, total) / total)
        bar = "[" + "#" * filled + "." * (width - filled) + "] "
    speed = f" {state.it_s:.2f} it/s" if state.it_s else ""
    eta = f" ETA {format_seconds(state.eta_s)}" if state.eta_s is not None else ""
    return f"{bar}{state.step}/{total or '∞'}{speed}{eta}"


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def run_in_foreground(mode: str, params: dict, args, **extra) -> int:
    """Create, run and save one run; prints the run folder as the last line of stdout.

    The run goes through the shared queue (``logic.queue``): with ``--queue`` it is only queued for
    a worker; otherwise this process waits for the device's lock (saying which run it waits for)
    and runs it here, so a CLI run and an app or API run never share the GPU.
    """
    device = resolve_device(args.device)  # a missing GPU is bad input: say so before making a folder
    output = args.output or default_output_dir()
    runs.mark_interrupted_runs(output, newest=RECENT_RUNS_CHECKED)
    if getattr(args, "queue", False):
        run = queue.enqueue(mode, params, output, **extra)
        print(f"Queued as {run.run_id}; a worker (the app, `python -m logic serve` or "
              f"`python -m logic worker`) runs it.", file=sys.stderr)
        print(run.path)
        return 0
    run = queue.enqueue(mode, params, output, held_by=runs.process_token(), **extra)
    state = jobs.new_state(run)
    previous = _stop_on_interrupt(state)
    lock = queue.DeviceLock(device)
    started = time.monotonic()
    try:
        if not queue.wait_for_device(run, lock, _say, state.stop_event):
            state.status = runs.STOPPED
            print("Stopped before it started.", file=sys.stderr)
            print(run.path)
            return 130
        printer = ProgressPrinter(state)
        printer.start()
        try:
            queue.run_claimed(run, device, jobs.ModelCache(), state, lock)
        finally:
            printer.finish()
    finally:
        lock.release()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return _report(state, run, time.monotonic() - started)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# Ctrl-C, `kill` and a closed terminal all mean "stop": the run ends stopped and keeps what it made.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _stop_on_interrupt(state: jobs.JobState) -> dict:
    """The first stop signal asks the run to stop (it saves what it made); a second one aborts.
    While waiting for the device the flag takes the run out of the queue; while loading (before
    the first step) there is nothing to save and no stop flag is checked yet, so the first signal
    stops at once. Returns the handlers it replaced."""
    def handler(signum, frame):
        loading = state.status == runs.RUNNING and state.step == 0
        if state.stop_event.is_set() or loading:
            state.stop_event.set()
            raise KeyboardInterrupt
        state.stop_event.set()
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            sys.stderr.write("\nStopping… (Ctrl-C again to abort)\n")
    return {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}


def prompt_notes(details: dict) -> list[str]:
    """What the prompt encoding wants said: a cut prompt (encoders with a hard limit), chunking."""
    return list(((details or {}).get("prompt_encoding") or {}).get("notes") or [])


def _report(state: jobs.JobState, run: runs.Run, elapsed: float) -> int:
    if state.status == runs.FAILED:
        print(f"error: {state.error}", file=sys.stderr)
    elif state.status == runs.STOPPED:
        print(f"Stopped at step {state.step}; kept what was made.", file=sys.stderr)
    else:
        print(f"Done in {format_seconds(elapsed)}.", file=sys.stderr)
    for note in prompt_notes(run.details):
        print(f"note: {note}", file=sys.stderr)
    print(run.path)
    return {runs.DONE: 0, runs.STOPPED: 130}.get(state.status, 1)
