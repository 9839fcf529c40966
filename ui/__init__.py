"""Streamlit pieces of the app (the only package besides app.py that imports streamlit).

Each mode has a module with ``TITLE``, ``sidebar(defaults) -> params | None`` and optionally
``result_actions(run_dir, details) -> params | None`` (buttons under a finished run of that mode;
the result itself is drawn by ``ui.live``); ``MODES`` lists them in menu order.
"""

MODES = {"vqgan": "ui.vqgan", "diffusion": "ui.diffusion", "walk": "ui.walk", "upscale": "ui.upscale"}
