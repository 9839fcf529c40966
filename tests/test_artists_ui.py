"""The artist panel, headless through Streamlit's AppTest."""

import pytest
from streamlit.testing.v1 import AppTest


def panel_script(folder: str, prompt: str):
    import streamlit as st

    from logic.artists import artist_settings
    from ui.artists import artist_panel

    st.session_state["choice"] = artist_panel(prompt, "test", settings=artist_settings(folder=folder, demo=True,
                                                                                        threshold=0.0))


@pytest.fixture
def demo_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ATELIER_ASSETS", str(tmp_path / "assets"))
    from logic.artists.demo import ensure_demo_artists

    return ensure_demo_artists(tmp_path / "lib")


def run(folder, prompt):
    app = AppTest.from_function(panel_script, args=(str(folder), prompt), default_timeout=60)
    return app.run()


def test_panel_shows_top_five_with_thumbnails_and_returns_the_choice(demo_env):
    app = run(demo_env, "blue stripes")
    assert not app.exception
    radio = app.radio[0]
    assert len(radio.options) == 6 and radio.options[-1] == "No artist"
    images = app.get("image")
    assert len(images) == 5  # one row of thumbnails per artist
    assert all(len(row.proto.imgs) == 3 for row in images)
    choice = app.session_state["choice"]
    assert choice["artist"] == radio.value and choice["rewritten_prompt"].endswith(choice["artist"])
    assert choice["record"]["artist"] == choice["artist"]
    other = radio.options[2]
    app = radio.set_value(other).run()
    assert app.session_state["choice"]["artist"] == other
    assert app.session_state["choice"]["record"]["chosen_by_user"] is True
    app = app.radio[0].set_value("No artist").run()
    assert app.session_state["choice"] is None


def test_panel_with_no_artists_says_how_to_add_some(tmp_path, monkeypatch):
    monkeypatch.setenv("ATELIER_ASSETS", str(tmp_path / "assets"))
    app = run(tmp_path / "empty", "a cat")
    assert not app.exception and "No artists yet" in app.info[0].value
    assert app.session_state["choice"] is None
