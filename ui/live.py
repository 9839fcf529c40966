"""The main area: the run being watched (live while it runs, results when it ends) and the queue."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from logic import jobs, runs
from logic.commands.progress import format_seconds


def watched_state(worker: jobs.Worker) -> jobs.JobState | None:
    """The run this page follows: the one it queued, else whatever the worker is doing (a reload reattaches)."""
    run_id = st.session_state.get("watch")
    state = worker.state(run_id) if run_id else None
    return state or worker.current() or next(iter(worker.recent(1)), None)


def show_progress(state: jobs.JobState, worker: jobs.Worker) -> None:
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
        st.image(state.preview, caption="Live preview", width="content")
    show_loss_curve(list(state.loss_history))


def show_loss_curve(rows: list[dict]) -> None:
    if len(rows) < 2:
        return
    keys = [k for k in rows[-1] if k != "step"]
    chart = {k: [row.get(k) for row in rows] for k in keys}
    st.line_chart(chart, height=200, x_label="step", y_label="loss")


def show_result(state: jobs.JobState) -> None:
    run = runs.open_run(state.run_dir)
    details = run.details
    if state.status == runs.FAILED:
        st.error(state.error or "The run failed.")
    elif state.status == runs.STOPPED:
        st.warning(f"Stopped at step {state.step}; everything made so far was kept.")
    else:
        st.success(f"Done: {state.step} steps.")
    image = runs.output_image(run.path, details)
    if image:
        st.image(str(image), caption=details.get("prompt_used") or details.get("prompt"), width="content")
    if run.file(runs.ANIM).is_file():
        st.video(str(run.file(runs.ANIM)))
    st.caption(f"Run folder: `{run.path}`")
    if run.file(runs.METRICS).is_file():
        show_loss_curve(runs.read_metrics(run.path))
    with st.expander("details.json"):
        st.code(json.dumps(details, indent=2, default=str), language="json")


def show_queue(worker: jobs.Worker) -> None:
    queued = worker.queued()
    if not queued:
        return
    st.subheader(f"Queue ({len(queued)})")
    for state in queued:
        col1, col2 = st.columns([5, 1])
        col1.write(f"`{state.run_id}` {state.mode}: {state.params.get('prompt', '')[:80]}")
        if col2.button("Remove", key=f"remove_{state.run_id}"):
            worker.stop(state.run_id)
            st.rerun()
