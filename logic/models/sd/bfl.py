"""FLUX.1 transformers in Black Forest Labs' key layout (``double_blocks.N.img_attn.qkv``,
``single_blocks.N.linear1``; the layout of BFL's releases and of ComfyUI / Forge files) <-> diffusers'.

diffusers' own converter assumes the full-size width (3072) when it splits a single block's fused
``linear1``; here every size is read from the tensors themselves (the width from ``img_in``, the head
size from the q/k norms, the depths from the block numbers), so any Flux-architecture file converts,
a pruned or distilled one as well as the tiny test models. Plain tensors in, plain tensors out: no
pickles (the file itself was read by ``load_checkpoint``).
"""

from __future__ import annotations

import re

import torch

from ...errors import UserError
from .export import swap_halves

PREFIX = "model.diffusion_model."

# diffusers name <- BFL name, for the weights that are renamed only ("scale" is the RMSNorms' weight)
_TOP = [("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer"),
        ("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer"),
        ("time_text_embed.text_embedder.linear_1", "vector_in.in_layer"),
        ("time_text_embed.text_embedder.linear_2", "vector_in.out_layer"),
        ("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer"),
        ("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer"),
        ("context_embedder", "txt_in"), ("x_embedder", "img_in"), ("proj_out", "final_layer.linear")]
_DOUBLE = [("norm1.linear", "img_mod.lin"), ("norm1_context.linear", "txt_mod.lin"),
           ("attn.norm_q", "img_attn.norm.query_norm"), ("attn.norm_k", "img_attn.norm.key_norm"),
           ("attn.norm_added_q", "txt_attn.norm.query_norm"), ("attn.norm_added_k", "txt_attn.norm.key_norm"),
           ("ff.net.0.proj", "img_mlp.0"), ("ff.net.2", "img_mlp.2"),
           ("ff_context.net.0.proj", "txt_mlp.0"), ("ff_context.net.2", "txt_mlp.2"),
           ("attn.to_out.0", "img_attn.proj"), ("attn.to_add_out", "txt_attn.proj")]
_DOUBLE_QKV = [(("attn.to_q", "attn.to_k", "attn.to_v"), "img_attn.qkv"),
               (("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"), "txt_attn.qkv")]
_SINGLE = [("norm.linear", "modulation.lin"), ("attn.norm_q", "norm.query_norm"), ("attn.norm_k", "norm.key_norm"),
           ("proj_out", "linear2")]
_SINGLE_FUSED = (("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), "linear1")


def is_bfl_flux(keys) -> bool:
    return any(k.startswith(("double_blocks.", PREFIX + "double_blocks.")) for k in keys)


def _kinds(name: str) -> tuple[str, ...]:
    """BFL's RMSNorms store ``scale``; diffusers' store ``weight``."""
    return ("scale",) if name.endswith("_norm") else ("weight", "bias")


def _theirs(kind: str) -> str:
    return "weight" if kind == "scale" else kind


def _depth(state: dict, block: str) -> int:
    found = {int(m.group(1)) for k in state for m in [re.match(rf"{block}\.(\d+)\.", k)] if m}
    return max(found) + 1 if found else 0


def dims(state: dict) -> dict:
    """The transformer config values a BFL state dict implies (prefix already stripped)."""
    try:
        head = state["double_blocks.0.img_attn.norm.query_norm.scale"].shape[0]
        width, in_channels = state["img_in.weight"].shape
        out = {"in_channels": int(in_channels), "num_layers": _depth(state, "double_blocks"),
               "num_single_layers": _depth(state, "single_blocks"), "attention_head_dim": int(head),
               "num_attention_heads": int(width) // int(head), "joint_attention_dim": int(state["txt_in.weight"].shape[1]),
               "pooled_projection_dim": int(state["vector_in.in_layer.weight"].shape[1]),
               "guidance_embeds": "guidance_in.in_layer.weight" in state}
    except KeyError as missing:
        raise UserError(f"The Flux file lacks {missing.args[0]}: it is not a whole FLUX.1 transformer.") from None
    out_channels = int(state["final_layer.linear.weight"].shape[0])
    if out_channels != out["in_channels"]:
        out["out_channels"] = out_channels
    return out


def to_diffusers(state: dict) -> tuple[dict, dict]:
    """A BFL-layout state dict -> (diffusers' FluxTransformer2DModel state dict, the dims it implies)."""
    state = {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state.items()}
    found = dims(state)
    width = found["attention_head_dim"] * found["num_attention_heads"]
    out, used = {}, set()

    def take(key):
        if key not in state:  # a block with a tensor cut away: one sentence, not a KeyError
            raise UserError(f"The Flux file lacks {key}: it is not a whole FLUX.1 transformer.")
        used.add(key)
        return state[key]

    for ours, theirs in _TOP:
        for kind in ("weight", "bias"):
            if f"{theirs}.{kind}" in state:
                out[f"{ours}.{kind}"] = take(f"{theirs}.{kind}")
    for kind in ("weight", "bias"):
        out[f"norm_out.linear.{kind}"] = swap_halves(take(f"final_layer.adaLN_modulation.1.{kind}"))
    for i in range(found["num_layers"]):
        here, there = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for ours, theirs in _DOUBLE:
            for kind in _kinds(theirs):
                out[f"{here}{ours}.{_theirs(kind)}"] = take(f"{there}{theirs}.{kind}")
        for names, theirs in _DOUBLE_QKV:
            for kind in ("weight", "bias"):
                for name, part in zip(names, take(f"{there}{theirs}.{kind}").chunk(3, dim=0)):
                    out[f"{here}{name}.{kind}"] = part
    for i in range(found["num_single_layers"]):
        here, there = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for ours, theirs in _SINGLE:
            for kind in _kinds(theirs):
                out[f"{here}{ours}.{_theirs(kind)}"] = take(f"{there}{theirs}.{kind}")
        names, theirs = _SINGLE_FUSED
        for kind in ("weight", "bias"):
            fused = take(f"{there}{theirs}.{kind}")
            parts = fused.split([width, width, width, fused.shape[0] - 3 * width], dim=0)
            for name, part in zip(names, parts):
                out[f"{here}{name}.{kind}"] = part
    left = sorted(set(state) - used)
    if left:
        raise UserError(f"The Flux file holds {len(left)} tensors that are not part of a FLUX.1 transformer "
                        f"(e.g. {left[0]}): is it a Flux variant Atelier does not know?")
    return out, found


def to_bfl(sd: dict, prefix: str = "") -> dict:
    """diffusers' FluxTransformer2DModel state dict -> BFL's layout (the inverse of ``to_diffusers``)."""
    out = {}
    for ours, theirs in _TOP:
        for kind in ("weight", "bias"):
            if f"{ours}.{kind}" in sd:
                out[f"{prefix}{theirs}.{kind}"] = sd[f"{ours}.{kind}"]
    for kind in ("weight", "bias"):
        out[f"{prefix}final_layer.adaLN_modulation.1.{kind}"] = swap_halves(sd[f"norm_out.linear.{kind}"])
    for i in range(_depth(sd, "transformer_blocks")):
        here, there = f"transformer_blocks.{i}.", f"{prefix}double_blocks.{i}."
        for ours, theirs in _DOUBLE:
            for kind in _kinds(theirs):
                out[f"{there}{theirs}.{kind}"] = sd[f"{here}{ours}.{_theirs(kind)}"]
        for names, theirs in _DOUBLE_QKV:
            for kind in ("weight", "bias"):
                out[f"{there}{theirs}.{kind}"] = torch.cat([sd[f"{here}{n}.{kind}"] for n in names])
    for i in range(_depth(sd, "single_transformer_blocks")):
        here, there = f"single_transformer_blocks.{i}.", f"{prefix}single_blocks.{i}."
        for ours, theirs in _SINGLE:
            for kind in _kinds(theirs):
                out[f"{there}{theirs}.{kind}"] = sd[f"{here}{ours}.{_theirs(kind)}"]
        names, theirs = _SINGLE_FUSED
        for kind in ("weight", "bias"):
            out[f"{there}{theirs}.{kind}"] = torch.cat([sd[f"{here}{n}.{kind}"] for n in names])
    return out
