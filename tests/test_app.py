"""The Streamlit script, driven headless with AppTest."""

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from logic import runs

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def fill_vqgan_form(at, prompt="a red fox", steps=6):
    at.selectbox(key="vqgan_model").set_value("demo")
    at.text_area(key="vqgan_prompt").set_value(prompt)
    at.number_input(key="vqgan_width").set_value(48)
    at.number_input(key="vqgan_height").set_value(48)
    at.number_input(key="vqgan_steps").set_value(steps)
    at.number_input(key="vqgan_cutn").set_value(4)


def submit(at):
    next(b for b in at.button if b.key and b.key.startswith("FormSubmitter:vqgan_form")).click()
    at.run()


def wait_until(at, condition, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at.run()
        if condition(at):
            return
        time.sleep(0.5)
    raise AssertionError("timed out waiting for the app")


def test_without_weights_the_app_says_how_to_get_them_and_offers_demo():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    banner = " ".join(w.value for w in at.warning)
    assert "Demo models" in banner and "download-weights.sh" in banner
    assert at.selectbox(key="vqgan_model").value == "demo"


def test_a_demo_run_from_the_sidebar_ends_with_image_video_and_folder(atelier_dirs):
    at = AppTest.from_file(APP, default_timeout=120).run()
    fill_vqgan_form(at)
    submit(at)
    assert not at.exception and not at.error
    wait_until(at, lambda a: len(a.success) > 0)
    assert "Done: 6 steps." in at.success[0].value
    caption = next(c.value for c in at.caption if "Run folder" in c.value)
    run_dir = Path(caption.split("`")[1])
    assert run_dir.parent == atelier_dirs["output"]
    assert runs.read_details(run_dir)["status"] == runs.DONE
    assert (run_dir / "output.png").is_file() and (run_dir / "anim.mp4").is_file()


def test_bad_input_in_the_sidebar_is_one_sentence():
    at = AppTest.from_file(APP, default_timeout=120).run()
    fill_vqgan_form(at, prompt="   ")
    submit(at)
    assert not at.exception
    assert [e.value for e in at.error] == [
        'The prompt is empty: type what the image should show, e.g. "a red fox:1 | blurry:-0.5".']
