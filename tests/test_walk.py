"""Prompt walks on tiny random models: frame count, keyframes equal single renders, the maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from logic import media, runs
from logic.engines import walk
from logic.errors import UserError

from sd_helpers import BASE, pixels, run_engine, tiny_models

WALK = {k: v for k, v in BASE.items() if k not in ("prompt", "preview_every")}


def test_walk_frames_and_keyframes_reproduce_single_renders(output_dir):
    run, state = run_engine("walk", output_dir, **{**WALK, "scheduler": "Euler a"}, prompts=["a red fox", "a blue bird"], seeds=[3, 4],
                            frames=2, gif=True)
    assert state.status == runs.DONE, state.error
    assert run.details["total_frames"] == 3 and run.details["frames"] == 3
    assert media.count_frames(run.file("anim.mp4")) == 3 and run.file("anim.gif").is_file()
    for index, (prompt, seed) in enumerate([("a red fox", 3), ("a blue bird", 4)], start=1):
        single, _ = run_engine("diffusion", output_dir, **{**BASE, "prompt": prompt, "scheduler": "Euler a"},
                               seed=seed)
        assert np.array_equal(pixels(run.file(f"keyframe-{index:02d}.png")), pixels(single.file("output.png")))


def test_walk_with_one_seed_uses_it_for_every_prompt():
    tiny_models()
    spec = walk.build_spec({**WALK, "prompts": ["a", "b", "c"], "seeds": [7], "frames": 4})
    assert spec.seeds == [7, 7, 7] and spec.total_frames == 9
    assert [p[:2] for p in walk.frame_plan(spec)][:5] == [(0, 0), (0, 1), (0, 1), (0, 1), (1, 1)]


@pytest.mark.parametrize("change, words", [
    ({"prompts": ["only one"]}, "two or more"),
    ({"prompts": ["a", "b", "c"], "seeds": [1, 2]}, "one per prompt (3)"),
    ({"prompts": ["a", "b"], "frames": 0}, "Frames per segment"),
    ({"prompts": ["a", "b"], "easing": "bounce"}, "Available: linear, ease-in-out"),
])
def test_walk_bad_input(change, words):
    tiny_models()
    with pytest.raises(UserError, match=".*") as caught:
        walk.build_spec({**WALK, **change})
    assert words in str(caught.value)


def test_slerp_ends_exactly_and_keeps_the_norm():
    a, b = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)), \
        torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(walk.slerp(0.0, a, b), a) and torch.equal(walk.slerp(1.0, a, b), b)
    middle = walk.slerp(0.5, a, b)
    assert abs(middle.norm() / a.norm() - 1) < 0.1  # a straight line would lose ~30% of the norm
    assert torch.equal(walk.slerp(0.3, a, a.clone()), a)  # equal seeds: the same noise throughout


def test_easing_starts_and_ends_slowly():
    assert walk.ease(0.0, "ease-in-out") == 0 and walk.ease(1.0, "ease-in-out") == 1
    assert walk.ease(0.1, "ease-in-out") < 0.1 < walk.ease(0.1, "linear") + 1e-9
    assert walk.ease(0.5, "ease-in-out") == pytest.approx(0.5)
