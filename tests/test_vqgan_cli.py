"""The ``python -m logic vqgan`` flags reach the run and are recorded in details.json."""

from __future__ import annotations

from logic import runs
from logic.__main__ import main

from vqgan_helpers import write_image


def run_cli(capsys, *argv) -> dict:
    code = main(["vqgan", "--demo", "--size", "32", "32", "--cutn", "2", "--seed", "3", *argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    return runs.read_details(out.out.strip().splitlines()[-1])


def test_cli_flags_are_recorded(tmp_path, output_dir, capsys):
    image = write_image(tmp_path / "prompt.png")
    init = write_image(tmp_path / "init.png", (10, 200, 10))
    details = run_cli(
        capsys, "--prompt", "spring ^ summer", "--story-every", "1", "--steps", "2", "--output", str(output_dir),
        "--image-prompt", f"{image}:0.5:-0.2", "--init-image", str(init), "--optimiser", "adamw",
        "--mse-weight", "0.3", "--mse-decay", "0.1", "--mse-decay-every", "0", "--tv-weight", "0.2",
        "--cut-method", "pooled", "--no-augment", "--zoom", "1.1", "--rotate", "2", "--translate-x", "1",
        "--translate-y", "-1", "--animate-every", "1", "--fps", "5", "--gif", "--precision", "fp32")
    p = details["resolved"]
    assert details["status"] == "done"
    assert (p["optimiser"], p["mse_weight"], p["mse_decay_every"], p["tv_weight"]) == ("AdamW", 0.3, 0, 0.2)
    assert (p["cut_method"], p["augment"], p["zoom"], p["rotate"], p["translate_x"], p["translate_y"]) == \
        ("pooled", False, 1.1, 2.0, 1.0, -1.0)
    assert (p["animate_every"], p["fps"], p["gif"], p["story_every"]) == (1, 5.0, True, 1)
    assert p["image_prompts"][0]["weight"] == 0.5 and p["image_prompts"][0]["stop"] == -0.2
    assert details["inputs"] == ["image-prompt-0.png", "init-image.png"]


def test_cli_continue_and_bad_input(output_dir, capsys):
    parent = run_cli(capsys, "--prompt", "spring", "--steps", "1", "--output", str(output_dir))
    parent_dir = next(p for p in output_dir.iterdir() if p.name.endswith(parent["run_id"]))
    child = run_cli(capsys, "--continue", str(parent_dir), "--prompt", "summer", "--steps", "1",
                    "--output", str(output_dir))
    assert child["parent_run_id"] == parent["run_id"] and child["prompt"] == "summer"
    code = main(["vqgan", "--demo", "--prompt", "x", "--optimiser", "lion", "--output", str(output_dir)])
    assert code == 2 and "Known: Adam, AdamW" in capsys.readouterr().err
    code = main(["vqgan", "--demo", "--prompt", "x", "--story-every", "0", "--output", str(output_dir)])
    assert code == 2 and "schedule interval" in capsys.readouterr().err
