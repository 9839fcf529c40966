"""A faithful re-implementation of how the original vqgan-clip-app gallery listed runs, for side by
side timing only (written anew, not copied).

The original (tnwei/vqgan-clip-app ``gallery.py`` + ``gallery_utils.RunResults``):
- walks every folder of the output folder, newest name first;
- keeps a folder when it has ``details.json`` and ``output.PNG``;
- builds a RunResults per folder: globs the folder's files, reads details.json, dumps it to YAML
  for display, and opens the image with PIL and converts it to RGB (decoding every image, and
  keeping every decoded image in memory);
- does all of that once at start and again on every request to ``/``, then renders one page.

Only the listing is reproduced (it does not serve its working folder like the original did).
The one liberty: ``output.png`` is accepted as well as ``output.PNG`` so it can read the same
benchmark folders as the Atelier gallery.

    python benchmarks/original_gallery_ref.py OUTPUT_DIR [--port 5001] [-n 24]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from flask import Flask, render_template_string, request
from PIL import Image

IMAGE_NAMES = ("output.PNG", "output.png")

PAGE = """<!doctype html><title>gallery</title>
{% for run in runs[start - 1:end] %}
<div><img src="/{{ run.impath }}" width="256"><pre>{{ run.details_text }}</pre></div>
{% endfor %}
{% for number in pages %}<a href="/?page={{ number }}">{{ number }}</a> {% endfor %}"""


class RunResults:
    """One run as the original loaded it: file list, details, YAML text and the decoded image."""

    def __init__(self, folder: Path):
        files = [p.name for p in folder.glob("*")]
        if "details.json" not in files:
            raise ValueError(f"no details.json in {folder}")
        image_name = next((name for name in IMAGE_NAMES if name in files), None)
        if image_name is None:
            raise ValueError(f"no output.PNG in {folder}")
        self.impath = (folder / image_name).as_posix()
        self.animpath = (folder / "anim.mp4").as_posix() if "anim.mp4" in files else None
        self.initimpath = (folder / "init-image.JPEG").as_posix() if "init-image.JPEG" in files else None
        self.impromptspath = [p.as_posix() for p in folder.glob("image-prompt*")] or None
        with open(folder / "details.json") as handle:
            self.details = json.load(handle)
        self.details_text = yaml.dump(self.details).replace("\n", "<br>")
        self.im = Image.open(folder / image_name).convert("RGB")


def update_runs(folder: Path) -> list[RunResults]:
    found = []
    for path in sorted(folder.iterdir(), reverse=True):
        if path.is_dir() and (path / "details.json").exists() and any((path / n).exists() for n in IMAGE_NAMES):
            try:
                found.append(RunResults(path))
            except Exception as exc:  # noqa: BLE001 - as the original: skip and go on
                print(f"Skipped {path} due to raised exception {exc}")
    return found


def create_app(folder: Path, per_page: int) -> Flask:
    app = Flask(__name__)
    update_runs(folder)  # the original loads everything once at start ...

    @app.get("/")
    def home():
        page = int(request.args.get("page", 1))
        runs = update_runs(folder)  # ... and again on every request
        pages = range(1, len(runs) // per_page + 2)
        return render_template_string(PAGE, runs=runs, start=(page - 1) * per_page + 1,
                                      end=page * per_page, pages=pages)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", nargs="?", default="./output/")
    parser.add_argument("-n", "--numitems", type=int, default=24)
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args()
    create_app(Path(args.path), args.numitems).run(port=args.port, threaded=True)


if __name__ == "__main__":
    main()
