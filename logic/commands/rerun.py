"""``python -m logic rerun RUN_DIR``: make any run again from its details.json (every engine).

A rerun starts from what the person asked (details.json ``request``) with the seed and models
the run recorded, so on the same machine and device the result is the same image; given files
come from the run's inputs/ copies (see ``runs.rerun_request``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import runs
from ..errors import UserError
from .progress import run_in_foreground


def register(subparsers) -> None:
    parser = subparsers.add_parser("rerun", help="make a run again from its run folder",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (holding details.json)")
    parser.add_argument("--output", metavar="DIR", help="folder for the new run folder (default: output/)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: auto; use the original's for the same image)")
    parser.add_argument("--queue", action="store_true", help="only queue the run (a worker runs it)")
    parser.set_defaults(handler=run_rerun)


def rerun_params(run_dir: Path | str) -> tuple[str, dict, str]:
    """(mode, params, run_id) of a run: its request, with the recorded seed, models and inputs."""
    run = runs.open_run(run_dir)
    record = run.record  # checked: every field has its type
    refusal = runs.rerun_refusal(record)
    if refusal:
        raise UserError(refusal)
    return record.mode, runs.rerun_request(run), record.run_id


def run_rerun(args) -> int:
    mode, params, run_id = rerun_params(args.run_dir)
    return run_in_foreground(mode, params, args, rerun_of=run_id)
