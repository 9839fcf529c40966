"""Atelier's Streamlit app: the sidebar drives every setting; runs go to a background worker.

Run with ``streamlit run app.py``. The worker lives in the server process (``queue.get_worker``),
so reloading the page reattaches to the run in progress instead of killing it. The queue is the
shared one on disk (``logic.queue``): runs queued by the CLI or the API show here, and a run another
process runs is followed from its folder.
"""

from __future__ import annotations

import importlib
import logging

import streamlit as st

from logic import devices, estimate, queue, runs, settings
from logic.engines import get_engine
from logic.errors import UserError
from logic.models.catalog import has_real_vqgan, installed_sd_models, sd_setup_hint, setup_hint
from ui import MODES, live, reuse

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
logging.getLogger("logic").setLevel(logging.INFO)


def get_worker(device: str) -> queue.Worker:
    """One worker per device and output folder, shared by every session of this server (the queue
    keeps it per process, so a page reload and a script rerun find the same one)."""
    return queue.get_worker(device, settings.output_dir())


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


def run_device(params: dict) -> str:
    return params.get("device") or settings.defaults().get("device")


def queue_run(mode: str, params: dict, errors=st) -> bool:
    """Queue a run; bad input is shown as one sentence in ``errors`` (by default where the call
    is drawn in the main area: above the result for the sidebar's Run, beside a result's buttons)."""
    params = dict(params)  # the pending copy in session state stays whole for a retry
    device = run_device(params)
    params.pop("device", None)
    try:
        state = get_worker(device).submit(mode, params)
    except UserError as exc:
        errors.error(reuse.plain_names(str(exc)))
        return False
    reuse.queued(params)
    st.session_state.watch = state.run_id
    st.session_state.device = device
    return True


ARTIST_MODES = ("vqgan", "diffusion", "walk")


def show_setup_banner(mode: str) -> None:
    """With no real weights for this mode: exactly how to get them, and that the demo works now."""
    if mode == "vqgan" and not has_real_vqgan():
        st.warning(f"**Demo models.** {setup_hint()} Demo images are coloured noise shaped by the loss.")
    elif mode in ("diffusion", "walk"):
        default_model = settings.defaults(mode).get("model") or settings.defaults("diffusion").get("model", "")
        if not installed_sd_models(default_model):
            st.warning(f"**Demo model.** {sd_setup_hint(default_model)} Demo images are coloured noise.")


QUICK_CAPTIONS = {"cpu": "No GPU found: small, quick defaults; raise them for full-size work.",
                  "demo": "Demo models: small, quick defaults; raise them for full-size work."}


def quick_reason(mode: str) -> str | None:
    """Why the sidebar starts at the quick settings of defaults.yaml's ``cpu:`` section: no CUDA GPU,
    or only the demo models of this mode (None: the full defaults)."""
    if not settings.has_quick_defaults(mode):
        return None
    if not devices.has_cuda():
        return "cpu"
    if mode == "vqgan" and not has_real_vqgan():
        return "demo"
    if mode in ("diffusion", "walk") and not installed_sd_models(settings.defaults(mode).get("model") or ""):
        return "demo"
    return None


def sidebar_defaults(mode: str) -> dict:
    reason = quick_reason(mode)
    if reason is None:
        return settings.defaults(mode)
    st.sidebar.caption(QUICK_CAPTIONS[reason])
    return settings.quick_defaults(mode)


def run_estimate(mode: str, params: dict) -> estimate.Estimate | None:
    """The time the run would take, or None when it cannot be told (the queue names a bad device)."""
    try:
        device = devices.resolve_device(run_device(params))
    except UserError:
        return None
    return estimate.estimate_run(mode, params, settings.output_dir(), device)


def input_is_valid(mode: str, params: dict) -> bool:
    """Bad input is named before any question about the run (queueing checks it again)."""
    try:
        get_engine(mode).build_spec({k: v for k, v in params.items() if k != "device"})
    except UserError as exc:
        st.error(str(exc))
        return False
    return True


def submit(mode: str, params: dict) -> None:
    """The sidebar's Run: artist matching and long runs are confirmed first, others are queued."""
    match_artist = mode in ARTIST_MODES and bool(st.session_state.get(f"{mode}_match_artist"))
    expected = run_estimate(mode, params)
    if not match_artist and not (expected is not None and expected.long):
        queue_run(mode, params)
    elif input_is_valid(mode, params):
        if match_artist:
            st.session_state.pending = (mode, params)
        else:
            st.session_state.pending_long = (mode, params, expected.describe())


def confirm_long_run(mode: str, params: dict, how_long: str) -> None:
    """A run estimated over ten minutes is queued only when the person says so."""
    st.warning(f"**This run will take {how_long}.** Queue it anyway, or make it smaller "
               "(fewer steps, a smaller size) in the sidebar.")
    row = st.container(horizontal=True)
    if row.button("Queue it", type="primary", key="pending_long_run"):
        del st.session_state["pending_long"]
        if queue_run(mode, params):
            st.rerun()
    if row.button("Cancel", key="pending_long_cancel"):
        del st.session_state["pending_long"]
        st.rerun()


def confirm_artist(mode: str, params: dict) -> None:
    """Before a run with 'Match artist style': the top 5 with their works; the user may pick another."""
    from ui.artists import artist_panel

    st.subheader("Artist style")
    expected = run_estimate(mode, params)
    if expected is not None and expected.long:
        st.warning(f"**This run will take {expected.describe()}.** Run queues it anyway.")
    prompt = params.get("prompt") or next(iter(params.get("prompts") or []), "")  # a walk matches its first
    choice = artist_panel(prompt, key="pending", demo=bool(params.get("demo")))
    run_col, cancel_col = st.columns([1, 4])
    if run_col.button("Run", type="primary", key="pending_run"):
        artist = choice["artist"] if choice else None
        if queue_run(mode, {**params, "match_artist": artist is not None, "artist": artist}):
            del st.session_state["pending"]
            st.rerun()
    if cancel_col.button("Cancel", key="pending_cancel"):
        del st.session_state["pending"]
        st.rerun()


def current_worker() -> queue.Worker:
    return get_worker(st.session_state.get("device") or settings.defaults().get("device"))


def main_area() -> None:
    """A running run is followed live by light fragments; a finished one is drawn once, statically."""
    worker = current_worker()
    state = live.watched_state(worker)
    if state is None or state.finished:
        show_finished(state)
        watch_for_new_run(state.run_id if state else None)
    else:
        follow_progress(state.run_id)
        follow_loss(state.run_id)


def show_finished(state) -> None:
    if state is None:
        st.info("Set up a run in the sidebar and press Run. Results appear here, and in output/.")
        live.show_recent(settings.output_dir())
        return
    sidebar_mode = st.session_state.get("mode")
    note = (f"The last run was a {title_of(state.mode)} run; the sidebar is set for {title_of(sidebar_mode)}."
            if state.mode != sidebar_mode else None)
    params = live.show_result(state, title_of(state.mode), note)
    follow_up = getattr(UI.get(state.mode), "result_actions", None)
    if follow_up:
        params = follow_up(state.run_dir, runs.open_run(state.run_dir).details) or params
    if params:
        queue_run(state.mode, params)


def title_of(run_mode: str) -> str:
    return getattr(UI.get(run_mode), "TITLE", run_mode)


@st.fragment(run_every=2.0)
def watch_for_new_run(shown_run_id: str | None) -> None:
    """While idle: switch to a run as soon as the worker starts one (queued here or elsewhere)."""
    worker = current_worker()
    current = worker.current()
    if current is not None and current.run_id != shown_run_id:
        st.rerun()
    live.show_queue(worker)


@st.fragment(run_every=1.0)
def follow_progress(run_id: str) -> None:
    """Progress, preview and queue every second (cheap); the whole page redraws when the run ends."""
    worker = current_worker()
    state = worker.state(run_id)
    if state is None or state.finished:
        st.rerun()
    live.show_progress(state, worker, title_of(state.mode))
    live.show_queue(worker)


@st.fragment(run_every=5.0)
def follow_loss(run_id: str) -> None:
    """The loss curve, less often: drawing a chart costs ~0.1 s of the interpreter the run also needs."""
    state = current_worker().state(run_id)
    if state is not None:
        # A run of another process has no history in memory: its metrics.jsonl has it.
        live.show_loss_curve(list(state.loss_history) or runs.read_metrics(state.run_dir))


st.set_page_config(page_title="Atelier", page_icon="🎨", layout="wide")
UI = available_modes()
st.sidebar.title("Atelier")
reuse.start_session(UI)  # the last settings, or the run of ?from=RUN_ID
mode = st.sidebar.radio("Mode", list(UI), format_func=lambda m: UI[m].TITLE, key="mode", horizontal=True)
reuse.restore(mode)
show_setup_banner(mode)
params = UI[mode].sidebar(sidebar_defaults(mode))
if mode in ARTIST_MODES:
    st.sidebar.toggle("Match artist style", key=f"{mode}_match_artist",
                      help="Find the artists in assets/artists closest to the prompt and paint it in their style")
reuse.remember(mode)
if params:
    # a new Run replaces any question still open about the previous one
    st.session_state.pop("pending", None)
    st.session_state.pop("pending_long", None)
    submit(mode, params)
if st.session_state.get("pending"):
    confirm_artist(*st.session_state.pending)
elif st.session_state.get("pending_long"):
    confirm_long_run(*st.session_state.pending_long)
reuse.show_notice()
main_area()
