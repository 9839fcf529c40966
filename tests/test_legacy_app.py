"""Folders of the original vqgan-clip-app, in every shape its code wrote: dates from the folder name,
models, guided-diffusion runs, lineage, start and end times, and no rerun offered that would refuse."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

import gallery
from legacy_app_layouts import LAYOUTS, write_all
from logic import runs
from logic.commands.rerun import rerun_params
from logic.errors import UserError

BY_NAME = {layout.name: layout for layout in LAYOUTS}
# VQGAN runs that recorded their model and size, started from nothing it failed to keep, and neither
# continued a run nor scrolled/zoomed: these can be made again here.
REMAKEABLE = {"20210905T090000", "20210905T094500", "20210920T080000", "20210920T211500-Qm-x_3aB",
              "20210925T220000-tR7_aQ2w", "20210926T100000-AAAAbbbb", "20210928T120000-b1gS33d_",
              "20211011T183000-InPuT5ab", "20211014T070000-mse_WT01", "20211024T230000-tvLoSs-1"}


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    folder = tmp_path_factory.mktemp("legacy") / "output"
    folder.mkdir()
    write_all(folder)
    return folder


@pytest.fixture(scope="module")
def client(output, tmp_path_factory):
    app = gallery.create_app(output, cache_dir=tmp_path_factory.mktemp("cache"), refresh_s=0)
    return app.test_client()


def _local(text: str) -> str:
    """A naive local time as the record writes it (ISO with this machine's offset)."""
    return datetime.fromisoformat(text).astimezone().isoformat(timespec="seconds")


def test_there_are_eighteen_real_layouts():
    assert len(LAYOUTS) == 18 and len(BY_NAME) == 18


@pytest.mark.parametrize("name", list(BY_NAME))
def test_read_record_maps_each_layout(output, name):
    layout, record = BY_NAME[name], runs.read_record(output / name)
    expected = layout.expected
    assert record is not None and record.legacy
    stamp = datetime.strptime(name[:15], "%Y%m%dT%H%M%S").isoformat()
    assert record.created == _local(stamp) and stamp.startswith(expected["date"].replace(" ", "T"))
    assert record.mode == ("guided-diffusion" if expected.get("guided") else "vqgan")
    model = record.model.get("diffusion" if expected.get("guided") else "vqgan")
    assert model == expected.get("model")
    assert record.parent_run_id == expected.get("parent")
    assert record.run_id == expected.get("run_id", (layout.details or {}).get("run_id", name))
    assert record.status == expected.get("status", "done")
    assert record.started == (_local(expected["started"]) if "started" in expected else None)
    assert record.finished == (_local(expected["finished"]) if "finished" in expected else None)
    assert record.timing.get("generate_s") == expected.get("seconds")
    if "seed" in expected:
        assert record.seed == expected["seed"]
    assert record.prompt == (layout.details or {}).get("text_input", record.prompt) and record.prompt
    assert list(record.legacy_inputs) == sorted(layout.inputs)


def test_gallery_lists_every_layout_with_its_date_and_model(client):
    data = client.get("/api/runs?per_page=50").get_json()
    listed = {run["folder"]: run for run in data["runs"]}
    assert set(listed) == set(BY_NAME)
    html = client.get("/?per_page=50").get_data(as_text=True)
    for name, layout in BY_NAME.items():
        run = listed[name]
        assert run["created"].startswith(layout.expected["date"].replace(" ", "T"))
        assert run["model"] == layout.expected.get("model", "")
        assert run["mode"] == ("guided-diffusion" if layout.expected.get("guided") else "vqgan")
        assert run["parent_run_id"] == layout.expected.get("parent")
    cards = html.split('data-run-id="')[1:]
    assert len(cards) == 18
    for card in cards:
        name = re.search(r'href="/runs/([^"]+)"', card).group(1)
        layout = BY_NAME[name]
        assert layout.expected["date"] in card
        if "model" in layout.expected:
            assert layout.expected["model"] in card
        assert ("guided-diffusion" in card) == bool(layout.expected.get("guided"))


@pytest.mark.parametrize("name", list(BY_NAME))
def test_run_page_shows_date_times_and_a_rerun_only_where_it_can_be_made(client, name):
    expected = BY_NAME[name].expected
    page = client.get(f"/runs/{name}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert expected["date"] in html and "original vqgan-clip-app run" in html
    if "model" in expected:
        assert expected["model"] in html
    for key in ("started", "finished"):
        if key in expected:
            assert f"<th>{key}</th><td>{_local(expected[key])}</td>" in html
    detail = client.get(f"/api/runs/{name}").get_json()
    if name in REMAKEABLE:
        assert detail["rerun_refusal"] is None and f"python -m logic rerun " in html
        assert detail["rerun_command"].endswith(name)
        return
    assert "python -m logic rerun" not in html
    assert detail["rerun_command"] is None and detail["rerun_refusal"] in html.replace("&#39;", "'")
    if expected.get("guided"):
        assert "guided-diffusion engine" in detail["rerun_refusal"]


def test_continued_runs_link_to_their_parents_both_ways(client):
    for child, parent in (("20210926T101000-ccDD-eef", "20210926T100000-AAAAbbbb"),
                          ("20220301T090000-Zo0m_in2", "20211218T150000-Zo0m_in1")):
        detail = client.get(f"/api/runs/{child}").get_json()
        assert detail["parent"]["url"] == f"/runs/{parent}"
        html = client.get(f"/runs/{child}").get_data(as_text=True)
        assert f'Continued from <a href="/runs/{parent}">' in html
        parent_detail = client.get(f"/api/runs/{parent}").get_json()
        assert [c["url"] for c in parent_detail["children"]] == [f"/runs/{child}"]


def test_rerun_refuses_with_the_same_sentence_the_gallery_shows(output, client):
    for name in set(BY_NAME) - REMAKEABLE:
        with pytest.raises(UserError) as refused:
            rerun_params(output / name)
        assert str(refused.value) == client.get(f"/api/runs/{name}").get_json()["rerun_refusal"]


def test_a_run_made_here_still_offers_its_rerun_command(tmp_path):
    from gallery_helpers import make_run
    out = tmp_path / "output"
    run = make_run(out, "a new run")
    app = gallery.create_app(out, cache_dir=tmp_path / "cache", refresh_s=0)
    detail = app.test_client().get(f"/api/runs/{run.path.name}").get_json()
    assert detail["rerun_command"].startswith("python -m logic rerun") and detail["rerun_refusal"] is None


def test_a_remakeable_run_maps_onto_a_valid_vqgan_request(output):
    from logic.engines.vqgan_clip import build_spec

    mode, params, run_id = rerun_params(output / "20211011T183000-InPuT5ab")
    folder = output / "20211011T183000-InPuT5ab"
    assert (mode, run_id) == ("vqgan", "InPuT5ab")
    assert params == {"prompt": "a portrait in ink", "vqgan": "vqgan_imagenet_f16_16384", "size": [320, 256],
                      "steps": 300, "seed": 3, "clip": "ViT-B-32:openai", "lr": 0.05, "optimiser": "Adam",
                      "cutn": 64, "cut_pow": 1.0, "cut_method": "random", "augment": False,
                      "init_image": str(folder / "init-image.JPEG"),
                      "image_prompts": [{"path": str(folder / "image-prompt-0.JPEG")},
                                        {"path": str(folder / "image-prompt-1.JPEG")}]}
    spec = build_spec({**params, "demo": True})  # every setting checked by the engine (demo models)
    assert spec.cutn == 64 and spec.lr == 0.05 and spec.seed == 3 and len(spec.image_prompts) == 2
    with pytest.raises(UserError, match="download-weights.sh"):
        build_spec(params)  # without the VQGAN the run names: how to get it


def test_mapping_takes_loss_weights_planned_steps_and_drops_a_64_bit_seed(output):
    _, mse, _ = rerun_params(output / "20211014T070000-mse_WT01")
    assert (mse["steps"], mse["mse_weight"], mse["mse_decay"], mse["mse_decay_every"]) == (300, 0.5, 0.1, 50)
    _, tv, _ = rerun_params(output / "20211024T230000-tvLoSs-1")
    assert tv["tv_weight"] == 0.001
    _, endless, _ = rerun_params(output / "20210920T080000")
    assert endless["steps"] == 250 and endless["seed"] == 7  # it ran until stopped, at step 250
    _, big, _ = rerun_params(output / "20210928T120000-b1gS33d_")
    assert "seed" not in big and big["vqgan"] == "coco"
