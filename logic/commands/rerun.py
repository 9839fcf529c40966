"""``python -m logic rerun RUN_DIR``: make any run again from its details.json (every engine).

The recorded parameters include the seed actually used, so on the same machine and device the
result is the same image. An init image is taken from the run's inputs/ copy when the original
file is gone.
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
    """(mode, params, run_id) of a finished run, with inputs redirected to its inputs/ copies."""
    record = runs.open_run(run_dir).record  # checked: every field has its type
    if record.legacy:
        raise UserError(f"{record.name} was made by the original vqgan-clip-app, which did not record "
                        "everything needed to remake it.")
    mode, params = record.mode, dict(record.params)
    if not mode or not params:
        raise UserError(f"{record.name}/details.json has no mode or parameters to rerun.")
    for key in ("init_image", "image_prompt"):
        value = params.get(key)
        if isinstance(value, str) and value and not Path(value).is_file():
            copies = sorted(p for p in (record.path / runs.INPUTS).glob(f"{key.replace('_', '-')}*")
                            if runs.is_regular_file(p))
            if copies:
                params[key] = str(copies[0])
    return mode, params, record.run_id


def run_rerun(args) -> int:
    mode, params, run_id = rerun_params(args.run_dir)
    return run_in_foreground(mode, params, args, rerun_of=run_id)
