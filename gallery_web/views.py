"""Plain dicts for every page: the HTML templates and the JSON twins are built from the same ones."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

from flask import url_for

from logic import runs

CURVE_POINTS = 400
CURVE_SIZE = (640, 200)


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


def run_summary(row) -> dict:
    """What a card on the index (and /api/runs) shows of one run."""
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
    }
    summary["thumb_url"] = _thumb_url(name, files, image, summary)
    summary["percent"] = _percent(summary["progress"])
    return summary


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


def run_detail(index, row, output_dir: Path) -> dict:
    """Everything the run page (and /api/runs/<id>) shows."""
    details = runs.effective_status(json.loads(row["details"]))
    run_dir = Path(output_dir) / row["name"]
    detail = run_summary(row)
    detail.update({
        "details": details, "params": runs.request_of(details), "resolved": runs.resolved_of(details), "seed": details.get("seed"),
        "error": details.get("error"), "timing": details.get("timing") or {},
        "models": details.get("model") or {}, "artist_match": details.get("artist_match"),
        "started": details.get("started"), "legacy": bool(details.get("legacy")),
        "inputs": _inputs(row["name"], run_dir, details),
        "parent": _lineage_link(index.get(row["parent_run_id"])) if row["parent_run_id"] else None,
        "children": [_lineage_link(child) for child in index.children(row["run_id"])],
        "curves": loss_curves(runs.read_metrics(run_dir)),
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


def loss_curves(rows: list[dict]) -> list[dict]:
    """An SVG polyline per loss metric ('loss', 'loss/<prompt>'), at most CURVE_POINTS points."""
    keys = sorted({k for r in rows for k in r if k == "loss" or k.startswith("loss")})
    return [curve for curve in (_curve(rows, key) for key in keys[:6]) if curve]


def _curve(rows: list[dict], key: str) -> dict | None:
    points = [(r.get("step", i), r[key]) for i, r in enumerate(rows)
              if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    if len(points) < 2:
        return None
    stride = max(1, math.ceil(len(points) / CURVE_POINTS))
    points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    (x0, x1), (y0, y1) = _extent(p[0] for p in points), _extent(p[1] for p in points)
    width, height = CURVE_SIZE
    svg = " ".join(f"{(x - x0) / (x1 - x0) * width:.1f},{height - (y - y0) / (y1 - y0) * height:.1f}"
                   for x, y in points)
    return {"name": key, "points": svg, "first": points[0][1], "last": points[-1][1],
            "min": y0, "max": y1, "steps": [x0, x1], "width": width, "height": height}


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
