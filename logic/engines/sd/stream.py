"""A diffusers pipeline call as a stream of step events (the pipeline's interrupt flag is the stop button)."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ..base import RunContext


@dataclass
class StepEvent:
    step: int           # 1-based, within this call
    total: int          # denoising steps this call makes (scheduler order included)
    latents: torch.Tensor | None = None   # a detached copy of the first image's latents, when asked


def stream_pipeline(pipe, kwargs: dict, ctx: RunContext, want_latents=lambda step: False) -> Iterator[Any]:
    """Run ``pipe(**kwargs)`` in a helper thread; yield a StepEvent per step, then the pipeline output.

    The callback only copies what the consumer asked for and never waits, so the denoising loop
    runs at the plain pipeline's speed. Stop sets the pipeline's interrupt flag: the remaining steps
    are skipped and the latents made so far are decoded, so a stopped run keeps its image.
    """
    events: queue.SimpleQueue = queue.SimpleQueue()

    def on_step(p, i, t, tensors):
        if ctx.stopped:
            p._interrupt = True
        step = i + 1
        latents = tensors["latents"][:1].detach().clone() if want_latents(step) else None
        events.put(StepEvent(step, p.num_timesteps, latents))
        return {}

    def work():
        try:
            events.put(("done", pipe(**kwargs, callback_on_step_end=on_step)))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread, raised there
            events.put(("error", exc))

    thread = threading.Thread(target=work, name="atelier-sd-call", daemon=True)
    thread.start()
    try:
        while True:
            event = events.get()
            if isinstance(event, StepEvent):
                yield event
                continue
            kind, value = event
            if kind == "error":
                raise value
            yield value
            return
    finally:
        if thread.is_alive():
            pipe._interrupt = True
            thread.join()
