"""``python -m logic worker | stop RUN | queue``: the shared queue from the command line.

``worker`` runs queued runs (from the app, the API or ``--queue``) until stopped; ``stop`` stops a
run or takes it out of the queue, whichever process has it; ``queue`` lists the queue and moves a
run to the front or queues an interrupted one again.
"""

from __future__ import annotations

import argparse
import gc
import os
import logging
import signal
import sys
import threading

from .. import queue, runs
from ..settings import output_dir as default_output_dir

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    worker = subparsers.add_parser("worker", help="run queued runs of an output folder on one device until stopped")
    _common(worker)
    worker.add_argument("--exit-when-idle", action="store_true", help="exit once the queue is empty")
    worker.add_argument("--parent", type=int, metavar="PID", help=argparse.SUPPRESS)  # exit with this process
    worker.set_defaults(handler=run_worker)

    stop = subparsers.add_parser("stop", help="stop a run (or take a queued run out of the queue)")
    stop.add_argument("run", metavar="RUN", help="a run id or run folder")
    stop.add_argument("--output", metavar="DIR", help="folder of run folders (default: output/)")
    stop.set_defaults(handler=run_stop)

    listing = subparsers.add_parser("queue", help="list the queue; move a run to the front; requeue a run")
    listing.add_argument("--output", metavar="DIR", help="folder of run folders (default: output/)")
    action = listing.add_mutually_exclusive_group()
    action.add_argument("--front", metavar="RUN", help="move this queued run to the front")
    action.add_argument("--requeue", metavar="RUN", help="queue this interrupted, failed or stopped run again")
    listing.set_defaults(handler=run_queue)


def freeze_imports() -> None:
    """Move what the imports made (torch, diffusers, the web stack: ~400k objects) out of the
    garbage collector's reach: the full collection after every run (``devices.free_memory``) then
    walks only what runs made, and stalls a long-lived server's requests for a fraction as long."""
    gc.collect()
    gc.freeze()


def _common(parser) -> None:
    parser.add_argument("--output", metavar="DIR", help="folder of run folders (default: output/)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: auto)")


def run_worker(args) -> int:
    output = args.output or default_output_dir()
    done = threading.Event()
    worker = queue.Worker(args.device, output, start=False)
    freeze_imports()
    if args.exit_when_idle:
        worker.on_idle = lambda: queue.entries(output) or done.set()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGUSR1, lambda *_: worker.wake())  # "a run was queued" (from the API server)
    if args.parent:
        print("ready", flush=True)  # to the server that started us: SIGUSR1 is handled from now on
    print(f"Worker on {worker.device} for {output}; Ctrl-C stops it after the running run.", file=sys.stderr)
    worker.start()
    try:
        while not done.wait(0.5):
            if args.parent and os.getppid() != args.parent:
                break  # the server that started this worker is gone
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        worker.close()
        gc.unfreeze()
    return 0


def run_stop(args) -> int:
    run = queue.find(args.output or default_output_dir(), args.run)
    was = run.status
    status = queue.request_stop(run)
    if was in runs.FINISHED:
        print(f"{run.run_id} has already finished ({was}).")
    elif was == runs.QUEUED:
        print(f"{run.run_id} was taken out of the queue.")
    else:
        print(f"{run.run_id} stops after its current step ({status}).")
    return 0


def run_queue(args) -> int:
    output = args.output or default_output_dir()
    if args.front:
        queue.move_to_front(queue.find(output, args.front))
    elif args.requeue:
        queue.requeue(queue.find(output, args.requeue))
    for device, run in queue.running_runs(output):
        print(f"  >  {run.run_id}  {run.details.get('mode', '?'):9s} {str(run.details.get('prompt', ''))[:60]} "
              f"(running on {device})")
    for position, entry in enumerate(queue.entries(output), 1):
        details = runs.read_details(entry.path) or {}
        waiting = " (CLI, in the foreground)" if entry.held_by else ""
        print(f"{position:3d}  {entry.run_id}  {details.get('mode', '?'):9s} {str(details.get('prompt', ''))[:60]}{waiting}")
    return 0
