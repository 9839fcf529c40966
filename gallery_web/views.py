"""Plain dicts for every page: the HTML templates and the JSON twins are built from the same ones."""

from __future__ import annotations

import json
import math
import re
import shlex
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

from flask import url_for

from gallery_web.files import safe_file
from logic import runs

CURVE_POINTS = 400
CHART_SIZE = (720, 260)               # the loss chart's whole SVG, axes included
CHART_MARGIN = (56, 16, 14, 36)       # left, right, top, bottom: room for tick labels and axis titles
MAX_CURVES = 6
ERROR_CHARS = 240                     # a failed run's card shows this much of its error
# Settings that are the run's plumbing, not its look: never shown (paths are left out as well).
INTERNAL_KEYS = {"size_requested", "owner", "run_id", "schema", "preview_every", "preview_decoder",
                 "output_image", "legacy_inputs", "device_time", "request", "resolved", "params", "progress",
                 "prompt_encoding", "images", "keyframes", "continue_prev_run", "demo", "precision", "memory",
                 "image_prompts", "init_image", "mask", "continue_from", "clip_weights", "vae_path"}
# Key settings, in order: (label, the keys that may hold it, the modes it is shown for; None = all).
KEY_SETTINGS = (
    ("Negative prompt", ("negative", "negative_prompt"), None),
    ("Seed", ("seed", "seeds"), None),
    ("Size", ("size",), None),
    ("Steps", ("steps", "num_steps", "iterations"), None),
    ("Sampler", ("scheduler", "sampler"), ("diffusion", "walk")),
    ("CFG scale", ("cfg", "cfg_scale", "guidance_scale"), ("diffusion", "walk")),
    ("Learning rate", ("lr", "learning_rate"), ("vqgan",)),
    ("Cutouts", ("cutn", "num_cuts", "cutouts"), ("vqgan",)),
    ("Frames", ("frames",), ("walk",)),
    ("Scale", ("scale",), ("upscale",)),
    ("Upscaler", ("upscaler",), ("upscale",)),
    ("Task", ("task",), ("diffusion",)),
    ("Denoising strength", ("strength",), ("diffusion",)),
)
NAMED_BY_FILE = {"vae", "upscaler", "hires_upscaler", "lora"}  # path values shown by their file name only
_PATHLIKE = re.compile(r"^(/|~|[A-Za-z]:[\\/])")


def _file_url(name: str, filename: str, files: dict) -> str | None:
    if filename not in files:
        return None
    return url_for("run_file", name=name, filename=filename, v=files[filename])


def _eta(details: dict) -> float | None:
    """Seconds left: the worker's own estimate, else median step time x steps left."""
    if details.get("eta_s") is not None:
        return details["eta_s"]
    progress = details.get("progress") or {}
    step, total = progress.get("step"), progress.get("total")
    per_step = (details.get("timing") or {}).get("median_step_s")
    if isinstance(step, (int, float)) and isinstance(total, (int, float)) and per_step and total > 0:
        return max(total - step, 0) * per_step
    return None


def run_summary(row, marks: dict | None = None) -> dict:
    """What a card on the index (and /api/runs) shows of one run (``marks``: its star and hidden state)."""
    details = json.loads(row["details"])
    files = json.loads(row["files"])
    name = row["name"]
    progress = details.get("progress") or {}
    active = row["status"] in runs.ACTIVE
    image = row["image"] or None
    summary = {
        "run_id": row["run_id"], "folder": name, "mode": row["mode"], "model": row["model"],
        "status": row["status"], "prompt": row["prompt"], "created": row["created"],
        "finished": details.get("finished"), "parent_run_id": row["parent_run_id"],
        "progress": {"step": progress.get("step"), "total": progress.get("total")},
        "eta_s": _eta(details) if active else None, "it_s": details.get("it_s") if active else None,
        # Links name the folder: two folders may claim one run_id, and neither may hide the other.
        "url": url_for("run_page", run_id=name),
        "api_url": url_for("api_run", run_id=name),
        "image_url": _file_url(name, image, files) if image else None,
        "video_url": _file_url(name, runs.ANIM, files),
        "preview_url": _file_url(name, runs.PREVIEW, files) if active else None,
        "gif_url": _file_url(name, runs.GIF, files),
        "error": _short(details.get("error")),
        "starred": bool((marks or {}).get("starred")), "hidden": bool((marks or {}).get("hidden")),
        "mark_url": url_for("mark_run", run_id=name),
    }
    summary["thumb_url"] = _thumb_url(name, files, image, summary)
    summary["percent"] = _percent(summary["progress"])
    return summary


def _short(text, limit: int = ERROR_CHARS) -> str | None:
    if not text:
        return None
    text = str(text).strip()
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def slide(summary: dict) -> dict:
    """A kiosk slide: the final image, and a video only when the video is the result (a walk).
    The mp4 of a Stable Diffusion or VQGAN run is its denoising progress, never shown on the wall."""
    video = summary["video_url"] if summary["mode"] == "walk" else None
    return {**{k: summary[k] for k in ("run_id", "folder", "prompt", "image_url", "finished", "starred")},
            "video_url": video}


def _thumb_url(name: str, files: dict, image: str | None, summary: dict) -> str | None:
    if summary["preview_url"]:
        return summary["preview_url"]
    if runs.THUMB in files:
        return _file_url(name, runs.THUMB, files)
    if image:
        return url_for("thumbnail", name=name, v=files.get(image))
    return None


def _percent(progress: dict) -> int | None:
    step, total = progress.get("step"), progress.get("total")
    if isinstance(step, (int, float)) and isinstance(total, (int, float)) and total > 0:
        return max(0, min(100, int(100 * step / total)))
    return None


def run_detail(index, row, output_dir: Path, config: dict | None = None) -> dict:
    """Everything the run page (and /api/runs/<id>) shows."""
    details = runs.effective_status(json.loads(row["details"]))
    run_dir = Path(output_dir) / row["name"]
    detail = run_summary(row, index.marks_of([row["name"]]).get(row["name"]))
    settings = {**runs.request_of(details), **runs.resolved_of(details)}
    key_settings = _key_settings(detail, details, settings)
    app_url = (config or {}).get("app_url")
    detail.update({
        "key_settings": key_settings,
        "other_settings": _other_settings(settings, key_settings),
        "duration_s": _duration_s(details),
        "parameters_text": _parameters_text(run_dir, row["image"], detail, key_settings),
        "images": _extra_images(row["name"], run_dir, details),
        "app_link": f"{app_url}/?{urlencode({'from': row['run_id']})}" if app_url else None,
        "downloads": [{"label": label, "url": url, "name": name} for label, url, name in (
            ("Image", detail["image_url"], row["image"]), ("Video", detail["video_url"], runs.ANIM),
            ("GIF", detail["gif_url"], runs.GIF)) if url],
        "chart": loss_chart(runs.read_metrics(run_dir)),
        "models_shown": _model_names(details.get("model")),
    })
    detail.update({
        "details": details, "params": runs.request_of(details), "resolved": runs.resolved_of(details), "seed": details.get("seed"),
        "error": details.get("error"), "timing": details.get("timing") or {},
        "models": details.get("model") or {}, "artist_match": details.get("artist_match"),
        "started": details.get("started"), "legacy": bool(details.get("legacy")),
        "inputs": _inputs(row["name"], run_dir, details),
        "parent": _lineage_link(index.get(row["parent_run_id"])) if row["parent_run_id"] else None,
        "children": [_lineage_link(child) for child in index.children(row["run_id"])],
        "curves": detail["chart"]["series"] if detail["chart"] else [],
        "rerun_command": _rerun_command(run_dir, details),
        "rerun_refusal": _rerun_refusal(run_dir, details),
        "version": row["mtime_ns"],
    })
    return detail


def _rerun_refusal(run_dir: Path, details: dict) -> str | None:
    return runs.rerun_refusal(runs.record_from_details(run_dir, details))


def _rerun_command(run_dir: Path, details: dict) -> str | None:
    """The command that makes the run again; None where that command would refuse it."""
    if _rerun_refusal(run_dir, details):
        return None
    return f"python -m logic rerun {shlex.quote(str(run_dir))}"


def _inputs(name: str, run_dir: Path, details: dict) -> list[dict]:
    items = []
    for rel in runs.list_inputs(run_dir, details):
        items.append({"name": rel.rsplit("/", 1)[-1], "url": url_for("run_file", name=name, filename=rel)})
    return items


def _lineage_link(row) -> dict | None:
    if row is None:
        return None
    return {"run_id": row["run_id"], "prompt": row["prompt"], "status": row["status"],
            "url": url_for("run_page", run_id=row["name"])}


def _key_settings(detail: dict, details: dict, settings: dict) -> list[dict]:
    """The settings that decide the look, first on the page: [{"key", "label", "value"}]."""
    found = [{"key": "prompt", "label": "Prompt", "value": detail["prompt"]}]
    for label, keys, modes in KEY_SETTINGS:
        if label == "Seed" and detail["model"]:
            found.append({"key": "model", "label": "Model", "value": detail["model"]})
        if modes and detail["mode"] not in modes:
            continue
        key = next((k for k in keys if settings.get(k) not in (None, "", [])), None)
        value = settings.get(key) if key else None
        if label == "Seed" and details.get("seed") is not None:
            key, value = key or "seed", details["seed"]   # the seed drawn, when the request left it to chance
        if value in (None, "", []):
            continue
        found.append({"key": key, "label": label, "value": _shown(value)})
    batch = [settings.get("batch_size") or 1, settings.get("batch_count") or 1]
    if batch != [1, 1]:
        found.append({"key": "batch_size", "label": "Batch", "value": f"{batch[0]} × {batch[1]}"})
    duration = _duration_s(details)
    if duration is not None:
        found.append({"key": "duration", "label": "Duration", "value": _duration_text(duration)})
    return found


def _model_names(model) -> list[tuple[str, str]]:
    """The model names of a run (vqgan, clip, name...): no paths, hashes or file kinds."""
    if not isinstance(model, dict):
        return [("model", str(model))] if model else []
    return [(k, v) for k, v in model.items() if isinstance(v, str) and v and not _PATHLIKE.match(v)
            and k not in ("hash", "location", "kind") and not k.endswith(("_path", "_hash"))]


def _shown(value) -> str:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}×{value[1]}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _other_settings(settings: dict, key_settings: list[dict]) -> list[tuple[str, str]]:
    """Every other setting, for the collapsed section: no paths, no plumbing, no empty values."""
    shown = {item["key"] for item in key_settings} | {"prompt", "batch_count", "model"}
    rows = []
    for key, value in sorted(settings.items()):
        if key in shown or key in INTERNAL_KEYS or key.endswith(("_path", "_dir", "_file")) or value in (None, "", [], {}):
            continue
        if isinstance(value, str) and _PATHLIKE.match(value):
            if key not in NAMED_BY_FILE:
                continue
            value = _file_name(value)  # a VAE or upscaler file: its name says which, its folder is private
        if isinstance(value, list):
            value = [_file_name(v) if isinstance(v, str) and _PATHLIKE.match(v) else v for v in value]
        rows.append((key, _shown(value)))
    return rows


def _file_name(path: str) -> str:
    return re.split(r"[\\/]", path.rstrip("/\\"))[-1]


def _duration_s(details: dict) -> float | None:
    """Seconds from start to end (or to now for a running run is not a duration: None)."""
    try:
        started = datetime.fromisoformat(str(details.get("started")))
        finished = datetime.fromisoformat(str(details.get("finished")))
        seconds = (finished - started).total_seconds()
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def _duration_text(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


def _parameters_text(run_dir: Path, image: str, detail: dict, key_settings: list[dict]) -> str:
    """The A1111 'parameters' text of the run: the one its PNG carries (logic/a1111/metadata.py
    wrote it), else one made from the settings shown (original vqgan-clip-app runs, failed runs)."""
    path = safe_file(run_dir.parent, run_dir.name, image) if image and image.lower().endswith(".png") else None
    if path is not None:
        try:
            from PIL import Image

            with Image.open(path) as png:  # text chunks before the pixels: no decode needed
                text = png.info.get("parameters")
            if isinstance(text, str) and text.strip():
                return text
        except (OSError, ValueError):
            pass
    from logic.a1111.metadata import format_parameters

    values = {item["label"]: item["value"] for item in key_settings}
    negative = values.pop("Negative prompt", "")
    fields = {k: v for k, v in values.items() if k not in ("Prompt", "Duration")}
    if "Size" in fields:
        fields["Size"] = fields["Size"].replace("×", "x")
    return format_parameters(detail["prompt"], negative, fields)


def _extra_images(name: str, run_dir: Path, details: dict) -> dict:
    """A batch's images (each with its seed), its grid, and a walk's keyframes (each with its prompt)."""
    def item(filename: str, caption: str, **extra) -> dict | None:
        if not isinstance(filename, str) or safe_file(run_dir.parent, name, filename) is None:
            return None
        return {"file": filename, "caption": caption, **extra,
                "url": url_for("run_file", name=name, filename=filename)}

    batch = [item(r.get("file"), f"seed {r.get('seed')}", seed=r.get("seed"))
             for r in details.get("images") or [] if isinstance(r, dict)]
    keyframes = [item(k.get("file"), str(k.get("prompt") or ""), seed=k.get("seed"))
                 for k in details.get("keyframes") or [] if isinstance(k, dict)]
    batch = [b for b in batch if b]
    return {"batch": batch if len(batch) > 1 else [], "grid": item("grid.png", "grid"),
            "keyframes": [k for k in keyframes if k]}


def loss_chart(rows: list[dict]) -> dict | None:
    """One SVG chart of the losses, with axes: x = step, y = loss, tick values on both.

    One curve per prompt (``loss/<prompt>``); the total (``loss``) is drawn only when it sums two
    or more terms, since with a single prompt it is the same curve twice."""
    terms = sorted({k for r in rows for k in r if k.startswith("loss/")})
    keys = terms[:MAX_CURVES] if len(terms) == 1 else (["loss"] + terms)[:MAX_CURVES]
    if not terms:
        keys = ["loss"]
    series = [s for s in (_points(rows, key) for key in keys) if s]
    if not series:
        return None
    (x0, x1) = _extent(x for s in series for x, _ in s["raw"])
    (y0, y1) = _extent(y for s in series for _, y in s["raw"])
    xticks, yticks = nice_ticks(x0, x1), nice_ticks(y0, y1)
    y0, y1 = min(y0, yticks[0]), max(y1, yticks[-1])  # the y axis ends on round values; x spans the steps run
    width, height = CHART_SIZE
    left, right, top, bottom = CHART_MARGIN
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x):
        return left + (x - x0) / (x1 - x0) * plot_w

    def sy(y):
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    for index, s in enumerate(series):
        s["points"] = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s.pop("raw"))
        s["label"] = "total" if s["name"] == "loss" else s["name"][len("loss/"):]
        s["colour"] = index
    return {"width": width, "height": height, "left": left, "top": top, "right": width - right,
            "bottom": top + plot_h, "series": series,
            "xticks": [{"at": round(sx(t), 1), "label": _tick(t)} for t in xticks if x0 <= t <= x1],
            "yticks": [{"at": round(sy(t), 1), "label": _tick(t)} for t in yticks if y0 <= t <= y1]}


def _points(rows: list[dict], key: str) -> dict | None:
    points = [(r.get("step", i), r[key]) for i, r in enumerate(rows)
              if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
              and isinstance(r.get("step", i), (int, float))]
    if len(points) < 2:
        return None
    stride = max(1, math.ceil(len(points) / CURVE_POINTS))
    kept = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    values = [p[1] for p in points]
    return {"name": key, "raw": kept, "first": points[0][1], "last": points[-1][1],
            "min": min(values), "max": max(values), "steps": [points[0][0], points[-1][0]]}


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering low..high."""
    span = high - low
    raw = span / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value < high + step * 0.999 and len(ticks) < 12:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _tick(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.2e}"


def _extent(values) -> tuple[float, float]:
    values = list(values)
    low, high = min(values), max(values)
    return (low, high) if high > low else (low - 1, high + 1)


def pagination(total: int, page: int, per_page: int) -> dict:
    """Pages for ``total`` items: never an empty last page (24 items at 24 a page is one page)."""
    pages = max(1, math.ceil(total / per_page))
    return {"page": page, "per_page": per_page, "pages": pages, "total": total,
            "has_prev": page > 1, "has_next": page < pages}


def page_url(endpoint: str, args, page: int) -> str:
    """The URL of another page of the same listing (same search, filters and page size)."""
    kept = {k: v for k, v in args.items() if v and k not in ("page", "fragment")}
    return url_for(endpoint, **kept, page=page) if page > 1 else url_for(endpoint, **kept)
