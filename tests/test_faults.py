"""Faults keep what was made: a disk that fills at any moment, stop signals, unexpected failures.

The disk fills by injection: every write to the targeted file writes half of what it was given and
then raises ENOSPC, as a real full disk does (Pillow, torch.save, JSON and metrics all write through
``open``; ffmpeg's writer is wrapped the way imageio reports a dead encoder). The run goes through
the CLI's own entry point; afterwards every file in the folder must be whole, no temp file may be
left, the earlier run must be byte for byte the same, and stderr must hold the sentence and no
traceback. test_a_real_full_disk repeats this on a real, tiny tmpfs where the system allows mounts.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from logic import jobs, media, runs
from logic.__main__ import main

DEMO = ["--demo", "--size", "48", "48", "--cutn", "2", "--seed", "3", "--every", "2", "--no-augment",
        "--device", "cpu"]
INJECTED: list[str] = []   # every fault injected in this module, for the closing figures


class _Filling:
    """A file on a disk that fills: half of the first write lands, then ENOSPC."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, data):
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        INJECTED.append(getattr(self._handle, "name", "?"))
        raise OSError(errno.ENOSPC, "No space left on device")

    def fileno(self):
        # Pillow writes straight to a file descriptor when it has one: make it use ``write``
        raise io.UnsupportedOperation("fileno")

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def fill_disk_at(monkeypatch, fragment: str, when=lambda: True, times: int | None = None) -> None:
    """Writes to files whose name holds ``fragment`` fail (once ``when()``; ``times`` writes, or all),
    the rest succeed."""
    real_open = builtins.open
    failed = []

    def fake_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") \
                and fragment in Path(file).name and when() and (times is None or len(failed) < times):
            failed.append(file)
            return _Filling(handle)
        return handle

    monkeypatch.setattr(builtins, "open", fake_open)


def fill_disk_in_video(monkeypatch, at_frame: int = 2) -> None:
    """ffmpeg dies on a full disk: imageio then raises a plain OSError quoting ffmpeg's stderr."""
    import imageio.v2 as imageio

    real_get_writer = imageio.get_writer

    class DyingWriter:
        def __init__(self, path, **kwargs):
            self.path, self.real, self.frames = Path(path), real_get_writer(path, **kwargs), 0

        def append_data(self, frame):
            self.frames += 1
            if self.frames == at_frame:
                self.real.close()
                os.truncate(self.path, self.path.stat().st_size // 2)
                INJECTED.append(self.path.name)
                raise OSError("[Errno 32] Broken pipe\n\nFFMPEG STDERR OUTPUT:\nav_interleaved_write_frame(): "
                              "No space left on device")
            self.real.append_data(frame)

        def close(self):
            self.real.close()

    monkeypatch.setattr(imageio, "get_writer", DyingWriter)


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_nothing_pretends(run_dir: Path) -> None:
    """Every file present is whole; no temp file is left behind."""
    hidden = [p.name for p in run_dir.rglob(".*")]
    assert hidden == [], hidden
    json.loads((run_dir / "details.json").read_text())
    for name in ("output.png", "thumb.jpg"):
        if (run_dir / name).exists():
            with Image.open(run_dir / name) as image:
                image.load()
    if (run_dir / "state.pt").exists():
        assert "z" in torch.load(run_dir / "state.pt", weights_only=True)
    if (run_dir / "anim.mp4").exists():
        assert media.count_frames(run_dir / "anim.mp4") > 0
    if (run_dir / "metrics.jsonl").exists():
        text = (run_dir / "metrics.jsonl").read_text()
        assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())


@pytest.fixture(scope="module")
def shared_output(tmp_path_factory):
    """One output folder for the disk-full runs, holding a run made before any of them."""
    return tmp_path_factory.mktemp("faults") / "output"


@pytest.fixture(scope="module")
def earlier_run(shared_output):
    from contextlib import redirect_stdout

    printed = io.StringIO()
    with redirect_stdout(printed):
        assert main(["vqgan", "--prompt", "an earlier fox", "--steps", "2", "--output", str(shared_output), *DEMO]) == 0
    run_dir = Path(printed.getvalue().strip().splitlines()[-1])
    return run_dir, snapshot(run_dir)


MOMENTS = {
    "preview": ".preview-",
    "metrics": "metrics.jsonl",
    "details checkpoint": ".details-",
    "final image": ".output-",
    "state.pt": ".state-",
    "thumbnail": ".thumb-",
    "mp4": None,
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_full_disk_fails_the_run_and_damages_nothing(moment, shared_output, earlier_run, capsys, monkeypatch):
    output_dir = shared_output
    monkeypatch.setattr(jobs, "PREVIEW_EVERY_S", 0.0)
    monkeypatch.setattr(jobs, "CHECKPOINT_EVERY_S", 0.0)
    injected_before = len(INJECTED)
    if moment == "mp4":
        fill_disk_in_video(monkeypatch)
    elif moment == "details checkpoint":
        started = {"steps": 0}
        real_append = runs.Run.append_metrics
        monkeypatch.setattr(runs.Run, "append_metrics",
                            lambda self, rows: (started.update(steps=started["steps"] + len(rows)),
                                                real_append(self, rows))[1])
        # once: the run's end is then written in the room its reserve frees (a real disk: see below)
        fill_disk_at(monkeypatch, MOMENTS[moment], when=lambda: started["steps"] >= 2, times=1)
    else:
        fill_disk_at(monkeypatch, MOMENTS[moment])

    code = main(["vqgan", "--prompt", "a fox", "--steps", "4", "--output", str(output_dir), *DEMO])

    out, err = capsys.readouterr()
    run_dir = Path(out.strip().splitlines()[-1])
    sentence = f"The disk is full: free space in {output_dir} and rerun."
    assert len(INJECTED) > injected_before, "the fault was never injected"
    assert code == 1 and f"error: {sentence}" in err and "Traceback" not in err
    details = json.loads((run_dir / "details.json").read_text())
    assert details["status"] == runs.FAILED and details["error"] == sentence
    assert_nothing_pretends(run_dir)
    if moment in ("preview", "metrics", "details checkpoint", "mp4"):
        assert (run_dir / "output.png").is_file(), "the last preview is kept as the result"
    run_dir_before, files_before = earlier_run
    assert snapshot(run_dir_before) == files_before


def _mount_tmpfs(path: Path, size_kb: int) -> bool:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("free_kb", [8, 80, 100])  # full before the start, mid-run, while saving
def test_a_real_full_disk(free_kb, tmp_path, capsys):
    """A real filesystem with little room left: whatever moment it fills at, nothing half-written."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, 2048):
        pytest.skip("mounting a tmpfs needs privileges this machine does not give")
    try:
        output = disk / "output"
        output.mkdir()
        filler = disk / "filler"
        filler.write_bytes(b"\0" * 4096)
        room = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        filler.write_bytes(b"\0" * (4096 + room - free_kb * 1024))
        code = main(["vqgan", "--prompt", "a fox", "--steps", "6", "--output", str(output),
                     *DEMO[:1], "--size", "64", "64", *DEMO[4:]])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        run_dir = next(p for p in output.iterdir() if not p.name.startswith("."))  # .queue is the queue index
        details = json.loads((run_dir / "details.json").read_text())
        if code != 0:
            assert f"The disk is full: free space in {output} and rerun." in err
            assert details["status"] == runs.FAILED  # its end written in the room its reserve freed
            INJECTED.append(f"tmpfs:{free_kb}k")
        assert_nothing_pretends(run_dir)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_stop_signals_stop_the_cli_like_ctrl_c(signum, output_dir):
    process = subprocess.Popen(
        [sys.executable, "-m", "logic", "vqgan", "--prompt", "a fox", "--steps", "-1", "--output", str(output_dir),
         *DEMO], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    try:
        assert _wait_for(lambda: any(p.name == "preview.jpg" for p in output_dir.glob("*/*"))), "no preview"
        process.send_signal(signum)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    run_dir = Path(out.strip().splitlines()[-1])
    details = json.loads((run_dir / "details.json").read_text())
    assert process.returncode == 130 and "Traceback" not in err
    assert details["status"] == runs.STOPPED and details["progress"]["step"] >= 1
    with Image.open(run_dir / "output.png") as image:
        assert image.size == (48, 48)
    assert not (run_dir / "preview.jpg").exists()


def test_an_unexpected_failure_is_a_sentence_with_its_log(output_dir, capsys, monkeypatch):
    from logic.engines import vqgan_clip

    def broken(*args, **kwargs):
        raise RuntimeError("a bug deep inside\nwith a second line")
        yield

    monkeypatch.setattr(vqgan_clip, "generate", broken)
    code = main(["vqgan", "--prompt", "a fox", "--steps", "3", "--output", str(output_dir), *DEMO])
    out, err = capsys.readouterr()
    run_dir = Path(out.strip().splitlines()[-1])
    log_file = run_dir / "log.txt"
    assert code == 1 and "Traceback" not in err
    assert f"(RuntimeError: a bug deep inside); details in {log_file}." in err
    assert "Traceback" in log_file.read_text() and "a bug deep inside" in log_file.read_text()
    assert json.loads((run_dir / "details.json").read_text())["error"].endswith(f"details in {log_file}.")



# --- Numbers: inf/NaN and fps 0 are refused where every front end builds its spec ---------------

ENGINES = {"vqgan": {"prompt": "a fox", "demo": True},
           "diffusion": {"prompt": "a fox", "demo": True},
           "walk": {"prompts": ["a fox", "a cat"], "demo": True}}
FLOATS = {"vqgan": ["lr", "cut_pow", "mse_weight", "mse_decay", "tv_weight", "zoom", "rotate", "translate_x",
                    "translate_y", "fps"],
          "diffusion": ["cfg", "strength", "fps"],
          "walk": ["cfg", "fps"]}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("mode,name", [(mode, name) for mode, names in FLOATS.items() for name in names])
def test_every_float_setting_refuses_inf_and_nan(mode, name, value):
    from logic.engines import get_engine
    from logic.errors import UserError

    with pytest.raises(UserError, match="must be a finite number") as refused:
        get_engine(mode).build_spec({**ENGINES[mode], name: value})
    assert str(refused.value).count(".") == 1 and "\n" not in str(refused.value)


@pytest.mark.parametrize("mode", list(ENGINES))
def test_fps_zero_is_refused_the_same_way_in_every_engine(mode):
    from logic.engines import get_engine
    from logic.errors import UserError

    with pytest.raises(UserError) as refused:
        get_engine(mode).build_spec({**ENGINES[mode], "fps": 0})
    assert str(refused.value) == "The video frame rate (fps) must be above 0 and at most 120, not 0."


def test_the_cli_refuses_nan_before_making_a_folder(output_dir, capsys):
    code = main(["vqgan", "--prompt", "a fox", "--lr", "nan", "--output", str(output_dir), *DEMO])
    assert code == 2 and "error: The learning rate must be a finite number, not nan." in capsys.readouterr().err
    assert list(output_dir.iterdir()) == []


def test_an_image_prompt_weight_must_be_finite(tmp_path):
    from logic.engines import vqgan_clip
    from logic.errors import UserError

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(UserError, match="finite weight"):
        vqgan_clip.build_spec({**ENGINES["vqgan"], "image_prompts": [{"path": str(tmp_path / "a.png"),
                                                                       "weight": float("nan")}]})


# --- Kept inputs are named by what they hold ------------------------------------------------------

def test_a_png_named_html_is_kept_as_png(output_dir, tmp_path):
    disguised = tmp_path / "x.html"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(disguised, format="PNG")
    engine, spec, run = jobs.submit_run("vqgan", {**ENGINES["vqgan"], "size": [48, 48], "cutn": 2, "steps": 1,
                                                  "init_image": str(disguised)}, output_dir)
    jobs.execute_run(engine, spec, run, device="cpu")
    assert sorted(p.name for p in (run.path / "inputs").iterdir()) == ["init-image.png"]
    assert (run.path / "inputs" / "init-image.png").read_bytes() == disguised.read_bytes()
    assert runs.read_details(run.path)["params"]["init_image"].endswith("inputs/init-image.png")


def test_a_file_that_is_not_an_image_is_refused_naming_it(tmp_path):
    from logic.engines.base import keep_input
    from logic.errors import UserError

    page = tmp_path / "photo.png"
    page.write_text("<script>alert(1)</script>")
    (tmp_path / "inputs").mkdir()
    with pytest.raises(UserError) as refused:
        keep_input(str(page), tmp_path / "inputs", "init-image")
    assert str(page) in str(refused.value) and "is not an image" in str(refused.value)
    assert list((tmp_path / "inputs").iterdir()) == []


# --- Runs the kernel would kill are refused before they start --------------------------------------

@pytest.mark.parametrize("params,advice", [({"cutn": 5000}, "lower the number of cutouts"),
                                           ({"size": [512, 512]}, "lower the size")])
def test_a_run_that_cannot_fit_is_refused_with_what_to_lower(params, advice, output_dir, monkeypatch):
    from logic.vqgan import memory

    # a machine with 256 MiB to give: the measured need of these runs is well above it
    monkeypatch.setattr(memory, "available_memory", lambda device: 256 * 1024 ** 2)
    engine, spec, run = jobs.submit_run("vqgan", {**ENGINES["vqgan"], "size": [48, 48], "cutn": 2, "steps": 1,
                                                  **params}, output_dir)
    state = jobs.execute_run(engine, spec, run, device="cpu")
    assert state.status == runs.FAILED and state.error.startswith("This run needs at least ")
    assert state.error.endswith(f"{advice}" + (" (cutn)." if "cutouts" in advice else "."))
    assert runs.read_metrics(run.path) == []  # refused before the first step


def test_the_same_run_goes_ahead_when_it_fits(output_dir, monkeypatch):
    from logic.vqgan import memory

    monkeypatch.setattr(memory, "available_memory", lambda device: 256 * 1024 ** 2)
    engine, spec, run = jobs.submit_run("vqgan", {**ENGINES["vqgan"], "size": [48, 48], "cutn": 2, "steps": 1},
                                        output_dir)
    assert jobs.execute_run(engine, spec, run, device="cpu").status == runs.DONE


def test_a_config_asking_for_huge_layers_is_refused_before_it_is_built():
    from logic.errors import UserError
    from logic.models.demo import DEMO_VQGAN_CONFIG
    from logic.models.vqgan import build_vqgan

    config = json.loads(json.dumps(DEMO_VQGAN_CONFIG))
    config["model"]["params"]["ddconfig"]["ch"] = 200_000
    with pytest.raises(UserError, match="smaller layers"):
        build_vqgan(config)


def test_a_disk_full_before_the_run_starts_leaves_no_folder(output_dir, capsys, monkeypatch):
    fill_disk_at(monkeypatch, ".details-")
    code = main(["vqgan", "--prompt", "a fox", "--steps", "2", "--output", str(output_dir), *DEMO])
    err = capsys.readouterr().err
    assert code == 2 and f"error: The disk is full: free space in {output_dir} and rerun." in err
    assert "Traceback" not in err and list(output_dir.iterdir()) == []
