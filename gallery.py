"""Atelier gallery: browse run folders, watch runs in progress, or run a kiosk wall display.

    python gallery.py [OUTPUT_DIR] [--port 5000] [--host 127.0.0.1] [--kiosk] [--starred] [-n 24]
                      [--cache DIR] [--app-url URL]

Read-only for run folders: it serves files inside the output folder (and its own cache and static
files) and never writes into run folders; stars and hidden runs are kept in its cache folder. Run files are served as data only (images, video, JSON, plain text;
anything else as a download), every response says ``nosniff``, and pages run only the gallery's own
scripts (Content-Security-Policy). Every HTML page has a JSON twin under /api/ built from the same
dicts; /api/runs/<run_id> is also the progress API for other programs.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from urllib.parse import urlsplit

from flask import Flask, abort, jsonify, redirect, render_template, request, send_file, url_for

from gallery_web import views
from gallery_web.files import DOWNLOAD_TYPE, cached_thumbnail, safe_file, served_type
from gallery_web.index import RunIndex
from logic import runs, settings

log = logging.getLogger("gallery")

WEB = Path(__file__).resolve().parent / "gallery_web"
MAX_PER_PAGE = 200
MAX_PAGE = 10_000_000  # 2 billion runs at the largest page size: larger is a typo or an attack
_NUMBER = re.compile(r"[0-9]{1,9}")  # ASCII digits only: '²'.isdigit() is True but int('²') fails
# Pages run the gallery's own scripts and nothing else (inline styles only set progress bar widths).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; media-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")
# Run files opened on their own: no script, no plugin, a sandbox (no origin) even if sniffed.
FILE_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox"
DEFAULT_APP_URL = "http://localhost:8501"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def default_cache_dir(output_dir: Path) -> Path:
    """``~/.cache/atelier/gallery/<hash of the output path>/``: outside every run folder."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha1(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]
    return base / "atelier" / "gallery" / digest


def gallery_settings(**overrides) -> dict:
    """defaults.yaml's ``gallery:`` section with the given values (None = keep the default)."""
    config = {"per_page": 24, "kiosk_interval_s": 12, "kiosk_play_video": True, "kiosk_starred": False,
              "thumb_size": 384, "refresh_s": 1.0, "live_poll_ms": 2000, "host": "127.0.0.1",
              "app_url": DEFAULT_APP_URL, **settings.defaults("gallery")}
    if os.environ.get("ATELIER_APP_URL"):
        config["app_url"] = os.environ["ATELIER_APP_URL"]
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def checked_app_url(url: str) -> str:
    """The Atelier app's address, for "Open in the app" links: an http(s) URL without a query."""
    parts = urlsplit(str(url or "").strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"The app URL must look like http://localhost:8501, got {url!r}.")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def create_app(output_dir: Path | str, *, cache_dir: Path | str | None = None, kiosk: bool = False,
               per_page: int | None = None, **overrides) -> Flask:
    """The gallery app for ``output_dir``; ``overrides`` replace keys of the ``gallery:`` defaults."""
    # 1. Check inputs
    output_dir = Path(output_dir).expanduser().resolve()
    config = gallery_settings(per_page=per_page, **overrides)
    if int(config["per_page"]) < 1:
        raise ValueError(f"per_page must be at least 1, got {config['per_page']}.")
    config["app_url"] = checked_app_url(config["app_url"])
    # 2. The index, kept in the cache folder
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(output_dir)
    index = RunIndex(output_dir, cache_dir / "index.sqlite3", min_refresh_s=float(config["refresh_s"]))
    # 3. The app and its routes
    app = Flask(__name__, static_folder=str(WEB / "static"), template_folder=str(WEB / "templates"))
    app.config.update(GALLERY=config, OUTPUT_DIR=output_dir, CACHE_DIR=cache_dir, KIOSK=kiosk)
    app.json.sort_keys = False
    app.url_map.merge_slashes = False  # '//etc/passwd' is a 404, not a redirect to a tidied path
    app.extensions["run_index"] = index
    app.jinja_env.filters["when"] = _when
    app.jinja_env.filters["duration"] = _duration
    app.jinja_env.globals["views"] = views
    _register_routes(app, index)
    return app


def _when(value) -> str:
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(value or "")


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return ""
    seconds = int(seconds)
    return f"{seconds // 3600}h {seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m {seconds % 60:02d}s"


# --- request arguments -------------------------------------------------------------------------


def _number_arg(name: str, default: int, low: int, high: int) -> int:
    """A whole-number query argument from ``low`` to ``high`` (400 with a sentence otherwise)."""
    text = request.args.get(name, str(default)).strip()
    if not _NUMBER.fullmatch(text) or not low <= int(text) <= high:
        abort(400, f"{name} must be a whole number from {low} to {high:,}, got {text[:40]!r}.")
    return int(text)


def _flag_arg(name: str) -> bool:
    return request.args.get(name, "").strip().lower() in ("1", "on", "true", "yes")


def _listing_args(config: dict) -> dict:
    """The page, page size, search text and filters of a listing request (400 for bad numbers)."""
    args = {key: request.args.get(key, "").strip() for key in ("q", "mode", "model", "status")}
    page = _number_arg("page", 1, 1, MAX_PAGE)
    per_page = _number_arg("per_page", int(config["per_page"]), 1, MAX_PER_PAGE)
    return {**args, "starred": _flag_arg("starred"), "hidden": _flag_arg("hidden"),
            "page": page, "per_page": per_page}


def _listing(index: RunIndex, args: dict) -> dict:
    """One page of runs plus paging, as plain data (shared by the index page and /api/runs)."""
    page, per_page = args["page"], args["per_page"]
    total, rows = index.query(args["q"], args["mode"], args["model"], args["status"],
                              limit=per_page, offset=(page - 1) * per_page,
                              starred=args["starred"], show_hidden=args["hidden"])
    paging = views.pagination(total, page, per_page)
    if page > paging["pages"]:
        abort(404, f"Page {page} does not exist: there are {paging['pages']} pages.")
    marks = index.marks_of([row["name"] for row in rows])
    return {"total": total, **paging, "q": args["q"],
            "filters": {k: args[k] for k in ("mode", "model", "status", "starred", "hidden")},
            "runs": [views.run_summary(row, marks.get(row["name"])) for row in rows], "version": _version(index)}


def _version(index: RunIndex) -> str:
    return f"{index.boot}-{index.generation}"


def _row_or_404(index: RunIndex, key: str):
    """The run of a folder name (or of a run_id that one folder alone claims)."""
    row = index.get(key)
    if row is None:
        folders = index.folders_of(key)
        if len(folders) > 1:
            abort(404, f"{len(folders)} folders claim run id {key!r} ({', '.join(folders)}): "
                       "open one by its folder name.")
        abort(404, f"No run {key!r} in this output folder.")
    return row


# --- routes ------------------------------------------------------------------------------------


def _register_routes(app: Flask, index: RunIndex) -> None:
    config, output_dir = app.config["GALLERY"], app.config["OUTPUT_DIR"]

    @app.before_request
    def refresh_index():
        if request.endpoint not in ("static", "run_file", "thumbnail"):
            index.refresh()

    @app.after_request
    def security_headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        is_file = request.endpoint in ("run_file", "thumbnail") and response.mimetype != "text/html"
        csp = FILE_CSP if is_file else PAGE_CSP  # an error page about a file is still a page
        response.headers.setdefault("Content-Security-Policy", csp)
        return response

    @app.context_processor
    def mark_token():
        return {"mark_token": index.secret()}

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    def not_found(error):
        if request.path.startswith("/api/"):
            return jsonify(error=error.description), error.code
        return render_template("error.html", error=error), error.code

    @app.get("/")
    def home():
        if app.config["KIOSK"]:
            return kiosk()
        args = _listing_args(config)
        listing = _listing(index, args)
        if request.args.get("fragment"):
            return render_template("_listing.html", listing=listing, args=args)
        return render_template("index.html", listing=listing, args=args, choices=index.choices())

    @app.get("/kiosk")
    def kiosk():
        starred = bool(config["kiosk_starred"]) or _flag_arg("starred")
        return render_template("kiosk.html", interval_s=config["kiosk_interval_s"],
                               play_video=bool(config["kiosk_play_video"]),
                               slides_url=url_for("api_slides", starred=1) if starred else url_for("api_slides"))

    @app.get("/runs/<run_id>")
    def run_page(run_id):
        detail = views.run_detail(index, _row_or_404(index, run_id), output_dir, config)
        template = "_run_body.html" if request.args.get("fragment") else "run.html"
        return render_template(template, run=detail)

    @app.post("/runs/<run_id>/mark")
    def mark_run(run_id):
        """Star/unstar, hide/show: the one route that writes, and only to the gallery's marks file."""
        _refuse_cross_site(config, index)
        row = _row_or_404(index, run_id)
        changes = {key: _mark_value(key) for key in ("starred", "hidden") if key in request.form}
        if not changes:
            abort(400, "Say what to change: starred=1/0 or hidden=1/0.")
        marks = index.set_mark(row["name"], **changes)
        if request.accept_mimetypes.best == "application/json" or request.headers.get("X-Gallery-Token"):
            return jsonify(folder=row["name"], **marks)
        return redirect(_local_next(request.form.get("next")) or url_for("run_page", run_id=row["name"]), 303)

    @app.get("/files/<name>/<path:filename>")
    def run_file(name, filename):
        path = safe_file(output_dir, name, filename)
        if path is None:
            abort(404, "No such file in the output folder.")
        mimetype = served_type(path)
        if mimetype is None:  # HTML, SVG, anything unknown: a download, never a page of the gallery
            return send_file(path, mimetype=DOWNLOAD_TYPE, as_attachment=True, conditional=True,
                             max_age=_max_age(request))
        return send_file(path, mimetype=mimetype, conditional=True, max_age=_max_age(request))

    @app.get("/thumb/<name>")
    def thumbnail(name):
        row = index.get(name)
        if row is None or not row["image"] or row["name"] != name:
            abort(404, "No image to make a thumbnail of.")
        path = cached_thumbnail(output_dir, app.config["CACHE_DIR"], name, row["image"],
                                int(config["thumb_size"]))
        if path is None:
            abort(404, "This run's image could not be read.")
        return send_file(path, mimetype="image/jpeg", conditional=True, max_age=_max_age(request))

    @app.get("/api/runs")
    def api_runs():
        return jsonify(_listing(index, _listing_args(config)))

    @app.get("/api/runs/<run_id>")
    def api_run(run_id):
        return jsonify(views.run_detail(index, _row_or_404(index, run_id), output_dir, config))

    @app.get("/api/version")
    def api_version():
        return jsonify(version=_version(index), total=index.query(limit=0)[0])

    @app.get("/api/slides")
    def api_slides():
        limit = _number_arg("limit", 100, 1, 500)
        starred = bool(config["kiosk_starred"]) or _flag_arg("starred")
        _, rows = index.query(limit=limit, finished_with_image=True, starred=starred)
        slides = [views.slide(summary) for summary in map(views.run_summary, rows)]
        return jsonify(version=_version(index), interval_s=config["kiosk_interval_s"],
                       play_video=bool(config["kiosk_play_video"]), starred=starred, slides=slides)


def _mark_value(key: str) -> bool:
    value = request.form.get(key, "").strip().lower()
    if value not in ("1", "0", "true", "false", "on", "off"):
        abort(400, f"{key} must be 1 or 0, got {value[:20]!r}.")
    return value in ("1", "true", "on")


def _origin_of(url: str) -> str:
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def _refuse_cross_site(config: dict, index: RunIndex) -> None:
    """403 unless the request comes from one of the gallery's own pages.

    Three checks: the Origin (or, without one, the Referer) is this gallery's own address (another
    site's page cannot post here); the form or header carries the token only the gallery's pages
    hold; and, when the gallery listens on this machine only, the Host is a loopback name (a site
    that rebinds its own name to 127.0.0.1 is refused although its pages would be same-origin).
    """
    own = _origin_of(request.host_url)
    origin = request.headers.get("Origin") or _origin_of(request.headers.get("Referer", ""))
    if not origin or origin.lower() != own:
        abort(403, "Refused: marks change only from the gallery's own pages (the request came from "
                   f"{origin or 'an unknown page'}).")
    token = request.headers.get("X-Gallery-Token") or request.form.get("token", "")
    if not token or token != index.secret():
        abort(403, "Refused: the page is out of date or not the gallery's own; reload it and try again.")
    if str(config.get("host")) in LOOPBACK_NAMES and _host_name(request.host) not in LOOPBACK_NAMES:
        abort(403, f"Refused: the gallery listens on this machine only, not as {request.host!r}.")


def _host_name(host: str) -> str:
    """'localhost:5000' -> 'localhost', '[::1]:5000' -> '[::1]'."""
    host = host.lower()
    return host[:host.index("]") + 1] if host.startswith("[") and "]" in host else host.split(":", 1)[0]


def _local_next(target: str | None) -> str | None:
    """A path on this gallery to go back to after a mark (never another site)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


def _max_age(req) -> int:
    """URLs carrying ?v=<mtime> never change content, so browsers may keep them."""
    return 86400 if req.args.get("v") else 0


# --- command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    config = gallery_settings()
    parser = argparse.ArgumentParser(prog="python gallery.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", default=str(settings.output_dir()),
                        help="output folder holding run folders (default: output/)")
    parser.add_argument("--port", type=int, default=config.get("port", 5000))
    parser.add_argument("--host", default=config.get("host", "127.0.0.1"),
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--kiosk", action="store_true", help="full-screen slideshow of finished runs")
    parser.add_argument("-n", "--per-page", "--numitems", dest="per_page", type=int,
                        default=config["per_page"], help="runs per page")
    parser.add_argument("--cache", metavar="DIR", help="index and thumbnail cache folder "
                        "(default ~/.cache/atelier/gallery/<hash of the output path>/)")
    parser.add_argument("--interval", type=float, help="kiosk: seconds per image")
    parser.add_argument("--no-video", action="store_true", help="kiosk: show images, not the walk videos")
    parser.add_argument("--starred", action="store_true", help="kiosk: starred runs only")
    parser.add_argument("--app-url", help="the Atelier app's address for \"Open in the app\" links "
                        f"(default: $ATELIER_APP_URL, else gallery.app_url, else {DEFAULT_APP_URL})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request and re-index")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not Path(args.path).is_dir():
        print(f"error: {args.path} is not a folder: give the output folder that holds run folders.",
              file=sys.stderr)
        return 2
    try:
        app = create_app(args.path, cache_dir=args.cache, kiosk=args.kiosk, per_page=args.per_page,
                         kiosk_interval_s=args.interval, kiosk_play_video=False if args.no_video else None,
                         kiosk_starred=True if args.starred else None, host=args.host, app_url=args.app_url)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    index = app.extensions["run_index"]
    index.refresh(force=True)
    total = index.query(limit=0)[0]
    print(f"Atelier gallery: {total} runs in {app.config['OUTPUT_DIR']} (indexed in "
          f"{time.perf_counter() - started:.1f} s) at http://{args.host}:{args.port}/"
          f"{' (kiosk)' if args.kiosk else ''}", flush=True)
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host=args.host, port=args.port, threaded=True, debug=False, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
