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
    ({"prompts": ["a", "b"], "easing": "bounce"}, "Available: slow-middle, linear, slow-ends"),
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


def test_slow_ends_easing_starts_and_ends_slowly_and_keeps_its_old_name():
    assert walk.ease(0.0, "slow-ends") == 0 and walk.ease(1.0, "slow-ends") == 1
    assert walk.ease(0.1, "slow-ends") < 0.1 < walk.ease(0.1, "linear") + 1e-9
    assert walk.ease(0.5, "slow-ends") == pytest.approx(0.5)
    assert walk.ease(0.3, "ease-in-out") == walk.ease(0.3, "slow-ends")  # runs recorded with the old name


def test_default_easing_makes_the_middle_steps_smaller():
    """Seed 002 asked for smaller steps in the middle, where the picture changes most."""
    tiny_models()
    spec = walk.build_spec({**WALK, "prompts": ["a", "b"], "seeds": [1], "frames": 8})
    assert spec.easing == "slow-middle"
    ts = [t for _, b, t in walk.frame_plan(spec) if b == 1][:-1] + [1.0]
    ts = [0.0] + ts
    steps = np.diff(ts)
    assert np.all(steps > 0) and ts[-1] == 1.0
    assert steps[3] < steps[0] / 2 and steps[4] < steps[-1] / 2  # middle steps ~1/3 of the end steps


def test_ancestral_noise_of_every_step_follows_the_slerp():
    """The sampler's per-step draw is slerp(t, seed a's draw, seed b's draw), both generators advanced."""
    from diffusers import EulerAncestralDiscreteScheduler
    from diffusers.schedulers import scheduling_euler_ancestral_discrete as module

    scheduler = EulerAncestralDiscreteScheduler()
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    ref_a, ref_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    with walk.follow_slerp(scheduler, 0.3, gen_a, gen_b):
        for _ in range(2):  # two steps: both generators move on as in their single runs
            drawn = module.randn_tensor((1, 4, 8, 8), generator=gen_a)
            expected = walk.slerp(0.3, torch.randn(1, 4, 8, 8, generator=ref_a), torch.randn(1, 4, 8, 8, generator=ref_b))
            assert torch.allclose(drawn, expected)
    plain = module.randn_tensor((1, 4, 8, 8), generator=gen_a)  # after the frame: diffusers' own draw again
    assert torch.equal(plain, torch.randn(1, 4, 8, 8, generator=ref_a))


def test_euler_a_walk_has_no_jump_between_frames():
    """Consecutive-frame differences stay even: no generator swap mid-segment, none at the keyframe."""
    import tempfile
    import threading
    from pathlib import Path

    from logic.engines.base import Progress, RunContext

    from sd_helpers import CACHE

    tiny_models()
    spec = walk.build_spec({**WALK, "scheduler": "Euler a", "steps": 4, "prompts": ["a red fox", "a red fox"],
                            "seeds": [3, 4], "frames": 8, "easing": "linear"})
    models, _ = CACHE.get(walk.model_key(spec, "cpu"), lambda: walk.load_models(spec, "cpu"))
    spec = walk.prepare(spec, models)
    ctx = RunContext(Path(tempfile.mkdtemp()), "cpu", threading.Event())
    frames = [np.asarray(e.image).astype(float) for e in walk.generate(spec, models, ctx)
              if isinstance(e, Progress) and e.frame]
    diffs = [np.abs(b - a).mean() for a, b in zip(frames, frames[1:])]
    assert len(frames) == 9 and max(diffs) < 1.6 * float(np.median(diffs)), diffs


def test_walk_matches_an_artist_for_every_keyframe(output_dir):
    run, state = run_engine("walk", output_dir, **WALK, prompts=["a fox", "a bird"], seeds=[1], frames=1,
                            match_artist=True, artist="Eve Rings", demo=True)  # the demo artists and model
    assert state.status == runs.DONE, state.error
    assert run.details["request"]["prompts"] == ["a fox", "a bird"]
    assert run.details["resolved"]["prompts"] == ["a fox, in the style of Eve Rings", "a bird, in the style of Eve Rings"]
    assert run.details["artist_match"]["artist"] == "Eve Rings"
