"""The main area: the run being watched (live while it runs, results when it ends) and the queue."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from logic import jobs, queue, runs
from logic.commands.progress import format_seconds
from logic.errors import UserError
from ui import reuse

GRID = "grid.png"   # a batch's images side by side (logic/engines/diffusion.py)


def watched_state(worker: queue.Worker) -> jobs.JobState | None:
    """The run this page follows: the one it queued while that is not finished, else whatever the
    worker is running (a reload reattaches), else the last finished one."""
    run_id = st.session_state.get("watch")
    mine = worker.state(run_id) if run_id else None
    if mine is not None and not mine.finished:
        return mine
    return worker.current() or mine or next(iter(worker.recent(1)), None)


def run_prompt(params: dict) -> str:
    """The prompt a run is about (a walk: its keyframes joined)."""
    if params.get("prompts"):
        return " → ".join(str(p) for p in params["prompts"])
    return str(params.get("prompt") or params.get("image") or "")


def run_heading(title: str, params: dict) -> None:
    prompt = run_prompt(params)
    st.subheader(f"{title}: {prompt[:80]}{'…' if len(prompt) > 80 else ''}" if prompt else title)


# A run in progress ----------------------------------------------------------------------------------

def progress_label(state: jobs.JobState) -> str:
    total = state.total if state.total and state.total > 0 else None
    label = state.message or f"Step {state.step}/{total or '∞'}"
    if state.it_s:
        label += f" · {state.it_s:.2f} it/s"
    if state.eta_s is not None:
        label += f" · ETA {format_seconds(state.eta_s)}"
    return label


def progress_fraction(state: jobs.JobState) -> float:
    return min(state.step / state.total, 1.0) if state.total and state.total > 0 else 0.0


def show_progress(state: jobs.JobState, worker: queue.Worker, title: str) -> None:
    run_heading(title, state.params)
    if state.status == runs.QUEUED:
        st.info("Queued: it starts when the runs before it end (the queue is below).")
        return
    st.progress(progress_fraction(state), text=progress_label(state))
    if st.button("Stop", key=f"stop_{state.run_id}", help="Stops after this step and keeps what was made"):
        worker.stop(state.run_id)
        st.toast("Stopping…")
    if state.preview is not None:
        st.image(state.preview, caption="Live preview", width=display_width(state.preview.width))


DISPLAY_MIN = 384  # small (demo) images are scaled up for viewing


def display_width(image_width: int) -> int:
    return max(DISPLAY_MIN, min(image_width, 1024))


@st.cache_data(max_entries=16)
def read_file(path: str, mtime: float) -> bytes:
    """Result files, read once per version rather than at every refresh of the live panel."""
    return Path(path).read_bytes()


def file_bytes(path: Path) -> bytes:
    return read_file(str(path), path.stat().st_mtime)


CHART_POINTS = 400  # a long run's curve is thinned to this many points for drawing


def loss_frame(rows: list[dict]):
    """The loss rows as one column per distinct curve, indexed by step: each prompt's loss (and TV,
    MSE), then the total only where it differs from them (with one prompt its loss is the total)."""
    import pandas as pd

    stride = max(1, len(rows) // CHART_POINTS)
    frame = pd.DataFrame(rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])).set_index("step")
    frame = frame.select_dtypes("number")
    parts = [c for c in frame.columns if c != "loss"] + (["loss"] if "loss" in frame.columns else [])
    kept: list[str] = []
    for column in parts:
        if not any(frame[column].equals(frame[other]) for other in kept):
            kept.append(column)
    names = {c: "total" if c == "loss" else c.removeprefix("loss/") for c in kept}
    if len(kept) == 1:
        names = {kept[0]: "loss"}
    return frame[kept].rename(columns=names)


def show_loss_curve(rows: list[dict]) -> None:
    if len(rows) < 2:
        return
    st.line_chart(loss_frame(rows), height=220, x_label="step", y_label="loss")


# The result of a finished run -----------------------------------------------------------------------

@dataclass
class ShownImage:
    """One image of a result, with what a person reuses it by."""

    path: Path
    seed: int | None
    caption: str
    key: str              # unique per image on the page, for widget keys
    alone: bool = False   # one of a batch: "Again, alone" reruns just this one
    keyframe: bool = False  # a walk's keyframe: its seed and image can be reused


def show_result(state: jobs.JobState, title: str, note: str | None = None) -> dict | None:
    """A finished run: its mode and prompt (``note`` under them), how it ended, every image with its
    seed and download, the video, the loss curve and the details. Returns params to queue when a
    button asks for a run."""
    run = runs.open_run(state.run_dir)
    details = run.details
    run_heading(title, runs.resolved_of(details) or details)
    if note:
        st.caption(note)
    show_outcome(state, details)
    show_notes(details)
    follow_up = None
    walk = details.get("mode") == "walk"
    if walk:
        show_video(run, details)  # a walk's result is its video; the keyframes follow
    for shown in result_images(run, details):
        follow_up = show_image(run, details, shown) or follow_up
    grid = run.file(GRID)
    if runs.is_regular_file(grid):
        st.image(file_bytes(grid), caption="All images of the batch side by side", width=display_width(image_width(grid)))
        download(grid, "Download the grid", f"{run.run_id}-grid.png", key=f"dl_grid_{run.run_id}")
    if not walk:
        show_video(run, details)  # how the image came to be
    follow_up = run_actions(run, details) or follow_up
    st.caption(f"Run folder: `{run.path}`")
    if run.file(runs.METRICS).is_file():
        show_loss_curve(runs.read_metrics(run.path))
    with st.expander("details.json"):
        st.code(json.dumps(details, indent=2, default=str), language="json")
    return follow_up


def show_outcome(state: jobs.JobState, details: dict) -> None:
    if state.status == runs.FAILED:
        st.error(state.error or "The run failed.")
    elif state.status == runs.STOPPED:
        st.warning(f"Stopped at step {state.step}; everything made so far was kept.")
    elif state.status == runs.INTERRUPTED:
        st.warning(state.error or "The program running this run stopped before it finished.")
        show_requeue(state)
    else:
        st.success(done_message(state, details))


def done_message(state: jobs.JobState, details: dict) -> str:
    """What was made, in the mode's unit: frames and seconds of video, images, or steps."""
    resolved = runs.resolved_of(details)
    if details.get("mode") == "walk":
        frames = int(details.get("frames") or details.get("frames_made") or 0)
        fps = float(resolved.get("fps") or 12)
        return f"Done: {frames} frames ({frames / fps:.1f} s of video)."
    images = details.get("images") or []
    if len(images) > 1:
        return f"Done: {len(images)} images, {resolved.get('steps') or state.step} steps each."
    if details.get("mode") == "upscale":
        return "Done: upscaled."
    return f"Done: {state.step} steps."


def show_notes(details: dict) -> None:
    """What the run says about its result (size rounding, prompt truncation, the safety checker)."""
    for note in (details.get("prompt_encoding") or {}).get("notes") or []:
        st.info(note)
    if details.get("size_note"):
        st.info(details["size_note"])
    if details.get("safety"):
        st.warning(details["safety"])


def result_images(run: runs.Run, details: dict) -> list[ShownImage]:
    """The images a run made, each with its seed: every image of a batch, a walk's keyframes,
    else the output image."""
    prompt = details.get("prompt_used") or details.get("prompt") or ""
    if details.get("mode") == "walk":
        return [ShownImage(run.path / k["file"], k.get("seed"), f"Keyframe {i + 1}: {k.get('prompt', '')}",
                           key=f"{run.run_id}_k{i}", keyframe=True)
                for i, k in enumerate(details.get("keyframes") or []) if runs.is_regular_file(run.path / k["file"])]
    records = details.get("images") or []
    if len(records) > 1:
        return [ShownImage(run.path / r["file"], r.get("seed"), f"Image {i + 1} of {len(records)}",
                           key=f"{run.run_id}_i{i}", alone=True)
                for i, r in enumerate(records) if runs.is_regular_file(run.path / r["file"])]
    image = runs.output_image(run.path, details)
    return [ShownImage(image, image_seed(details), prompt, key=f"{run.run_id}_o")] if image else []


def image_seed(details: dict) -> int | None:
    records = details.get("images") or []
    if records and records[0].get("seed") is not None:
        return records[0]["seed"]
    seed = details.get("seed")
    return seed if seed is not None else runs.resolved_of(details).get("seed")


def image_width(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return image.width


def show_image(run: runs.Run, details: dict, shown: ShownImage) -> dict | None:
    """One image at full width with its seed in the caption, and its buttons under it."""
    size = runs.resolved_of(details).get("size") or details.get("size") or [DISPLAY_MIN]
    seed_text = f"seed {shown.seed}" if shown.seed is not None else "seed unknown"
    st.image(file_bytes(shown.path), caption=f"{shown.caption} · {seed_text}" if shown.caption else seed_text,
             width=display_width(int(size[0])))
    return image_actions(run, shown)


def image_actions(run: runs.Run, shown: ShownImage) -> dict | None:
    """The row of buttons under one image: its download, and what reuses it."""
    row = st.container(horizontal=True, vertical_alignment="center")
    name = f"{run.run_id}-seed{shown.seed}.png" if shown.seed is not None else f"{run.run_id}-{shown.path.name}"
    download(shown.path, "Download image", name, key=f"dl_{shown.key}", where=row)
    if shown.alone and row.button("Again, alone", key=f"sd_again_{shown.key}",
                                  help="Queue this image again on its own, with its seed"):
        params = runs.rerun_request(run)
        params.update(seed=shown.seed, batch_size=1, batch_count=1)
        return params
    if shown.alone or shown.keyframe:  # a single image's reuse buttons are the run's own (run_actions)
        reuse.image_actions(row, run.path, run.details, shown.path, shown.seed, shown.key)
    return None


def show_video(run: runs.Run, details: dict) -> None:
    """The run's video with its downloads (mp4, and the GIF when there is one)."""
    video = run.file(runs.ANIM)
    if runs.is_regular_file(video):
        size = runs.resolved_of(details).get("size") or [DISPLAY_MIN]
        st.video(file_bytes(video), width=display_width(int(size[0])))
        row = st.container(horizontal=True)
        download(video, "Download video (mp4)", f"{run.run_id}.mp4", key=f"dl_mp4_{run.run_id}", where=row)
        gif = run.file(runs.GIF)
        if runs.is_regular_file(gif):
            download(gif, "Download GIF", f"{run.run_id}.gif", key=f"dl_gif_{run.run_id}", where=row)


def run_actions(run: runs.Run, details: dict) -> dict | None:
    """The buttons for the whole run, under its images and video: what reuses the run."""
    reuse.result_actions(run.path, details)
    return None


MIME = {".png": "image/png", ".mp4": "video/mp4", ".gif": "image/gif", ".jpg": "image/jpeg"}


def download(path: Path, label: str, file_name: str, key: str, where=st) -> None:
    # on_click="ignore": a download must not rerun the page (that would redraw a long result)
    where.download_button(label, file_bytes(path), file_name=file_name, mime=MIME.get(path.suffix),
                          key=key, on_click="ignore")


# The queue ------------------------------------------------------------------------------------------

def show_queue(worker: queue.Worker) -> None:
    """The running run first with its own progress bar, then the waiting ones in order."""
    running, queued = worker.current(), worker.queued()
    if running is None and not queued:
        return
    st.subheader(f"Queue ({len(queued)})")
    st.caption("Every run of this output folder: from this app, the CLI (`--queue`) and the API.")
    if running is not None:
        col1, col2 = st.columns([5, 2])
        col1.markdown(f"**Running** `{running.run_id}` {running.mode}: {run_prompt(running.params)[:80]}")
        col1.progress(progress_fraction(running), text=progress_label(running))
        if col2.button("Stop", key=f"queue_stop_{running.run_id}", help="Stops after this step and keeps what was made"):
            _act(worker.stop, running.run_id)
    for position, state in enumerate(queued):
        col1, col2, col3 = st.columns([5, 1, 1])
        col1.markdown(f"**{position + 1}.** `{state.run_id}` {state.mode}: {run_prompt(state.params)[:80]}")
        if position and col2.button("To front", key=f"front_{state.run_id}"):
            _act(worker.move_to_front, state.run_id)
        if col3.button("Remove", key=f"remove_{state.run_id}"):
            _act(worker.stop, state.run_id)


def _act(action, run_id: str) -> None:
    try:
        action(run_id)
    except UserError as exc:  # e.g. the run started meanwhile
        st.warning(str(exc))
        return
    st.rerun()


def show_requeue(state: jobs.JobState) -> None:
    """An interrupted run (its worker died) can be queued again in the same folder."""
    if state.status == runs.INTERRUPTED and st.button("Queue again", key=f"requeue_{state.run_id}",
                                                      help="Run it again from the start, same settings and seed"):
        _act(lambda run_id: queue.requeue(runs.open_run(state.run_dir)), state.run_id)


@st.cache_data(ttl=5, show_spinner=False)
def recent_runs(output_dir: str, limit: int = 8) -> list[dict]:
    """The newest runs with an image, for the idle main area (cached: the panel refreshes every second)."""
    found = []
    for run in runs.list_runs(output_dir, limit=limit * 2):
        thumb = run.file(runs.THUMB) if runs.is_regular_file(run.file(runs.THUMB)) else runs.output_image(run.path, run.details)
        if thumb:
            found.append({"thumb": str(thumb), "prompt": run.details.get("prompt") or "", "mode": run.details.get("mode"),
                          "status": run.details.get("status"), "folder": run.path.name})
    return found[:limit]


def show_recent(output_dir) -> None:
    items = recent_runs(str(output_dir))
    if not items:
        return
    st.subheader("Recent runs")
    columns = st.columns(4)
    for index, item in enumerate(items):
        column = columns[index % 4]
        column.image(file_bytes(Path(item["thumb"])), width="stretch")
        column.caption(f"{item['prompt'][:60]} · {item['mode']} · {item['status']}")
        reuse.recent_actions(column, Path(output_dir) / item["folder"])
    st.caption("Browse every run, search and watch live: `python gallery.py` (http://127.0.0.1:5000).")
