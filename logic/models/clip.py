"""CLIP models through open_clip: a model name plus a pretrained tag, or a local weights file."""

from __future__ import annotations

import functools
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError
from .checkpoints import check_safetensors_header, refusal_for
from .hub import check_on_hub

log = logging.getLogger(__name__)


@dataclass
class ClipModel:
    """A loaded CLIP: the model, its tokenizer, and the input size/normalisation it was trained with."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    pretrained: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def encode_text(self, texts: list[str], device) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(device)
        return self.model.encode_text(tokens).float()

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] at ``image_size``; normalisation is applied here."""
        mean = torch.tensor(self.mean, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        return self.model.encode_image((pixels - mean) / std).float()


class PatchMatmulConv2d(torch.nn.Conv2d):
    """A ViT patch embedding (a convolution whose kernel is its stride) computed as what it is:
    the image cut into patches, times the weight as a matrix, in one matmul.

    Same weights, same sums (in another order: float rounding apart, the same numbers). On a CPU
    oneDNN's backward of a 32x32-stride-32 convolution, which VQGAN+CLIP needs every step (the
    gradient flows back to the pixels), took ~0.2 s for 8 cutouts, five times its forward; as a
    matmul forward and backward take ~25 ms each."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, height, width = x.shape
        kh, kw = self.kernel_size
        rows, cols = height // kh, width // kw
        x = x[..., :rows * kh, :cols * kw]  # what the convolution ignores at the edges
        patches = x.reshape(n, c, rows, kh, cols, kw).permute(0, 2, 4, 1, 3, 5).reshape(n * rows * cols, -1)
        out = torch.nn.functional.linear(patches, self.weight.reshape(self.out_channels, -1), self.bias)
        return out.view(n, rows, cols, self.out_channels).permute(0, 3, 1, 2)


def set_patch_matmul(tower: torch.nn.Module, matmul: bool) -> bool:
    """Compute a ViT's patch embedding (``conv1``) as a matmul (True) or as open_clip's
    convolution (False); the module, its weights and state-dict keys stay the same. Returns
    whether the tower has such a patch embedding (a kernel equal to its stride, no padding)."""
    conv = getattr(tower, "conv1", None)
    if not isinstance(conv, torch.nn.Conv2d):
        return False
    if (conv.kernel_size != conv.stride or conv.padding != (0, 0) or conv.dilation != (1, 1)
            or conv.groups != 1 or conv.padding_mode != "zeros"):
        return False
    conv.__class__ = PatchMatmulConv2d if matmul else torch.nn.Conv2d
    return True


def set_engine_layout(tower: torch.nn.Module, fast: bool) -> None:
    """The image tower as the engines run it (True: sequence-first attention, patch embedding as
    a matmul, the last block for the class token only) or as open_clip makes it (False). The same
    numbers either way."""
    set_sequence_first(tower, fast)
    set_patch_matmul(tower, fast)
    set_class_token_last_block(tower, fast)


class ClassTokenLastBlock(torch.nn.Module):
    """Marker base: see ``set_class_token_last_block``."""


@functools.cache
def _class_token_transformer_class(base: type) -> type:
    class ClassTokenTransformer(base, ClassTokenLastBlock):
        """open_clip's ``Transformer`` whose last block is computed for the class token alone.

        A ViT pooled by its class token ('tok') reads only that token after the last block, and
        that token's output needs every token's keys and values but only its own query, attention
        output and MLP. Computing the other 49 rows (ViT-B/32) of the last block's query, output
        projection and MLP, forward and backward, is ~7% of the tower's work thrown away."""

        def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
            if attn_mask is not None or self.grad_checkpointing:
                return super().forward(x, attn_mask=attn_mask)
            if not self.batch_first:
                x = x.transpose(0, 1).contiguous()  # NLD -> LND
            *blocks, last = self.resblocks
            for block in blocks:
                x = block(x)
            x = _class_token_output(last, x, sequence_dim=1 if self.batch_first else 0)
            return x if self.batch_first else x.transpose(0, 1)

    return ClassTokenTransformer


def _class_token_output(block: torch.nn.Module, x: torch.Tensor, sequence_dim: int) -> torch.Tensor:
    """``block(x)`` (open_clip's ResidualAttentionBlock, self-attention) for the first token only."""
    normed = block.ln_1(x)
    query, cls = normed.narrow(sequence_dim, 0, 1), x.narrow(sequence_dim, 0, 1)
    attended = block.attn(query, normed, normed, need_weights=False)[0]
    cls = cls + block.ls_1(attended)
    return cls + block.ls_2(block.mlp(block.ln_2(cls)))


def set_class_token_last_block(tower: torch.nn.Module, class_token_only: bool) -> bool:
    """Compute the last block of a class-token-pooled ViT for the class token alone (True) or for
    every token (False, open_clip's way). The pooled embedding is the same; the per-token outputs
    (``output_tokens``) are not kept, so towers that return them, pool another way, or carry
    cross-attention are left alone. Returns whether the tower was such a ViT."""
    from open_clip.transformer import ResidualAttentionBlock, Transformer

    transformer = getattr(tower, "transformer", None)
    blocks = getattr(transformer, "resblocks", None)
    if not isinstance(transformer, Transformer) or not blocks:
        return False
    pooled_by_token = (getattr(tower, "pool_type", None) == "tok" and getattr(tower, "attn_pool", None) is None
                       and not getattr(tower, "output_tokens", False))
    last = blocks[-1]
    if not pooled_by_token or type(last) is not ResidualAttentionBlock or hasattr(last, "ln_1_kv") \
            or not isinstance(getattr(last, "attn", None), torch.nn.MultiheadAttention):
        return False
    plain = next(c for c in type(transformer).__mro__ if not issubclass(c, ClassTokenLastBlock))
    transformer.__class__ = _class_token_transformer_class(plain) if class_token_only else plain
    return True


def set_sequence_first(tower: torch.nn.Module, sequence_first: bool) -> bool:
    """Lay a ViT tower's attention out sequence-first (True) or batch-first (open_clip's default).

    Batch-first, ``nn.MultiheadAttention`` transposes its input and the strided tensor makes the
    in/out projections batched matmuls of 8-row slices, about half as fast on a CPU as the one
    plain matmul they become sequence-first; the maths is the same. Returns whether the tower
    has such a layout to set (others are left alone)."""
    transformer = getattr(tower, "transformer", None)
    blocks = getattr(transformer, "resblocks", None)
    if blocks is None or not hasattr(transformer, "batch_first"):
        return False
    attentions = [getattr(block, "attn", None) for block in blocks]
    if not all(isinstance(a, torch.nn.MultiheadAttention) for a in attentions):
        return False
    transformer.batch_first = not sequence_first
    for attention in attentions:
        attention.batch_first = not sequence_first
    return True


def split_clip_name(name: str) -> tuple[str, str]:
    """'ViT-B-32:openai' -> ('ViT-B-32', 'openai'); no tag means the model's first known tag."""
    model, _, tag = name.partition(":")
    if not tag:
        import open_clip

        tags = open_clip.list_pretrained_tags_by_model(model)
        tag = "openai" if "openai" in tags else (tags[0] if tags else "")
    return model, tag


def cached_weights(model_name: str, tag: str, cache_dir: str | None = None) -> str | None:
    """The weights of ``model_name:tag`` if they are already in the Hugging Face cache.

    Loading the cached file directly makes no network request at all (open_clip would ask the hub
    whether the file changed, and wait out its retries on an offline machine).
    """
    from huggingface_hub import try_to_load_from_cache

    repo_id, filename = hub_file(model_name, tag)
    if not repo_id:
        return None
    for name in (f"{Path(filename).stem}.safetensors", filename):
        found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(found, str):
            return found
    return None


def hub_file(model_name: str, tag: str) -> tuple[str, str]:
    """(hub repo, file) open_clip downloads ``model_name:tag`` from; ('', '') when not from the hub."""
    import open_clip

    return _split_hub_id((open_clip.get_pretrained_cfg(model_name, tag) or {}).get("hf_hub", ""))


def _split_hub_id(hub: str) -> tuple[str, str]:
    """'org/repo/' -> ('org/repo', default file); 'org/repo/file.bin' -> ('org/repo', 'file.bin')."""
    parts = hub.split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        return "", ""
    filename = "/".join(parts[2:]) or "open_clip_pytorch_model.bin"
    return f"{parts[0]}/{parts[1]}", filename


def _clip_failure(model_name: str, tag: str, weights: Path | None, exc: BaseException) -> UserError:
    if weights:
        detail = str(exc).strip().split("\n")[0][:160]
        return UserError(f"The CLIP weights {weights} do not fit {model_name} ({detail}): pick the matching model.")
    return UserError(f"CLIP {model_name}:{tag} is not in the local cache and could not be downloaded "
                     f"({type(exc).__name__}): run `bash download-weights.sh --clip {model_name}:{tag}` on a "
                     "connected machine, or point clip_weights in defaults.yaml at a local weights file.")


def load_clip(name: str, weights: Path | None = None, device: str | torch.device = "cpu") -> ClipModel:
    """Load an open_clip model by name (with a pretrained tag) or from a local weights file.

    OpenAI's weights were trained with QuickGELU; open_clip's plain configs use GELU, so the
    activation is forced for the 'openai' tag (otherwise embeddings are subtly wrong).
    """
    import open_clip

    model_name, tag = split_clip_name(name)
    if model_name not in open_clip.list_models():
        raise UserError(f"Unknown CLIP model {model_name!r}. Available: {', '.join(open_clip.list_models()[:40])}, …")
    quick_gelu = tag == "openai" or model_name.endswith("-quickgelu")
    pretrained = str(weights) if weights else (cached_weights(model_name, tag) or tag)
    if weights and not Path(weights).is_file():
        raise UserError(f"The CLIP weights file {weights} does not exist: check the path.")
    if str(pretrained).endswith(".safetensors") and Path(pretrained).is_file():
        check_safetensors_header(pretrained)
    if not Path(pretrained).is_file() and hub_file(model_name, tag)[0]:
        check_on_hub(hub_file(model_name, tag)[0], f"CLIP {model_name}:{tag}",
                     f"run `bash download-weights.sh --clip {model_name}:{tag}` on a connected machine, "
                     "or point clip_weights in defaults.yaml at a local weights file")
    try:
        model = open_clip.create_model(model_name, pretrained=pretrained or None, device=device,
                                       force_quick_gelu=quick_gelu and not model_name.endswith("-quickgelu"),
                                       weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as exc:
        refusal = refusal_for(pretrained, exc) if Path(pretrained).is_file() else None
        if refusal is not None:
            raise refusal from None
        raise _clip_failure(model_name, tag, weights, exc) from None
    except Exception as exc:  # noqa: BLE001 - hub and network errors come in many types
        raise _clip_failure(model_name, tag, weights, exc) from None
    model = model.eval().requires_grad_(False)
    set_engine_layout(model.visual, True)
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    return ClipModel(model, open_clip.get_tokenizer(model_name), model_name, str(weights or tag), size,
                     tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
                     tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)))
