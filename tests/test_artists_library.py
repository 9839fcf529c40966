"""Artist library, embedding cache, integration record and CLI, with the demo CLIP (CPU, offline)."""

import argparse
import json
import logging

import numpy as np
import pytest
from PIL import Image

from logic.artists import HOW_TO_ADD, apply_artist_match, artist_settings, load_matcher, scan_library
from logic.artists.demo import ensure_demo_artists
from logic.artists.evaluate import read_pairs
from logic.commands import artists as artists_command, run_handler
from logic.errors import UserError
from logic.models.clip import load_clip
from logic.models.demo import ensure_demo_clip
from logic.runs import create_run, read_details


@pytest.fixture(scope="session")
def demo_assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    patch = pytest.MonkeyPatch()
    patch.setenv("ATELIER_ASSETS", str(root))
    name, weights = ensure_demo_clip(root / "demo")
    yield root, load_clip(name, weights)
    patch.undo()


@pytest.fixture
def clip(demo_assets):
    return demo_assets[1]


def write_images(folder, count, seed=0, size=24):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size + i, 3), dtype=np.uint8)).save(folder / f"w{i}.png")


def settings_for(folder, **changes):
    return artist_settings(folder=folder, demo=True, **changes)


@pytest.fixture
def library(tmp_path):
    for seed, name in enumerate(["Alpha", "Beta", "Gamma"]):
        write_images(tmp_path / "lib" / name, 2 + seed, seed)
    return tmp_path / "lib"


def test_only_the_changed_artist_is_reembedded(library, clip):
    settings = settings_for(library)
    assert load_matcher(settings, clip).embedded == ["Alpha", "Beta", "Gamma"]
    assert load_matcher(settings, clip).embedded == []
    write_images(library / "Beta", 4, seed=9)  # adds w3 and rewrites w0..w2
    assert load_matcher(settings, clip).embedded == ["Beta"]
    (library / "Gamma" / "w0.png").unlink()
    assert load_matcher(settings, clip).embedded == ["Gamma"]
    for path in (library / "Alpha").iterdir():
        path.unlink()
    (library / "Alpha").rmdir()
    matcher = load_matcher(settings, clip)
    assert matcher.embedded == [] and [a.name for a in matcher.artists] == ["Beta", "Gamma"]
    assert "Alpha" not in matcher.cache.manifest["artists"]


def test_cache_records_model_and_preprocessing(library, clip):
    matcher = load_matcher(settings_for(library), clip)
    manifest = json.loads((matcher.cache.folder / "manifest.json").read_text())
    assert manifest["model"] == "demo-clip" and manifest["image_size"] == 32 and manifest["preprocess"]
    assert manifest["artists"]["Gamma"]["count"] == 4


def test_progress_reports_images(library, clip):
    events = []
    load_matcher(settings_for(library), clip, progress=events.append)
    assert events[-1]["done"] == events[-1]["total"] == 9
    assert {e["artist"] for e in events} == {"Alpha", "Beta", "Gamma"}


def test_unreadable_files_are_skipped_with_a_warning(library, clip, caplog):
    (library / "Alpha" / "broken.png").write_bytes(b"not a png at all")
    (library / "Alpha" / "empty.jpg").write_bytes(b"")
    (library / "Ghost").mkdir()
    (library / "Ghost" / "only.jpg").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING):
        matcher = load_matcher(settings_for(library), clip)
    assert "broken.png" in caplog.text and "empty.jpg" in caplog.text and "only.jpg" in caplog.text
    entry = matcher.cache.manifest["artists"]["Alpha"]
    assert entry["count"] == 2 and sorted(entry["skipped"]) == ["broken.png", "empty.jpg"]
    assert "Ghost" not in [a.name for a in matcher.artists]
    assert matcher.match("a cat").matches


def test_empty_library_says_how_to_add_artists(tmp_path, clip):
    settings = settings_for(tmp_path / "nothing")
    matcher = load_matcher(settings, clip)
    assert matcher.index is None and scan_library(tmp_path / "nothing") == []
    with pytest.raises(UserError, match="No artists yet"):
        matcher.match("a cat")
    with pytest.raises(UserError, match="No artists yet"):
        apply_artist_match("a cat", settings, clip)


def test_artist_yaml_gives_display_name_and_aliases(tmp_path):
    write_images(tmp_path / "hokusai", 1)
    (tmp_path / "hokusai" / "artist.yaml").write_text(
        "display_name: Katsushika Hokusai\naliases: [Hokusai]\nyears: 1760-1849\nlicence: Public domain (CC0)\n")
    write_images(tmp_path / "broken-yaml", 1)
    (tmp_path / "broken-yaml" / "artist.yaml").write_text("display_name: [unclosed\n")
    artists = {a.name: a for a in scan_library(tmp_path)}
    assert artists["hokusai"].label == "Katsushika Hokusai" and "Hokusai" in artists["hokusai"].names
    assert artists["broken-yaml"].label == "broken-yaml"


def test_details_json_records_the_match(library, clip, tmp_path):
    settings = settings_for(library, threshold=0.0)
    prompt, record = apply_artist_match("a graffiti gorilla", settings, clip)
    assert prompt == f"a graffiti gorilla, in the style of {record['artist']}"
    run = create_run(tmp_path / "out", "diffusion", {"prompt": "a graffiti gorilla"})
    run.update(artist_match=record, prompt_used=prompt)
    saved = read_details(run.path)["artist_match"]
    for key in ("artist", "score", "runner_up", "runner_up_score", "confidence", "model", "no_strong_match"):
        assert key in saved
    assert saved["artist"] in {"Alpha", "Beta", "Gamma"} and saved["runner_up"] != saved["artist"]
    assert saved["model"] == "demo-clip:demo-clip.safetensors" and saved["no_strong_match"] is False


def test_user_choice_and_skips(library, clip):
    settings = settings_for(library)
    prompt, record = apply_artist_match("a cat", settings, clip, chosen_artist="gamma")
    assert prompt == "a cat, in the style of Gamma" and record["chosen_by_user"] and record["score"] is not None
    prompt, record = apply_artist_match("a cat by Alpha", settings, clip)
    assert prompt == "a cat by Alpha" and "names an artist" in record["skipped"] and record["artist"] is None
    prompt, record = apply_artist_match("a photo of sks dog", settings, clip)
    assert prompt == "a photo of sks dog" and "DreamBooth" in record["skipped"]
    with pytest.raises(UserError, match="Unknown artist"):
        apply_artist_match("a cat", settings, clip, chosen_artist="Nobody")


def test_weak_matches_are_not_rewritten_unless_asked(library, clip):
    settings = settings_for(library, threshold=1.01)  # nothing can be that confident
    prompt, record = apply_artist_match("a cat", settings, clip)
    assert prompt == "a cat" and record["no_strong_match"] and record["skipped"] == "no strong match"
    prompt, record = apply_artist_match("a cat", settings.replace(rewrite_when_weak=True), clip)
    assert prompt.startswith("a cat, in the style of ") and record["no_strong_match"]


def test_demo_library_is_deterministic(tmp_path):
    one, two = ensure_demo_artists(tmp_path / "a"), ensure_demo_artists(tmp_path / "b")
    files = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert len(files) >= 12
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)


def test_read_pairs_formats(tmp_path):
    (tmp_path / "p.tsv").write_text("# comment\na wave\tHokusai\nsunflowers -> Vincent van Gogh\n")
    assert read_pairs(tmp_path / "p.tsv") == [("a wave", "Hokusai"), ("sunflowers", "Vincent van Gogh")]
    (tmp_path / "p.json").write_text(json.dumps([{"prompt": "a wave", "artist": "Hokusai"}]))
    assert read_pairs(tmp_path / "p.json") == [("a wave", "Hokusai")]
    (tmp_path / "bad.txt").write_text("no separator here\n")
    with pytest.raises(UserError, match="Line 1"):
        read_pairs(tmp_path / "bad.txt")


# CLI --------------------------------------------------------------------------------------------
def cli(argv):
    parser = argparse.ArgumentParser()
    artists_command.register(parser.add_subparsers(dest="command", required=True))
    return run_handler(parser.parse_args(argv))


def test_cli_match_json_is_one_object(library, demo_assets, capsys):
    assert cli(["artists", "match", "a graffiti gorilla", "--demo", "--artists-dir", str(library),
                "--top", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"prompt", "rewritten_prompt", "matches", "embedded", "model", "no_strong_match"}
    assert len(data["matches"]) == 2 and data["embedded"] == ["Alpha", "Beta", "Gamma"]
    assert data["matches"][0]["score"] >= data["matches"][1]["score"]


def test_cli_list_embed_and_empty(library, tmp_path, demo_assets, capsys):
    assert cli(["artists", "list", "--artists-dir", str(library)]) == 0
    assert "3 artists" in capsys.readouterr().out
    assert cli(["artists", "embed", "--demo", "--artists-dir", str(library)]) == 0
    assert "3 artists embedded" in capsys.readouterr().out
    assert cli(["artists", "list", "--artists-dir", str(tmp_path / "none")]) == 0
    assert "No artists yet" in capsys.readouterr().out
    assert cli(["artists", "match", "a cat", "--demo", "--artists-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "No artists yet" in err and "Traceback" not in err


def test_cli_eval_before_and_after(library, tmp_path, demo_assets, capsys):
    write_images(tmp_path / "held" / "Beta", 2, seed=5)
    (tmp_path / "pairs.tsv").write_text("a cat\tAlpha\na dog\tBeta\n")
    assert cli(["artists", "eval", "--demo", "--artists-dir", str(library), "--heldout", str(tmp_path / "held"),
                "--pairs", str(tmp_path / "pairs.tsv"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for label in ("before", "after"):
        assert 0 < report[label]["max_win_share"] <= 1
        assert report[label]["prompts"]["n"] == 2 and report[label]["heldout"]["n"] == 2
        assert 0 < report[label]["prompts"]["mrr"] <= 1


def test_python_m_logic_wires_the_artists_command(library, demo_assets, capsys, monkeypatch):
    import logic.__main__ as main_module

    # Only this branch's command: the other command modules land from their own branches.
    monkeypatch.setattr(main_module, "COMMAND_MODULES", ["artists"])
    assert main_module.main(["artists", "list", "--artists-dir", str(library)]) == 0
    assert "Alpha" in capsys.readouterr().out
    assert main_module.main(["artists", "match", "a cat", "--demo", "--artists-dir", str(library),
                             "--top", "0"]) == 2
    assert "top 0 artists" in capsys.readouterr().err
