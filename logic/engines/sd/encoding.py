"""Prompt encoding, one function per family: the one place where text becomes the pipeline's inputs.

``encode_prompt(pipe, family, prompt, negative, cfg)`` returns the keyword arguments a pipeline
call takes instead of strings (``prompt_embeds``, ``negative_prompt_embeds`` and, where the family
has them, the pooled embeddings). Every task and the walk go through it, so prompt syntax (weights,
long prompts, embeddings, clip skip) plugs in here, per family, once. Each function calls the
pipeline's own ``encode_prompt``: the embeddings are exactly those of a plain pipeline call.
"""

from __future__ import annotations

from typing import Callable

import torch


def uses_cfg(family, cfg: float) -> bool:
    """Classifier-free guidance runs a second, negative pass; embedded-guidance models never do."""
    return family.guidance == "cfg" and cfg > 1


def _device(pipe):
    return pipe._execution_device


def encode_clip(pipe, family, prompt: str, negative: str, cfg: float) -> dict:
    """SD 1.x / 2.x: one CLIP (or OpenCLIP) text encoder."""
    cond, uncond = pipe.encode_prompt(prompt, _device(pipe), 1, uses_cfg(family, cfg), negative or None)
    out = {"prompt_embeds": cond}
    if uncond is not None:
        out["negative_prompt_embeds"] = uncond
    return out


def encode_sdxl(pipe, family, prompt: str, negative: str, cfg: float) -> dict:
    """SDXL: CLIP-L and OpenCLIP bigG hidden states concatenated, plus bigG's pooled embedding."""
    cond, uncond, pooled, negative_pooled = pipe.encode_prompt(
        prompt=prompt, device=_device(pipe), num_images_per_prompt=1,
        do_classifier_free_guidance=uses_cfg(family, cfg), negative_prompt=negative or None)
    out = {"prompt_embeds": cond, "pooled_prompt_embeds": pooled}
    if uncond is not None:
        out.update(negative_prompt_embeds=uncond, negative_pooled_prompt_embeds=negative_pooled)
    return out


def encode_sd3(pipe, family, prompt: str, negative: str, cfg: float) -> dict:
    """SD 3.5: CLIP-L + CLIP-G (pooled and hidden) and T5 hidden states."""
    cond, uncond, pooled, negative_pooled = pipe.encode_prompt(
        prompt=prompt, prompt_2=None, prompt_3=None, device=_device(pipe), num_images_per_prompt=1,
        do_classifier_free_guidance=uses_cfg(family, cfg), negative_prompt=negative or None)
    out = {"prompt_embeds": cond, "pooled_prompt_embeds": pooled}
    if uncond is not None:
        out.update(negative_prompt_embeds=uncond, negative_pooled_prompt_embeds=negative_pooled)
    return out


def encode_flux(pipe, family, prompt: str, negative: str, cfg: float) -> dict:
    """Flux: T5 hidden states and CLIP-L's pooled embedding; no negative prompt (guidance is an input)."""
    cond, pooled, _text_ids = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=_device(pipe),
                                                 num_images_per_prompt=1)
    return {"prompt_embeds": cond, "pooled_prompt_embeds": pooled}


ENCODERS: dict[str, Callable] = {"clip": encode_clip, "sdxl": encode_sdxl, "sd3": encode_sd3, "flux": encode_flux}


def encode_prompt(pipe, family, prompt: str, negative: str = "", cfg: float = 7.0) -> dict:
    """The family's encoder, without gradients."""
    with torch.no_grad():
        return ENCODERS[family.encoder](pipe, family, prompt, negative, cfg)


def encode_run(pipe, family, prompts: list[str], negative: str, cfg: float, clip_skip: int = 1) -> tuple[list[dict], dict]:
    """Every prompt of a run as pipeline kwargs, and the record for details.json ("prompt_encoding").

    CLIP families go through logic/a1111 (A1111 weights, BREAK, 75-token chunks, embeddings, clip
    skip); T5 families (SD 3.5, Flux) get their prompts as plain text (logic/a1111 strips the weight
    syntax and says so) encoded by the family's function above.
    """
    from ...a1111.run_prompts import encode_run_prompts

    run = encode_run_prompts(pipe, prompts, negative, clip_skip)
    if run.encoded is not None:
        return [run.kwargs(index) for index in range(len(prompts))], run.record
    texts = run.texts
    negative_text = texts[-1] if family.negative_prompt else ""
    return [encode_prompt(pipe, family, text, negative_text, cfg) for text in texts[:-1]], run.record


def mix(a: dict, b: dict, t: float) -> dict:
    """Linear mix of two encodings (the walk): every tensor, pooled ones included; t=0 gives ``a`` exactly."""
    if t == 0:
        return dict(a)
    return {key: torch.lerp(a[key], b[key], t) for key in a}


def guidance_kwargs(family, cfg: float) -> dict:
    """The guidance argument: CFG scale, or the embedded guidance of a distilled model."""
    return {"guidance_scale": float(cfg)}
