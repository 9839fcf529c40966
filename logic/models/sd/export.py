"""Export: diffusers components -> one dict in the original (CompVis / SGM) checkpoint key layout.

The inverse of diffusers' ``convert_ldm_*`` / ``convert_open_clip_checkpoint``: the tests write their
tiny models as single files with it (SD 1.x, SD 2.x, SDXL, inpainting UNets), and it can share a
model as one file. SD 1.x's text encoder is stored as transformers' CLIP under
``cond_stage_model.transformer.``; OpenCLIP encoders (SD 2.x, SDXL's second) in open_clip's own
layout (``resblocks``, fused ``in_proj``, ``text_projection`` as a matrix).
"""

from __future__ import annotations

import torch


_UNET_RESNET = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"),
                ("out_layers.3", "conv2"), ("emb_layers.1", "time_emb_proj"), ("skip_connection", "conv_shortcut")]
_UNET_TOP = [("time_embed.0", "time_embedding.linear_1"), ("time_embed.2", "time_embedding.linear_2"),
             ("label_emb.0.0", "add_embedding.linear_1"), ("label_emb.0.2", "add_embedding.linear_2"),
             ("input_blocks.0.0", "conv_in"), ("out.0", "conv_norm_out"), ("out.2", "conv_out")]
_VAE_TOP = [("encoder.norm_out", "encoder.conv_norm_out"), ("decoder.norm_out", "decoder.conv_norm_out")]
_VAE_ATTN = [("norm", "group_norm"), ("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")]


def diffusers_to_original(unet_sd: dict, vae_sd: dict, text_sd: dict, unet_config: dict) -> dict:
    """The inverse of ``convert_original_state``: one dict in the original checkpoint key layout."""
    out = {}
    for key, value in unet_sd.items():
        out["model.diffusion_model." + _unet_key_to_original(key, unet_config)] = value
    for key, value in vae_sd.items():
        new, value = _vae_key_to_original(key, value, vae_sd)
        out["first_stage_model." + new] = value
    for key, value in text_sd.items():
        key = key if key.startswith("text_model.") else "text_model." + key  # the layout SD files use
        out["cond_stage_model.transformer." + key] = value
    return out


def _unet_key_to_original(key: str, config: dict) -> str:
    for original, diffusers_name in _UNET_TOP:
        if key.startswith(diffusers_name + "."):
            return original + key[len(diffusers_name):]
    per = config["layers_per_block"]
    parts = key.split(".")
    if parts[0] == "down_blocks":
        block, kind, index = int(parts[1]), parts[2], int(parts[3])
        rest = ".".join(parts[4:])
        if kind == "downsamplers":
            return f"input_blocks.{1 + block * (per + 1) + per}.0.op.{rest.split('.', 1)[1]}"
        slot = 0 if kind == "resnets" else 1
        return _resnet_names(f"input_blocks.{1 + block * (per + 1) + index}.{slot}.{rest}", slot == 0)
    if parts[0] == "up_blocks":
        block, kind, index = int(parts[1]), parts[2], int(parts[3])
        rest = ".".join(parts[4:])
        if kind == "upsamplers":
            has_attention = "CrossAttn" in config["up_block_types"][block]
            return f"output_blocks.{block * (per + 1) + per}.{2 if has_attention else 1}.conv.{rest.split('.', 1)[1]}"
        slot = 0 if kind == "resnets" else 1
        return _resnet_names(f"output_blocks.{block * (per + 1) + index}.{slot}.{rest}", slot == 0)
    if parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return _resnet_names(f"middle_block.{2 * index}.{rest}", True)
        return f"middle_block.1.{rest}"
    raise ValueError(f"Unexpected UNet key {key}")


def _resnet_names(key: str, is_resnet: bool) -> str:
    if not is_resnet:
        return key
    for original, diffusers_name in _UNET_RESNET:
        key = key.replace(diffusers_name, original)
    return key


def _vae_key_to_original(key: str, value: torch.Tensor, vae_sd: dict) -> tuple[str, torch.Tensor]:
    for original, diffusers_name in _VAE_TOP:
        if key.startswith(diffusers_name + "."):
            return original + key[len(diffusers_name):], value
    parts = key.split(".")
    side = parts[0]
    if parts[1] in ("down_blocks", "up_blocks"):
        n_up = 1 + max(int(k.split(".")[2]) for k in vae_sd if k.startswith("decoder.up_blocks."))
        block = int(parts[2])
        stage = "down" if parts[1] == "down_blocks" else "up"
        if stage == "up":
            block = n_up - 1 - block
        if parts[3] in ("downsamplers", "upsamplers"):
            return f"{side}.{stage}.{block}.{'downsample' if stage == 'down' else 'upsample'}.{'.'.join(parts[5:])}", value
        rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
        return f"{side}.{stage}.{block}.block.{parts[4]}.{rest}", value
    if parts[1] == "mid_block":
        if parts[2] == "resnets":
            rest = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
            return f"{side}.mid.block_{int(parts[3]) + 1}.{rest}", value
        rest = ".".join(parts[4:])
        for original, diffusers_name in _VAE_ATTN:
            if rest.startswith(diffusers_name + "."):
                rest = original + rest[len(diffusers_name):]
                break
        if value.ndim == 2:
            value = value[:, :, None, None]  # linear -> 1x1 conv, as the original stores them
        return f"{side}.mid.attn_1.{rest}", value
    return key, value


_OPEN_CLIP_NAMES = [("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"),
                    ("mlp.fc2", "mlp.c_proj"), ("self_attn.out_proj", "attn.out_proj")]


def pipeline_to_original(pipe) -> dict:
    """A whole SD 1.x / 2.x / SDXL pipeline in the original single-file layout."""
    unet = pipe.unet
    out = {"model.diffusion_model." + _unet_key_to_original(k, dict(unet.config)): v
           for k, v in unet.state_dict().items()}
    vae_sd = pipe.vae.state_dict()
    for key, value in vae_sd.items():
        new, value = _vae_key_to_original(key, value, vae_sd)
        out["first_stage_model." + new] = value
    text = pipe.text_encoder.state_dict()
    if getattr(pipe, "text_encoder_2", None) is not None:        # SDXL: CLIP-L, then OpenCLIP bigG
        out.update(_clip_to_original(text, "conditioner.embedders.0.transformer."))
        out.update(open_clip_to_original(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    elif pipe.text_encoder.config.hidden_act == "gelu":          # SD 2.x: OpenCLIP ViT-H
        out.update(open_clip_to_original(text, "cond_stage_model.model."))
    else:
        out.update(_clip_to_original(text, "cond_stage_model.transformer."))
    return out


def _clip_to_original(text_sd: dict, prefix: str) -> dict:
    return {prefix + (k if k.startswith("text_model.") else "text_model." + k): v for k, v in text_sd.items()
            if not k.startswith("text_projection")}


def open_clip_to_original(text_sd: dict, prefix: str) -> dict:
    """transformers' CLIP text weights -> open_clip's names under ``prefix`` (q, k, v fused into in_proj)."""
    sd = {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in text_sd.items()}
    out = {prefix + "token_embedding.weight": sd["embeddings.token_embedding.weight"],
           prefix + "positional_embedding": sd["embeddings.position_embedding.weight"],
           prefix + "ln_final.weight": sd["final_layer_norm.weight"],
           prefix + "ln_final.bias": sd["final_layer_norm.bias"]}
    if "text_projection.weight" in sd:
        out[prefix + "text_projection"] = sd["text_projection.weight"].T.contiguous()
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")})
    for n in layers:
        here, there = f"encoder.layers.{n}.", f"{prefix}transformer.resblocks.{n}."
        for kind in ("weight", "bias"):
            out[there + f"attn.in_proj_{kind}"] = torch.cat([sd[here + f"self_attn.{p}_proj.{kind}"] for p in "qkv"])
            for ours, theirs in _OPEN_CLIP_NAMES:
                out[there + f"{theirs}.{kind}"] = sd[here + f"{ours}.{kind}"]
    return out


# SD 3 / 3.5 (Stability's layout: the MMDiT under model.diffusion_model.joint_blocks, the encoders
# under text_encoders.*) -- the inverse of diffusers' convert_sd3_transformer_checkpoint_to_diffusers.

_SD3_TOP = [("pos_embed", "pos_embed.pos_embed"), ("x_embedder.proj", "pos_embed.proj"),
            ("t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1"),
            ("t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2"),
            ("y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1"),
            ("y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2"),
            ("context_embedder", "context_embedder"), ("final_layer.linear", "proj_out")]
_SD3_BLOCK = [("x_block.attn.ln_q", "attn.norm_q"), ("x_block.attn.ln_k", "attn.norm_k"),
              ("context_block.attn.ln_q", "attn.norm_added_q"), ("context_block.attn.ln_k", "attn.norm_added_k"),
              ("x_block.attn.proj", "attn.to_out.0"), ("context_block.attn.proj", "attn.to_add_out"),
              ("x_block.attn2.ln_q", "attn2.norm_q"), ("x_block.attn2.ln_k", "attn2.norm_k"),
              ("x_block.attn2.proj", "attn2.to_out.0"),
              ("x_block.adaLN_modulation.1", "norm1.linear"), ("context_block.adaLN_modulation.1", "norm1_context.linear"),
              ("x_block.mlp.fc1", "ff.net.0.proj"), ("x_block.mlp.fc2", "ff.net.2"),
              ("context_block.mlp.fc1", "ff_context.net.0.proj"), ("context_block.mlp.fc2", "ff_context.net.2")]
_SD3_QKV = [("x_block.attn.qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
            ("context_block.attn.qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
            ("x_block.attn2.qkv", ("attn2.to_q", "attn2.to_k", "attn2.to_v"))]


def swap_halves(weight: torch.Tensor) -> torch.Tensor:
    """(shift, scale) <-> (scale, shift): the original AdaLN output order against diffusers' (its own inverse)."""
    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def sd3_transformer_to_original(sd: dict, prefix: str = "model.diffusion_model.") -> dict:
    out = {}
    for original, name in _SD3_TOP:
        for kind in ("", ".weight", ".bias"):
            if name + kind in sd and (kind or name == "pos_embed.pos_embed"):
                out[prefix + original + kind] = sd[name + kind]
    for kind in ("weight", "bias"):
        out[f"{prefix}final_layer.adaLN_modulation.1.{kind}"] = swap_halves(sd[f"norm_out.linear.{kind}"])
    blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks.")})
    for i in blocks:
        here, there = f"transformer_blocks.{i}.", f"{prefix}joint_blocks.{i}."
        for kind in ("weight", "bias"):
            for original, name in _SD3_BLOCK:
                if f"{here}{name}.{kind}" in sd:
                    out[f"{there}{original}.{kind}"] = sd[f"{here}{name}.{kind}"]
            for original, names in _SD3_QKV:
                if f"{here}{names[0]}.{kind}" in sd:
                    out[f"{there}{original}.{kind}"] = torch.cat([sd[f"{here}{n}.{kind}"] for n in names])
            if i == blocks[-1]:   # the last context block is pre-only: its modulation is stored like the final layer's
                key = f"{there}context_block.adaLN_modulation.1.{kind}"
                out[key] = swap_halves(out[key])
    return out


def sd3_pipeline_to_original(pipe, encoders: bool = True) -> dict:
    """An SD 3 / 3.5 pipeline as Stability's single file: the MMDiT and the VAE, with the CLIP-L,
    CLIP-G and T5 encoders under ``text_encoders.`` when ``encoders`` (the ``*_incl_clips_t5xxl`` files)."""
    out = sd3_transformer_to_original(pipe.transformer.state_dict())
    vae_sd = pipe.vae.state_dict()
    for key, value in vae_sd.items():
        new, value = _vae_key_to_original(key, value, vae_sd)
        out["first_stage_model." + new] = value
    if encoders:
        # CLIP-L's projection is not stored (diffusers and ComfyUI take it as the identity)
        out.update(_clip_to_original(pipe.text_encoder.state_dict(), "text_encoders.clip_l.transformer."))
        out.update({"text_encoders.clip_g.transformer." + (k if k.startswith(("text_model.", "text_projection"))
                                                           else "text_model." + k): v
                    for k, v in pipe.text_encoder_2.state_dict().items()})
        if pipe.text_encoder_3 is not None:
            out.update({"text_encoders.t5xxl.transformer." + k: v for k, v in pipe.text_encoder_3.state_dict().items()})
    return out
