"""VQGAN models built from taming-transformers' modules, loaded from ``<name>.yaml`` + ``<name>.ckpt``.

``taming.models.vqgan`` needs an old pytorch_lightning, so the model is assembled here from
``taming.modules`` (Encoder, Decoder, VectorQuantizer2, GumbelQuantize) with the same attribute
names as taming's ``VQModel``/``GumbelVQ``; Lightning checkpoints then load key for key. The first
stage of a Net2Net transformer config (``first_stage_config``) loads too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from ..errors import UserError
from .checkpoints import load_checkpoint, state_dict_of

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth")
_GUMBEL_TARGETS = ("GumbelVQ",)
_VQ_TARGETS = ("VQModel", "VQSegmentationModel", "VQNoDiscModel", "EMAVQ", "GumbelVQ")


@dataclass(frozen=True)
class VqganFiles:
    """A config + weights pair on disk."""

    name: str
    config: Path
    weights: Path

    @property
    def demo(self) -> bool:
        return self.name.startswith("demo")


class Vqgan(nn.Module):
    """Encoder, quantiser and decoder with taming's attribute names (so checkpoints load as-is)."""

    def __init__(self, ddconfig: dict, n_embed: int, embed_dim: int, gumbel: bool = False,
                 kl_weight: float = 1e-8):
        super().__init__()
        from taming.modules.diffusionmodules.model import Decoder, Encoder
        from taming.modules.vqvae.quantize import GumbelQuantize, VectorQuantizer2

        self.gumbel = gumbel
        self.ddconfig = dict(ddconfig)
        self.encoder = Encoder(**ddconfig)
        with contextlib.redirect_stdout(io.StringIO()):  # taming prints the latent shape; stdout is the CLI's
            self.decoder = Decoder(**ddconfig)
        z_channels = ddconfig["z_channels"]
        if gumbel:
            self.quantize = GumbelQuantize(z_channels, embed_dim, n_embed=n_embed, kl_weight=kl_weight,
                                           temp_init=1.0)
        else:
            self.quantize = VectorQuantizer2(n_embed, embed_dim, beta=0.25)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.factor = 2 ** (len(ddconfig["ch_mult"]) - 1)
        self.n_embed = n_embed
        self.embed_dim = embed_dim

    @property
    def codebook(self) -> torch.Tensor:
        """The code vectors, shape (n_embed, embed_dim)."""
        return self.quantize.embed.weight if self.gumbel else self.quantize.embedding.weight

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Latent codes (B, embed_dim, h, w) to an image in [-1, 1]."""
        return self.decoder(self.post_quant_conv(z_q))

    def encode_to_latent(self, image: torch.Tensor) -> torch.Tensor:
        """An image in [-1, 1] to latent vectors in code space, before the nearest-code search.

        A GumbelVQ encoder speaks logits over the codebook: its latent is already the most likely
        code (the argmax, what taming's GumbelQuantize converges to at low temperature), never the
        soft expectation over codes, which is no code at all and decodes to a blur."""
        h = self.quant_conv(self.encoder(image))
        if self.gumbel:
            indices = self.quantize.proj(h).argmax(1)
            return self.codebook[indices].movedim(-1, 1)
        return h


def _phase_kernels(weight: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A 3-tap kernel (along ``dim``) after a nearest 2x upsample, as two 2-tap kernels on the
    input: even outputs see input rows (i-1, i, i), odd ones (i, i, i+1)."""
    first, middle, last = weight.unbind(dim)
    return torch.stack([first, middle + last], dim), torch.stack([first + middle, last], dim)


def subpixel_upsample(upsample: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """taming's ``Upsample`` (nearest 2x, then a 3x3 convolution, padding 1) computed on the small
    image: each of the four output phases is a 2x2 convolution of the input with the 3x3 kernel's
    taps summed where the upsample repeated a pixel. Same sums regrouped (float rounding apart),
    4/9 of the multiply-adds, forward and backward."""
    weight, bias = upsample.conv.weight, upsample.conv.bias
    height, width = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    rows = []
    for a, row_kernel in enumerate(_phase_kernels(weight, 2)):
        phases = [F.conv2d(padded[..., a:a + height + 1, b:b + width + 1], kernel, bias)
                  for b, kernel in enumerate(_phase_kernels(row_kernel, 3))]
        rows.append(torch.stack(phases, -1))  # (N, C, H, W, 2): the two column phases
    out = torch.stack(rows, 3)  # (N, C, H, 2, W, 2)
    return out.reshape(x.shape[0], -1, 2 * height, 2 * width)


def set_engine_decoder(vqgan: nn.Module, fast: bool) -> None:
    """The decoder as the engine runs it (True, as ``build_vqgan`` sets it: upsampling through
    ``subpixel_upsample``, swish as one fused ``F.silu``) or as taming wrote it (False). Modules,
    weights and state-dict keys stay the same; so do the numbers, float rounding apart."""
    from taming.modules.diffusionmodules.model import Decoder, ResnetBlock, Upsample

    plain = {Upsample: Upsample, ResnetBlock: ResnetBlock, Decoder: Decoder}
    swapped = _engine_classes()
    for module in vqgan.modules():
        base = next((c for c in plain if isinstance(module, c)), None)
        if base is None or (base is Upsample and not module.with_conv):
            continue
        module.__class__ = swapped[base] if fast else base


@functools.cache
def _engine_classes() -> dict[type, type]:
    """taming's classes -> the engine's subclasses. taming's swish is ``x * torch.sigmoid(x)``: three
    passes over the largest tensors forward, more backward; ``F.silu`` is the same function in
    one (a few percent of a CPU step at 128x128)."""
    from taming.modules.diffusionmodules.model import Decoder, ResnetBlock, Upsample

    class SubpixelUpsample(Upsample):
        def forward(self, x):
            return subpixel_upsample(self, x)

    class SiluResnetBlock(ResnetBlock):
        def forward(self, x, temb=None):
            h = self.conv1(F.silu(self.norm1(x)))
            if temb is not None:
                h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
            h = self.conv2(self.dropout(F.silu(self.norm2(h))))
            if self.in_channels != self.out_channels:
                x = self.conv_shortcut(x) if self.use_conv_shortcut else self.nin_shortcut(x)
            return x + h

    class SiluDecoder(Decoder):
        def forward(self, z):
            # taming's Decoder.forward, ending in F.silu
            self.last_z_shape = z.shape
            h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z), None)), None)
            for i_level in reversed(range(self.num_resolutions)):
                level = self.up[i_level]
                for i_block in range(self.num_res_blocks + 1):
                    h = level.block[i_block](h, None)
                    if len(level.attn) > 0:
                        h = level.attn[i_block](h)
                if i_level != 0:
                    h = level.upsample(h)
            if self.give_pre_end:
                return h
            return self.conv_out(F.silu(self.norm_out(h)))

    return {Upsample: SubpixelUpsample, ResnetBlock: SiluResnetBlock, Decoder: SiluDecoder}


def read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"The VQGAN config {path} could not be read ({exc}): download it again.") from None
    if not isinstance(config, dict) or "model" not in config:
        raise UserError(f"The VQGAN config {path} has no 'model' section: is it a taming-transformers config?")
    return config


def model_section(config: dict) -> tuple[dict, str]:
    """The VQ model's params and the state-dict key prefix (Net2Net configs nest the first stage)."""
    model = config["model"]
    params = model.get("params", {})
    if "first_stage_config" in params:
        return params["first_stage_config"], "first_stage_model."
    return model, ""


def build_vqgan(config: dict) -> tuple[Vqgan, str]:
    """An untrained VQGAN for this config, and the prefix its weights carry in a checkpoint."""
    section, prefix = model_section(config)
    target = str(section.get("target", ""))
    kind = target.rsplit(".", 1)[-1]
    if kind not in _VQ_TARGETS:
        raise UserError(f"The VQGAN config names model type {target!r}, which Atelier cannot load: "
                        f"use a config of one of {', '.join(_VQ_TARGETS)}.")
    params = section.get("params", {})
    if isinstance(params.get("ddconfig"), dict):
        # a config asking for enormous layers would be killed by the kernel while it is built
        from ..vqgan.memory import Need, refuse_if_too_big, vqgan_weights
        refuse_if_too_big(Need(weights=vqgan_weights(params["ddconfig"])), "cpu", "the VQGAN's layers")
    try:
        model = Vqgan(params["ddconfig"], int(params["n_embed"]), int(params["embed_dim"]),
                      gumbel=kind in _GUMBEL_TARGETS, kl_weight=float(params.get("kl_weight", 1e-8)))
    except KeyError as exc:
        raise UserError(f"The VQGAN config lacks {exc}: is it a complete taming-transformers config?") from None
    set_engine_decoder(model, True)
    return model, prefix


def load_vqgan(files: VqganFiles, device: str | torch.device = "cpu") -> Vqgan:
    """Build the model from its config and load the weights, running no code from the checkpoint."""
    model, prefix = build_vqgan(read_config(files.config))
    state = state_dict_of(load_checkpoint(files.weights))
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    wanted = model.state_dict()
    # Checkpoints also hold the discriminator/loss weights ('loss.*'): those are not needed here.
    usable = {k: v for k, v in state.items() if k in wanted}
    missing = [k for k in wanted if k not in usable]
    if missing:
        raise UserError(f"The checkpoint {files.weights.name} does not match {files.config.name} "
                        f"({len(missing)} weights missing, e.g. {missing[0]}): pick the matching pair.")
    model.load_state_dict(usable, strict=False)
    return model.eval().requires_grad_(False).to(device)


def find_vqgan_pairs(folder: Path) -> list[VqganFiles]:
    """Every ``<name>.yaml`` with a weights file of the same name in ``folder``."""
    pairs = []
    for config in sorted(Path(folder).glob("*.yaml")):
        weights = next((config.with_suffix(s) for s in WEIGHT_SUFFIXES if config.with_suffix(s).is_file()), None)
        if weights is not None:
            pairs.append(VqganFiles(config.stem, config, weights))
    return pairs


def resolve_vqgan(name_or_stem: str, folders: list[Path]) -> VqganFiles:
    """A VQGAN by name (a pair in one of ``folders``) or by a path stem given by the user."""
    stem = Path(name_or_stem).expanduser()
    for candidate in (stem, stem.with_suffix("")):
        config = candidate.with_suffix(".yaml")
        if config.is_file():
            weights = next((candidate.with_suffix(s) for s in WEIGHT_SUFFIXES
                            if candidate.with_suffix(s).is_file()), None)
            if weights is None:
                raise UserError(f"{config} has no weights beside it: put {candidate.name}.ckpt next to it.")
            return VqganFiles(candidate.name, config, weights)
    known = [pair for folder in folders for pair in find_vqgan_pairs(folder)]
    for pair in known:
        if pair.name == name_or_stem:
            return pair
    names = ", ".join(p.name for p in known) or "none installed"
    raise UserError(f"Unknown VQGAN model {name_or_stem!r}. Available: {names}; "
                    f"get more with `bash download-weights.sh --list`.")


def short_hash(path: Path, chunk: int = 1 << 20) -> str:
    """A quick fingerprint: size plus the first and last MiB (hashing GBs at each load is too slow)."""
    path = Path(path)
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(chunk))
        if path.stat().st_size > chunk:
            handle.seek(-chunk, 2)
            digest.update(handle.read(chunk))
    return digest.hexdigest()[:10]
