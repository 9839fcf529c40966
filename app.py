"""Atelier's Streamlit app: the sidebar drives every setting; runs go to a background worker.

Run with ``streamlit run app.py``. The worker lives in the server process (``st.cache_resource``),
so reloading the page reattaches to the run in progress instead of killing it.
"""

from __future__ import annotations

import importlib
import logging

import streamlit as st

from logic import jobs, settings
from logic.errors import UserError
from logic.models.catalog import has_real_vqgan, setup_hint
from ui import MODES, live

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
logging.getLogger("logic").setLevel(logging.INFO)


@st.cache_resource
def get_worker(device: str) -> jobs.Worker:
    return jobs.get_worker(device, settings.output_dir())


def available_modes() -> dict:
    """Mode name -> its UI module, for the modes whose UI is installed."""
    found = {}
    for mode, module in MODES.items():
        try:
            found[mode] = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return found


def queue_run(mode: str, params: dict) -> None:
    device = params.pop("device", None) or settings.defaults().get("device")
    try:
        state = get_worker(device).submit(mode, params)
    except UserError as exc:
        st.sidebar.error(str(exc))
        return
    st.session_state.watch = state.run_id
    st.session_state.device = device


@st.fragment(run_every=1.0)
def live_panel() -> None:
    worker = get_worker(st.session_state.get("device") or settings.defaults().get("device"))
    state = live.watched_state(worker)
    if state is None:
        st.info("Set up a run in the sidebar and press Run. Results appear here, and in output/.")
        return
    if state.finished:
        live.show_result(state)
        follow_up = getattr(UI.get(state.mode), "result_actions", None)
        if follow_up:
            params = follow_up(state.run_dir, jobs.runs.open_run(state.run_dir).details)
            if params:
                queue_run(state.mode, params)
    else:
        live.show_progress(state, worker)
    live.show_queue(worker)


st.set_page_config(page_title="Atelier", page_icon="🎨", layout="wide")
UI = available_modes()
st.sidebar.title("Atelier")
mode = st.sidebar.radio("Mode", list(UI), format_func=lambda m: UI[m].TITLE, key="mode", horizontal=True)
if mode == "vqgan" and not has_real_vqgan():
    st.warning(f"**Demo models.** {setup_hint()} Demo images are coloured noise shaped by the loss.")
params = UI[mode].sidebar(settings.defaults(mode))
if params:
    queue_run(mode, params)
live_panel()
