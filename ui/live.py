"""The main area: the run being watched (live while it runs, results when it ends) and the queue."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from logic import jobs, queue, runs
from logic.commands.progress import format_seconds
from logic.errors import UserError
from ui import reuse


def watched_state(worker: queue.Worker) -> jobs.JobState | None:
    """The run this page follows: the one it queued while that is not finished, else whatever the
    worker is running (a reload reattaches), else the last finished one."""
    run_id = st.session_state.get("watch")
    mine = worker.state(run_id) if run_id else None
    if mine is not None and not mine.finished:
        return mine
    return worker.current() or mine or next(iter(worker.recent(1)), None)


def show_progress(state: jobs.JobState, worker: queue.Worker) -> None:
    total = state.total if state.total and state.total > 0 else None
    label = state.message or f"Step {state.step}/{total or '∞'}"
    if state.it_s:
        label += f" · {state.it_s:.2f} it/s"
    if state.eta_s is not None:
        label += f" · ETA {format_seconds(state.eta_s)}"
    st.progress(min(state.step / total, 1.0) if total else 0.0, text=label)
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


def show_loss_curve(rows: list[dict]) -> None:
    if len(rows) < 2:
        return
    import pandas as pd

    stride = max(1, len(rows) // CHART_POINTS)
    frame = pd.DataFrame(rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])).set_index("step")
    st.line_chart(frame, height=220, x_label="step", y_label="loss")


def show_result(state: jobs.JobState) -> None:
    run = runs.open_run(state.run_dir)
    details = run.details
    if state.status == runs.FAILED:
        st.error(state.error or "The run failed.")
    elif state.status == runs.STOPPED:
        st.warning(f"Stopped at step {state.step}; everything made so far was kept.")
    elif state.status == runs.INTERRUPTED:
        st.warning(state.error or "The program running this run stopped before it finished.")
        show_requeue(state)
    else:
        st.success(f"Done: {state.step} steps.")
    image = runs.output_image(run.path, details)
    width = display_width(int((details.get("size") or [DISPLAY_MIN])[0]))
    if image:
        st.image(file_bytes(image), caption=details.get("prompt_used") or details.get("prompt"), width=width)
    if run.file(runs.ANIM).is_file():
        st.video(file_bytes(run.file(runs.ANIM)), width=width)
    reuse.result_actions(run.path, details)
    st.caption(f"Run folder: `{run.path}`")
    if run.file(runs.METRICS).is_file():
        show_loss_curve(runs.read_metrics(run.path))
    with st.expander("details.json"):
        st.code(json.dumps(details, indent=2, default=str), language="json")


def show_queue(worker: queue.Worker) -> None:
    queued = worker.queued()
    if not queued:
        return
    st.subheader(f"Queue ({len(queued)})")
    st.caption("Every queued run of this output folder: from this app, the CLI (`--queue`) and the API.")
    for position, state in enumerate(queued):
        col1, col2, col3 = st.columns([5, 1, 1])
        col1.write(f"`{state.run_id}` {state.mode}: {state.params.get('prompt', '')[:80]}")
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
