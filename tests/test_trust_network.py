"""Hub requests end: a silent hub, a typo'd id and no network each give one sentence, fast.

Stand-in hubs on the loopback (no real network): one that accepts connections and never answers,
one that answers 404 to every lookup, and an endpoint where nothing listens. The timeout is
configurable (ATELIER_HUB_TIMEOUT); the tests use 1 s, the default is 20 s.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from logic.__main__ import main
from logic.errors import UserError
from tests.test_vqgan_loading import build_vqgan, tiny_config, write_pair

ROOT = Path(__file__).resolve().parent.parent


class StandInHub:
    """A loopback server: 'silent' accepts and never answers, 'missing' answers 404, 'down' is closed."""

    def __init__(self, kind: str):
        self.kind, self.accepted = kind, threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._held: list[socket.socket] = []
        if kind == "down":
            self._server.close()
        else:
            threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.accepted.set()
            if self.kind == "silent":
                self._held.append(conn)
                continue
            conn.recv(65536)
            body = b'{"error": "Repository not found"}'
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nX-Error-Code: RepoNotFound\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
            conn.close()

    def close(self) -> None:
        for conn in self._held:
            conn.close()
        self._server.close()


SENTENCES = {"silent": "the hub did not answer within 1 s", "missing": "was not found on the hub",
             "down": "(no network and not in the cache)"}


@pytest.fixture
def hub(request, monkeypatch, tmp_path):
    """A stand-in hub of the requested kind, used by huggingface_hub in this process, empty cache."""
    import huggingface_hub.constants as constants

    stand_in = StandInHub(request.param)
    monkeypatch.setenv("ATELIER_HUB_TIMEOUT", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", stand_in.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    yield stand_in
    stand_in.close()


@pytest.mark.parametrize("hub", list(SENTENCES), indirect=True)
def test_an_uncached_hub_model_fails_fast_with_one_sentence_and_no_run_folder(hub, capsys, output_dir):
    started = time.monotonic()
    code = main(["diffusion", "--model", "someone/tiny-sd", "--prompt", "a fox", "--steps", "1",
                 "--output", str(output_dir), "--device", "cpu"])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and SENTENCES[hub.kind] in err[0], err
    assert "someone/tiny-sd" in err[0]
    assert list(output_dir.iterdir()) == []
    assert elapsed < 15  # ended by the 1 s timeout (the default is 20 s), not left waiting


@pytest.mark.parametrize("hub", list(SENTENCES), indirect=True)
def test_clip_weights_from_the_hub_fail_fast_with_one_sentence(hub):
    import open_clip

    from logic.models.clip import load_clip

    open_clip.list_models()  # the import and model registry take seconds on a busy machine: not the hub's time
    started = time.monotonic()
    with pytest.raises(UserError) as caught:
        load_clip("ViT-B-32:openai")
    assert SENTENCES[hub.kind] in str(caught.value) and "\n" not in str(caught.value)
    assert "download-weights.sh --clip ViT-B-32:openai" in str(caught.value) or hub.kind == "missing"
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("hub", ["silent"], indirect=True)
def test_requests_that_ask_for_no_timeout_still_end(hub):
    """Some huggingface_hub calls pass timeout=None (wait forever); the capped transport ends them."""
    import httpx2
    from huggingface_hub import get_session

    from logic.models.hub import install_timeouts

    install_timeouts()
    started = time.monotonic()
    with pytest.raises(httpx2.TimeoutException):
        get_session().get(f"{hub.url}/api/models/someone/tiny-sd", timeout=None)
    assert time.monotonic() - started < 5


def test_the_default_timeout_stays_within_30_seconds(monkeypatch):
    from logic.models.hub import hub_timeout

    monkeypatch.delenv("ATELIER_HUB_TIMEOUT", raising=False)
    assert 0 < hub_timeout() <= 30
    for value, expected in (("2.5", 2.5), ("600", 30.0), ("nan", 20.0), ("soon", 20.0)):
        monkeypatch.setenv("ATELIER_HUB_TIMEOUT", value)
        assert hub_timeout() == expected


def test_ctrl_c_while_waiting_for_the_hub_stops_at_once(tmp_path, output_dir):
    """A run whose CLIP is being looked up on a silent hub: Ctrl-C ends it as 'stopped' within seconds."""
    reference, _ = build_vqgan(tiny_config())
    write_pair(tmp_path, "local", tiny_config(), reference.state_dict())
    hub = StandInHub("silent")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(tmp_path / "hub-cache"), ATELIER_HUB_TIMEOUT="30")
    process = subprocess.Popen([sys.executable, "-m", "logic", "vqgan", "--vqgan", str(tmp_path / "local"),
                                "--clip", "ViT-B-32:openai", "--prompt", "a fox", "--steps", "2",
                                "--output", str(output_dir), "--device", "cpu"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert hub.accepted.wait(120), "the CLI never asked the hub"
        time.sleep(0.5)
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        stopped_after = time.monotonic() - interrupted
    finally:
        if process.poll() is None:
            process.kill()
        hub.close()
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert stopped_after < 15  # the interrupt ended it, not the 30 s hub timeout
    details = json.loads((Path(stdout.strip().splitlines()[-1]) / "details.json").read_text())
    assert details["status"] == "stopped"
