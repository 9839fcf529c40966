"""Settings that last, and reusing any run: its settings, its seed, its image, its latent.

Streamlit forgets a widget's value when the widget is not drawn (another mode, another task), so
each mode's values are kept in ``kept_settings`` and put back before its sidebar is drawn; the
same copy is saved to ``output/.app-settings.json`` so a reload (or a new tab) starts where the
last one was. Uploaded files cannot be kept by a browser page; a file taken from a run (or kept
from before a reload) is a *loaded file*: the sidebar names it, with a Clear button, in place of
its uploader. Which widget shows which request parameter is in ``ui.fields``.

The buttons use ``on_click`` callbacks: those run before the next script run, when widget values
may still be set.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import streamlit as st

from logic import runs, settings
from logic.errors import UserError
from ui import fields

log = logging.getLogger(__name__)

KEPT = "kept_settings"          # widget key -> value, every mode's
LOADED = "loaded_files"         # uploader key -> {"value": param value, "label": sentence for the sidebar}
CONTINUE = "vqgan_continue"     # {"path", "run_id"}: the VQGAN sidebar continues this run
NOTICE = "reuse_notice"         # (kind, sentence) for the main area, shown once
NAMES = "upload_names"          # stored path -> the name the person knows it by
SAVED = "settings_saved"        # what the settings file holds now (written only when it changes)
SETTINGS_FILE = ".app-settings.json"   # in output/: dot names are not runs
MAX_SETTINGS_BYTES = 1_000_000
FILE_WORDS = {"init_image": "Init image", "image_prompts": "Image prompts", "mask": "Mask", "image": "Image"}


# --- Kept settings: per mode, and across reloads ----------------------------------------------


def start_session(modes) -> None:
    """Before the mode is drawn: a new session takes the saved settings; ``?from=RUN_ID`` loads a run."""
    state = st.session_state
    if KEPT not in state:
        saved = read_saved()
        state[KEPT] = {k: v for k, v in (saved.get("fields") or {}).items() if fields.valid(k, v)}
        state[LOADED] = {k: v for k, v in (saved.get("files") or {}).items() if _loaded_ok(v)}
        if _continue_ok(saved.get("continue")):
            state[CONTINUE] = saved["continue"]
        if saved.get("mode") in modes:
            state["mode"] = saved["mode"]
    run_id = st.query_params.get("from")
    if run_id:
        del st.query_params["from"]  # loaded once: a reload keeps what the person changed since
        load_run_id(run_id)


def restore(mode: str) -> None:
    """Put back this mode's kept values that Streamlit dropped while its widgets were not drawn."""
    state, kept = st.session_state, st.session_state[KEPT]
    for key in fields.mode_keys(mode, list(kept)):
        if key not in state:
            state[key] = kept[key]


def remember(mode: str) -> None:
    """After the sidebar is drawn: keep its values, and save them when anything changed.

    Every mode's keys, not only this one's: an edit can reach the app in the same script run as the
    switch to another mode (the browser sends all widget values with the click), and that run is
    the last one in which the old mode's values are in the session state."""
    state, kept = st.session_state, st.session_state[KEPT]
    for other in fields.FIELDS:
        for key in fields.mode_keys(other, list(state.keys())):
            kept[key] = state[key]
    snapshot = {"mode": mode, "fields": kept, "files": state.get(LOADED, {}), "continue": state.get(CONTINUE)}
    if state.get(SAVED) != snapshot:
        try:
            settings_path().parent.mkdir(parents=True, exist_ok=True)
            runs.write_json_atomic(settings_path(), snapshot)
        except OSError as exc:  # settings are a convenience: a full or read-only disk costs only them
            log.warning("The app's settings could not be saved to %s: %s", settings_path(), exc)
        state[SAVED] = json.loads(json.dumps(snapshot, default=str))


def settings_path() -> Path:
    return settings.output_dir() / SETTINGS_FILE


def read_saved() -> dict:
    """The settings file, or {} when it is missing or not ours to trust (each value is checked later)."""
    path = settings_path()
    try:
        if not runs.is_regular_file(path) or path.stat().st_size > MAX_SETTINGS_BYTES:
            return {}
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("The app's settings in %s are unreadable and were left aside: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _loaded_ok(item) -> bool:
    return (isinstance(item, dict) and isinstance(item.get("label"), str) and isinstance(item.get("run_id"), str)
            and isinstance(item.get("value"), (str, list)))


def _continue_ok(item) -> bool:
    return isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("run_id"), str)


def _set(values: dict) -> None:
    state = st.session_state
    for key, value in values.items():
        state[key] = value
        if key != "mode":
            state[KEPT][key] = value


# --- Loading a run --------------------------------------------------------------------------


def load_run_id(run_id: str) -> None:
    """``?from=RUN_ID``: that run's settings, or one sentence when there is no such run."""
    run = runs.find_run(settings.output_dir(), run_id)
    if run is None:
        notice("warning", f"There is no run {run_id!r} in {settings.output_dir()}: "
                          "the settings in the sidebar are the ones you had.")
        return
    load_run(run.path)


def open_for_reuse(run_dir) -> tuple[runs.Run, str] | None:
    """The run and its mode, or None (with a sentence) when the app has no sidebar for it."""
    try:
        run = runs.open_run(run_dir)
    except UserError as exc:
        notice("error", str(exc))
        return None
    mode = run.details.get("mode")
    if mode not in fields.FIELDS:
        notice("warning", f"Run {run.run_id} is a {mode or 'legacy'} run: the app has no sidebar for it.")
        return None
    return run, mode


def effective_request(run: runs.Run) -> dict:
    """What the run was asked, with its recorded seed and models (and the SD task it ran); for a
    continued run, with what it took from its parent (its own request names only what it changed)."""
    request = runs.rerun_request(run)
    if run.details.get("mode") == "diffusion" and not request.get("task"):
        request["task"] = runs.resolved_of(run.details).get("task")  # inferred: img2img when an image was given
    if run.details.get("mode") == "vqgan" and request.get("continue_from"):
        from logic.vqgan import continuation

        request = {**continuation.inherited_params(request["continue_from"]), **request}
    return request


def load_run(run_dir) -> None:
    """"Use these settings": the run's request into its mode's sidebar, switching to that mode."""
    found = open_for_reuse(run_dir)
    if found is None:
        return
    run, mode = found
    request = effective_request(run)
    apply_request(mode, request, run.run_id)
    st.session_state.pop(CONTINUE, None)
    if mode == "vqgan" and request.get("continue_from"):
        parent = Path(request["continue_from"])
        st.session_state[CONTINUE] = {"path": str(parent), "run_id": run.details.get("parent_run_id") or parent.name}
    notice("info", f"The settings of run {run.run_id} are in the sidebar: change what you like and press Run.")


def apply_request(mode: str, request: dict, run_id: str) -> None:
    """Every widget of the mode from ``request``; what the request left unset goes back to its default."""
    state = st.session_state
    for key in fields.mode_keys(mode, list(state.keys())):
        del state[key]
    for key in fields.mode_keys(mode, list(state[KEPT])):
        del state[KEPT][key]
    values = fields.widget_values(mode, request)
    if mode in fields.LORA_KEYS:
        values = _installed_loras(fields.LORA_KEYS[mode], values)
    _set({**values, "mode": mode})
    loaded = state.setdefault(LOADED, {})
    for param, key in {**fields.FILES.get(mode, {}), **fields.file_keys(mode, request)}.items():
        loaded.pop(key, None)
        if request.get(param):
            loaded[key] = loaded_item(param, request[param], run_id)


def _installed_loras(prefix: str, values: dict) -> dict:
    """LoRAs a run used that are not installed here are left out (the multiselect cannot show them)."""
    from ui import sd_widgets as w

    installed = set(w.sd.list_loras(w.sd_common.loras_dir()))
    chosen = [name for name in values.get(f"{prefix}loras", []) if name in installed]
    kept = {k: v for k, v in values.items() if not k.startswith((f"{prefix}loras", f"{prefix}lora_w_"))}
    kept.update({f"{prefix}lora_w_{name}": values[f"{prefix}lora_w_{name}"] for name in chosen})
    return {**kept, f"{prefix}loras": chosen}


def loaded_item(param: str, value, run_id: str) -> dict:
    return {"value": value, "run_id": run_id, "label": f"{FILE_WORDS[param]}: {_file_name(value)} from run {run_id}"}


def _file_name(value) -> str:
    if isinstance(value, list):
        return ", ".join(_file_name(v) for v in value)
    if isinstance(value, dict):
        value = value.get("path", "")
    return Path(str(value)).name


def use_seed(mode: str, seed: int) -> None:
    """"Reuse this seed": the seed field of the run's mode (a walk's one seed for every keyframe)."""
    _set({fields.seed_key(mode): str(seed), "mode": mode})
    notice("info", f"Seed {seed} is in the sidebar.")


def send_to_img2img(image: str, run_id: str) -> None:
    """The image as Stable Diffusion's img2img init image; the other SD settings stay as they are."""
    _set({"mode": "diffusion", "sd_task": "img2img"})
    st.session_state.setdefault(LOADED, {})["sd_init_image"] = loaded_item("init_image", image, run_id)
    notice("info", f"The image of run {run_id} is the init image of Stable Diffusion's img2img.")


def use_as_init(image: str, run_id: str) -> None:
    """The image as the VQGAN init image (a fresh run: not a continuation)."""
    _set({"mode": "vqgan"})
    st.session_state.pop(CONTINUE, None)
    st.session_state.setdefault(LOADED, {})["vqgan_init_image"] = loaded_item("init_image", image, run_id)
    notice("info", f"The image of run {run_id} is the VQGAN init image.")


def continue_run(run_dir) -> None:
    """The run's settings into the VQGAN sidebar, which then continues it (its latent and optimiser)."""
    found = open_for_reuse(run_dir)
    if found is None:
        return
    run, _ = found
    apply_request("vqgan", effective_request(run), run.run_id)
    st.session_state[LOADED].pop("vqgan_init_image", None)  # a continued run starts from the latent
    st.session_state[CONTINUE] = {"path": str(Path(run.path).resolve()), "run_id": run.run_id}
    notice("info", f"The sidebar continues run {run.run_id}: change size, steps or anything else, then press Run.")


def clear_loaded(key: str) -> None:
    st.session_state.get(LOADED, {}).pop(key, None)


def stop_continuing() -> None:
    st.session_state.pop(CONTINUE, None)


def queued(params: dict) -> None:
    """After a run was queued: a continuation is done with (pressing Run again starts fresh)."""
    if params.get("continue_from"):
        st.session_state.pop(CONTINUE, None)


# --- Sidebar panels ---------------------------------------------------------------------------


def loaded_file(key: str):
    """A loaded file standing in for uploader ``key``: shown with a Clear button; its param value."""
    item = st.session_state.get(LOADED, {}).get(key)
    if not item:
        return None
    st.sidebar.caption(item["label"])
    st.sidebar.button("Clear", key=f"clear_{key}", on_click=clear_loaded, args=(key,),
                      help="Use no file here, or upload one")
    return item["value"]


def continuing() -> str | None:
    """The run the VQGAN sidebar continues (a panel says so, with a way back), or None."""
    target = st.session_state.get(CONTINUE)
    if not target:
        return None
    st.sidebar.info(f"Continues run {target['run_id']}: Run goes on from its latent with the settings below.")
    st.sidebar.button("Start fresh instead", key="stop_continuing", on_click=stop_continuing)
    return target["path"]


# --- Buttons in the main area -------------------------------------------------------------------


def result_actions(run_dir, details: dict) -> None:
    """Under the finished run: its settings, seed and image to the sidebar."""
    buttons = _actions(Path(run_dir), details, "result", continue_label="Continue with other settings")
    with st.container(horizontal=True):
        for label, callback, args, key, help_text in buttons:
            st.button(label, key=key, on_click=callback, args=args, help=help_text)


def recent_actions(column, run_dir) -> None:
    """Under a recent run's thumbnail: "Use these settings", and the rest in a small menu."""
    try:
        run = runs.open_run(run_dir)
    except UserError:
        return
    buttons = _actions(run.path, run.details, "recent")
    if not buttons:
        return
    first, *rest = buttons
    label, callback, args, key, help_text = first
    column.button(label, key=key, on_click=callback, args=args, help=help_text, width="stretch")
    if rest:
        with column.popover("More", width="stretch"):
            for label, callback, args, key, help_text in rest:
                st.button(label, key=key, on_click=callback, args=args, help=help_text, width="stretch")


def image_actions(where, run_dir, details: dict, image: Path, seed: int | None, key: str) -> None:
    """Under one image of a batch: reuse its own seed, or send it to img2img."""
    run_id = details.get("run_id")
    if seed is not None:
        where.button("Reuse this seed", key=f"reuse_seed_{key}", on_click=use_seed, args=(details.get("mode"), seed))
    where.button("Send to img2img", key=f"reuse_img2img_{key}", on_click=send_to_img2img, args=(str(image), run_id))


def _actions(path: Path, details: dict, where: str, continue_label: str = "Continue this run") -> list[tuple]:
    """(label, callback, args, key, help) of every reuse that fits this run."""
    mode, run_id = details.get("mode"), details.get("run_id") or path.name
    if mode not in fields.FIELDS:
        return []
    key = f"reuse_{where}_{run_id}"
    found = [("Use these settings", load_run, (str(path),), f"{key}_settings",
              "Put this run's settings in the sidebar (its seed included)")]
    seed = details.get("seed")
    if seed is not None and len(details.get("images") or []) <= 1 and fields.seed_key(mode):
        found.append((f"Reuse seed {seed}", use_seed, (mode, seed), f"{key}_seed", "Only the seed, in the sidebar"))
    image = runs.output_image(path, details)
    if image and mode in ("vqgan", "diffusion"):
        found.append(("Send to img2img", send_to_img2img, (str(image), run_id), f"{key}_img2img",
                      "Stable Diffusion img2img with this image as the init image"))
        found.append(("Use as init image", use_as_init, (str(image), run_id), f"{key}_init",
                      "A VQGAN+CLIP run that starts from this image"))
    if mode == "vqgan" and details.get("status") in (runs.DONE, runs.STOPPED) and (path / "state.pt").is_file():
        found.append((continue_label, continue_run, (str(path),), f"{key}_continue",
                      "Go on from this run's latent; size, steps and the rest can change first"))
    return found


# --- Words for the person -----------------------------------------------------------------------


def notice(kind: str, sentence: str) -> None:
    st.session_state[NOTICE] = (kind, sentence)


def show_notice() -> None:
    """The sentence the last reuse left for the main area, once."""
    kind, sentence = st.session_state.pop(NOTICE, (None, None))
    if sentence:
        getattr(st, kind)(sentence)


def note_file_name(path, name: str) -> None:
    st.session_state.setdefault(NAMES, {})[str(path)] = name


def plain_names(message: str) -> str:
    """An error sentence with the person's names for files: an upload's own name, not its stored copy."""
    names = dict(st.session_state.get(NAMES, {}))
    for item in st.session_state.get(LOADED, {}).values():
        for value in item["value"] if isinstance(item["value"], list) else [item["value"]]:
            path = value.get("path") if isinstance(value, dict) else str(value)
            if path:
                names.setdefault(path, f"{Path(path).name} of run {item['run_id']}")
    for path in sorted(names, key=len, reverse=True):
        message = message.replace(path, names[path])
    return message
