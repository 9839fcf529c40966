"""The HTTP API against a real server on a free loopback port, with the demo models: the native
/api/v1, and /sdapi/v1 driven by the real `webuiapi` client (PyPI) as A1111 users would."""

import base64
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from logic import runs
from logic.__main__ import main as cli_main
from logic.engines import get_engine
from logic.errors import UserError
from process_helpers import free_port, wait_until

webuiapi = pytest.importorskip("webuiapi")

ROOT = Path(__file__).resolve().parent.parent
VQGAN = {"demo": True, "size": [32, 32], "cutn": 2, "augment": False}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python -m logic serve --demo` in its own process, as a person would start it."""
    output, port = tmp_path_factory.mktemp("api-output"), free_port()
    process = subprocess.Popen([sys.executable, "-m", "logic", "serve", "--port", str(port), "--device", "cpu",
                                "--demo", "--output", str(output)], cwd=ROOT, env=os.environ.copy(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"

    def up():
        assert process.poll() is None, process.stderr.read()
        try:
            return requests.get(base + "/api/v1/health", timeout=1).ok
        except requests.ConnectionError:
            return False

    wait_until(up, timeout=120, every=0.3)
    yield {"base": base, "port": port, "output": output}
    process.terminate()
    process.wait(30)


def run_details(result) -> dict:
    return runs.read_details(Path(result.info["folder"]))


def test_webuiapi_txt2img_and_img2img(server):
    api = webuiapi.WebUIApi(host="127.0.0.1", port=server["port"])
    result = api.txt2img(prompt="a red fox", negative_prompt="blur", steps=3, width=64, height=48, seed=11)
    assert result.image.size == (64, 48) and result.info["seed"] == 11 and result.info["all_seeds"] == [11]
    details = run_details(result)
    assert details["status"] == "done" and details["mode"] == "diffusion" and details["via"] == "sdapi"
    assert Path(result.info["folder"]).parent == server["output"]
    assert details["request"]["prompt"] == "a red fox" and details["params"]["negative"] == "blur"
    assert "Seed: 11" in api.png_info(result.image).info
    assert api.png_info(result.image).json["parameters"]["Prompt"] == "a red fox"

    again = api.img2img(images=[result.image], prompt="a red fox", steps=4, width=64, height=48,
                        denoising_strength=0.5, seed=3)
    assert again.image.size == (64, 48)
    details = run_details(again)
    assert details["status"] == "done" and details["kind"] == "img2img" and details["params"]["strength"] == 0.5
    assert (Path(again.info["folder"]) / "inputs" / "init-image.png").is_file()


def test_webuiapi_progress_and_interrupt(server):
    api = webuiapi.WebUIApi(host="127.0.0.1", port=server["port"])
    assert api.get_progress()["state"]["job_count"] == 0
    results = []
    caller = threading.Thread(target=lambda: results.append(
        api.txt2img(prompt="a long one", steps=400, width=64, height=64, seed=1)))
    caller.start()
    progress = wait_until(lambda: (lambda p: p if p["state"]["sampling_step"] >= 2 else None)(api.get_progress()))
    assert 0 < progress["progress"] < 1 and progress["state"]["sampling_steps"] == 400
    assert progress["state"]["job_count"] >= 1 and progress["current_image"]
    from PIL import Image
    assert Image.open(io.BytesIO(base64.b64decode(progress["current_image"]))).size == (64, 64)
    assert api.interrupt() == {}
    caller.join(120)
    details = run_details(results[0])
    # (the diffusion engine reports step = total once its pipeline returns; the frames show where it stopped)
    assert details["status"] == "stopped" and details["frames"] < 400
    assert results[0].image.size == (64, 64)  # what was made so far, as A1111 returns it


def test_a1111_listings_and_options(server):
    api = webuiapi.WebUIApi(host="127.0.0.1", port=server["port"])
    assert "demo" in api.util_get_model_names() and api.util_get_current_model() == "demo"
    assert {"Euler a", "DPM++ 2M Karras"} <= set(api.util_get_sampler_names())
    # the session's assets folder is shared with other tests: the listing is whatever LoRAs it holds
    from logic.engines import sd_common
    from logic.models.diffusion import list_loras
    assert sorted(item["name"] for item in api.get_loras()) == sorted(Path(n).stem for n in list_loras(sd_common.loras_dir()))
    bad = requests.post(server["base"] + "/sdapi/v1/options", json={"sd_model_checkpoint": "nothing-here"})
    assert bad.status_code == 400 and "nothing-here" in bad.json()["detail"] and "demo" in bad.json()["detail"]
    api.set_options({"sd_model_checkpoint": "demo"})
    assert api.get_options()["sd_model_checkpoint"] == "demo"


def test_native_api_runs_any_engine_and_answers_bad_input_like_the_cli(server):
    base = server["base"] + "/api/v1"
    created = requests.post(base + "/runs", json={"mode": "vqgan", "params": {**VQGAN, "prompt": "a fox", "steps": 2}})
    assert created.status_code == 201, created.text
    run = created.json()
    assert run["status"] == "queued" and Path(run["folder"]).parent == server["output"]
    done = wait_until(lambda: (lambda s: s if s["status"] == "done" else None)(requests.get(base + f"/runs/{run['run_id']}").json()))
    assert done["progress"] == {"step": 2, "total": 2} and done["fraction"] == 1.0
    image = requests.get(base + f"/runs/{run['run_id']}/preview")
    assert image.status_code == 200 and image.content[:4] == b"\x89PNG"

    with pytest.raises(UserError) as cli_sentence:
        get_engine("diffusion").build_spec({"prompt": "  "})
    empty = requests.post(base + "/runs", json={"mode": "diffusion", "params": {"prompt": "  "}})
    assert empty.status_code == 400 and empty.json() == {"detail": str(cli_sentence.value)}
    assert requests.post(base + "/runs", json={"mode": "nope"}).json()["detail"].startswith("Unknown mode 'nope'")
    assert requests.post(base + "/runs", json={"params": {}}).status_code == 400
    assert requests.get(base + "/runs/doesnotexist").status_code == 404
    assert requests.get(base + "/runs/..%2F..%2Fetc").status_code == 404


def test_init_image_by_upload_and_base64(server, tmp_path):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "orange").save(buffer, format="PNG")
    base = server["base"] + "/api/v1"
    request = {"mode": "diffusion", "params": {"prompt": "an orange", "demo": True, "steps": 2, "size": [64, 64],
                                               "strength": 0.5}}
    uploaded = requests.post(base + "/runs/upload", data={"request": __import__("json").dumps(request)},
                             files={"init_image": ("x.png", buffer.getvalue(), "image/png")})
    assert uploaded.status_code == 201, uploaded.text
    inline = requests.post(base + "/runs", json={**request, "init_image": base64.b64encode(buffer.getvalue()).decode()})
    assert inline.status_code == 201, inline.text
    for created in (uploaded.json(), inline.json()):
        kept = Path(created["folder"]) / "inputs" / "init-image.png"
        assert kept.read_bytes() == buffer.getvalue()
    assert not any((server["output"] / ".uploads").iterdir())  # the upload itself is not kept twice
    broken = requests.post(base + "/runs", json={**request, "init_image": base64.b64encode(b"not an image").decode()})
    assert broken.status_code == 400 and "not an image Pillow can read" in broken.json()["detail"]


def test_paths_in_requests_stay_inside_assets_and_output(server, tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    base = server["base"] + "/api/v1"
    for params in ({"init_image": str(outside)}, {"init_image": "../../../etc/passwd"},
                   {"lora": ["/etc/passwd:0.5"]}, {"model": "/etc"}, {"init_image": "README.md"}):
        answer = requests.post(base + "/runs", json={"mode": "diffusion", "params": {"prompt": "x", **params}})
        assert answer.status_code == 400 and "outside assets/ and the output folder" in answer.json()["detail"], params


def test_queue_shows_runs_from_the_cli_and_stops_them(server):
    base = server["base"] + "/api/v1"
    # A long run keeps the device busy; the CLI queues behind it from another "front end".
    long = requests.post(base + "/runs", json={"mode": "vqgan", "params": {**VQGAN, "prompt": "long", "steps": -1}}).json()
    wait_until(lambda: requests.get(base + f"/runs/{long['run_id']}").json()["status"] == "running")
    assert cli_main(["vqgan", "--demo", "--prompt", "from the cli", "--steps", "2", "--size", "32", "32",
                     "--device", "cpu", "--output", str(server["output"]), "--queue"]) == 0
    view = requests.get(base + "/queue").json()
    assert view["running"]["run_id"] == long["run_id"]
    assert [q["prompt"] for q in view["queued"]] == ["from the cli"] and view["queued"][0]["queue_position"] == 1
    queued_id = view["queued"][0]["run_id"]
    stopped = requests.post(base + f"/runs/{queued_id}/stop").json()
    assert stopped["status"] == "stopped" and requests.get(base + "/queue").json()["queued"] == []
    requests.post(base + f"/runs/{long['run_id']}/stop")
    final = wait_until(lambda: (lambda s: s if s["status"] == "stopped" else None)(requests.get(base + f"/runs/{long['run_id']}").json()))
    assert final["progress"]["step"] >= 1


# --- Security, in-process (no worker: nothing runs) ------------------------------------------------

@pytest.fixture
def start_app(tmp_path):
    import uvicorn

    from logic.api import ApiConfig, create_app

    servers = []

    def start(**options):
        port = free_port()
        config = ApiConfig(output_dir=tmp_path / "out", device="cpu", port=port, worker=False, **options)
        server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_until(lambda: server.started, timeout=30, every=0.05)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}", port

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def test_a_key_is_needed_for_every_request_when_set(start_app):
    key = "k" * 32
    base, port = start_app(api_key=key, host="127.0.0.1")
    for path in ("/api/v1/queue", "/sdapi/v1/sd-models", "/docs", "/openapi.json"):
        assert requests.get(base + path).status_code == 401, path
    assert requests.get(base + "/api/v1/queue", headers={"Authorization": f"Bearer {key}"}).ok
    assert requests.get(base + "/api/v1/queue", headers={"X-API-Key": key}).ok
    assert requests.get(base + "/api/v1/queue", headers={"X-API-Key": key[:-1] + "x"}).status_code == 401
    api = webuiapi.WebUIApi(host="127.0.0.1", port=port, username="any", password=key)  # A1111's --api-auth way
    assert "demo" in api.util_get_model_names()


def test_bodies_hosts_and_docs(start_app):
    base, _ = start_app(max_body_bytes=1000)
    big = requests.post(base + "/api/v1/runs", json={"mode": "diffusion", "params": {"prompt": "x" * 2000}})
    assert big.status_code == 413
    assert requests.get(base + "/api/v1/queue", headers={"Host": "evil.example"}).status_code == 400
    # A cross-site form can send text/plain without a preflight: it must not be read as a run request.
    form = requests.post(base + "/api/v1/runs", data='{"mode": "vqgan", "params": {"prompt": "x", "demo": true}}',
                         headers={"Content-Type": "text/plain"})
    assert form.status_code == 400 and requests.get(base + "/api/v1/queue").json()["queued"] == []
    schema = requests.get(base + "/openapi.json").json()
    assert {"/api/v1/runs", "/api/v1/runs/{run_id}/preview", "/sdapi/v1/txt2img", "/sdapi/v1/png-info"} <= set(schema["paths"])
    assert "RunRequest" in schema["components"]["schemas"]
    assert requests.get(base + "/docs").ok


def test_serving_beyond_loopback_needs_a_key(capsys, tmp_path):
    assert cli_main(["serve", "--host", "0.0.0.0", "--output", str(tmp_path)]) == 2
    assert "--api-key" in capsys.readouterr().err
    short = tmp_path / "key"
    short.write_text("short")
    assert cli_main(["serve", "--host", "0.0.0.0", "--api-key-file", str(short)]) == 2


def test_png_info_reads_text_chunks_only_and_refuses_non_images(start_app):
    from PIL import Image, PngImagePlugin

    base, _ = start_app()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", 'a fox, "quoted"\nNegative prompt: blur\nSteps: 20, Sampler: Euler a, Seed: 5')
    info.add_text("Software", "elsewhere")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    answer = requests.post(base + "/sdapi/v1/png-info",
                           json={"image": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()}).json()
    assert answer["parameters"]["Prompt"] == 'a fox, "quoted"' and answer["parameters"]["Negative prompt"] == "blur"
    assert answer["parameters"]["Seed"] == "5" and answer["items"] == {"Software": "elsewhere"}
    bad = requests.post(base + "/sdapi/v1/png-info", json={"image": base64.b64encode(b"hello").decode()})
    assert bad.status_code == 400 and "not one Pillow can read" in bad.json()["detail"]
