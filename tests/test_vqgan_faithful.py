"""VQGAN+CLIP against the references, on random weights: each test recomputes what the notebook,
the vqgan-clip-app or the VQGAN-CLIP generator computes (written out here, small) and compares."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from logic.engines import vqgan_clip as engine
from logic.errors import UserError
from logic.models.demo import DEMO_VQGAN_CONFIG
from logic.models.vqgan import Vqgan
from logic.vqgan import cutouts as cut
from logic.vqgan.animation import move_pixels
from logic.vqgan.losses import tv_loss
from logic.vqgan.synthesis import Synthesiser, fit_area, to_pixels

from vqgan_helpers import CACHE, TINY, run_vqgan, write_image


def optimisation(**params):
    spec = engine.build_spec({**TINY, **params})
    models, _ = CACHE.get(engine.model_key(spec, "cpu"), lambda: engine.load_models(spec, "cpu"))
    spec = engine.prepare(spec, models)
    torch.manual_seed(spec.seed)
    return engine.build_optimisation(spec, models, "cpu", torch.Generator().manual_seed(spec.seed))


def is_on_codebook(z: torch.Tensor, codebook: torch.Tensor) -> bool:
    vectors = z.movedim(1, -1).reshape(-1, z.shape[1])
    distances = torch.cdist(vectors, codebook.detach(), compute_mode="donot_use_mm_for_euclid_dist")
    return bool(distances.min(1).values.max() < 1e-6)


# 1. Animation moves the latent after the step's update ---------------------------------------------

def test_animation_moves_the_updated_latent_not_the_image_before_the_update():
    opt = optimisation(prompt="a red fox", animate_every=1, zoom=1.2, lr=2.0)
    before_update, _ = engine.train_step(opt, 1)
    updated = opt.z.detach().clone()
    with torch.no_grad():
        after_update = opt.synth(updated)
    assert not torch.allclose(after_update, before_update)  # the step changed the picture
    engine.animate(opt, before_update)
    # The generator's zoom video: decode the current z, move it, encode it again (quantised).
    expected = opt.synth.encode(move_pixels(after_update, opt.spec.motion).clamp(0, 1))
    assert torch.allclose(opt.z, expected) and torch.equal(opt.z_start, opt.z)


def test_two_prompts_animated_every_step_give_different_latents():
    latents = []
    for prompt in ("a red fox", "a blue ocean"):
        opt = optimisation(prompt=prompt, animate_every=1, zoom=1.1, lr=1.0)
        for step in (1, 2):
            image, _ = engine.train_step(opt, step)
            engine.animate(opt, image)
        latents.append(opt.z.detach().clone())
    assert not torch.equal(*latents)


# 2. Encodes are quantised, as taming's encode returns them -------------------------------------------

def test_encode_returns_the_quantised_codes_of_taming_vqmodel():
    torch.manual_seed(0)
    vqgan = Vqgan(DEMO_VQGAN_CONFIG["model"]["params"]["ddconfig"], 32, DEMO_VQGAN_CONFIG["model"]["params"]["embed_dim"])
    pixels = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        h = vqgan.quant_conv(vqgan.encoder(pixels * 2 - 1))
        reference, _, _ = vqgan.quantize(h)  # taming's VectorQuantizer2, as VQModel.encode runs it
    encoded = Synthesiser(vqgan).encode(pixels)
    assert torch.allclose(encoded, reference, atol=1e-5) and is_on_codebook(encoded, vqgan.codebook)


def test_gumbel_encode_takes_the_argmax_code_not_a_soft_mix():
    torch.manual_seed(0)
    params = DEMO_VQGAN_CONFIG["model"]["params"]
    vqgan = Vqgan(params["ddconfig"], 32, params["ddconfig"]["z_channels"], gumbel=True).eval()
    pixels = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        logits = vqgan.quantize.proj(vqgan.quant_conv(vqgan.encoder(pixels * 2 - 1)))
        reference = vqgan.codebook[logits.argmax(1)].movedim(-1, 1)
    assert torch.allclose(Synthesiser(vqgan).encode(pixels), reference)


def test_starts_from_pixels_and_images_are_on_the_codebook(tmp_path):
    image = write_image(tmp_path / "init.png", size=(40, 30))
    for params in ({"init_noise": "pixels"}, {"init_noise": "gradient"}, {"init_image": str(image)}):
        opt = optimisation(prompt="x", mse_weight=0.5, **params)
        assert is_on_codebook(opt.z.detach(), opt.synth.vqgan.codebook), params
        assert torch.equal(opt.z_start, opt.z.detach())  # the MSE target is the same quantised start


# 3. TV: the vqgan-clip-app's, on the latent -----------------------------------------------------------

def reference_tv(z: torch.Tensor) -> torch.Tensor:
    """vqgan-clip-app's vqgan_utils.TVLoss, applied (as there) to the latent z."""
    padded = F.pad(z, (0, 1, 0, 1), "replicate")
    x_diff = padded[..., :-1, 1:] - padded[..., :-1, :-1]
    y_diff = padded[..., 1:, :-1] - padded[..., :-1, :-1]
    return (x_diff ** 2 + y_diff ** 2 + 1e-8).mean(dim=1).sqrt().mean()


def test_tv_loss_is_the_apps_regulariser_on_the_latent():
    z = torch.randn(1, 16, 6, 5, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(tv_loss(z), reference_tv(z))
    opt = optimisation(prompt="x", tv_weight=1e-3)
    start = opt.z.detach().clone()
    _, metrics = engine.train_step(opt, 1)
    assert metrics["loss/tv"] == pytest.approx(1e-3 * float(reference_tv(start)), rel=1e-4)


# 4. Cutouts and augmentations as the notebook makes them ----------------------------------------------

# The notebook's own ``resample`` (Lanczos-2 antialiasing, then bicubic), one crop at a time: the copy the
# benchmark times is the one reference, run from the project root as the test command does.
from benchmarks.notebook_reference import resample as notebook_resample  # noqa: E402


def test_batched_cutouts_resample_exactly_as_the_notebook():
    image = torch.rand(1, 3, 96, 80, generator=torch.Generator().manual_seed(0))
    boxes = cut.random_boxes(80, 96, 24, 8, 1.0, torch.Generator().manual_seed(1))
    ours = cut.resample_boxes(image, boxes, 24)
    reference = torch.cat([notebook_resample(image[:, :, int(y0):int(y1), int(x0):int(x1)], (24, 24))
                           for x0, y0, x1, y1 in boxes.tolist()])
    assert torch.allclose(ours, reference, atol=1e-5)


def test_repeated_boxes_are_resampled_once_with_the_same_result():
    """A box drawn twice is resampled once and repeated (an image narrower than the cut size has
    few possible boxes): the same cutouts and gradient as resampling every box."""
    image = torch.rand(1, 3, 20, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
    boxes = cut.random_boxes(16, 20, 24, 6, 1.0, torch.Generator().manual_seed(1))
    assert 1 < len(torch.unique(boxes, dim=0)) < len(boxes)  # repeats and two different boxes
    ours = cut.make_cutouts(image, 24, 6, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(ours, cut.resample_boxes(image, boxes, 24))
    (grad,) = torch.autograd.grad(ours.sum(), image)
    (reference,) = torch.autograd.grad(cut.resample_boxes(image, boxes, 24).sum(), image)
    assert torch.allclose(grad, reference, atol=1e-5)


def test_default_augmentations_are_the_notebooks_then_noise_then_clamp():
    import kornia.augmentation as K

    cutter = cut.Cutter(24, 8, 1.0, augments=engine.build_spec({**TINY, "prompt": "x"}).augments)
    stack = list(cutter.augmenter)
    kinds = (K.RandomHorizontalFlip, K.RandomSharpness, K.RandomAffine, K.RandomPerspective, K.ColorJitter)
    assert len(stack) == 5 and all(isinstance(a, kind) for a, kind in zip(stack, kinds))
    affine, perspective, jitter = (a._param_generator for a in stack[2:])
    assert (stack[2].p, float(affine.degrees), stack[3].p, float(perspective.distortion_scale)) == (0.8, 30, 0.4, 0.2)
    assert (stack[4].p, float(jitter.hue), float(jitter.saturation)) == (0.7, 0.01, 0.01)
    torch.manual_seed(0)
    pixels = cutter(torch.rand(1, 3, 48, 40)).pixels
    assert pixels.shape == (8, 3, 24, 24) and pixels.min() >= 0 and pixels.max() <= 1  # clamped after the noise


def test_augmentations_are_chosen_as_a_list_of_generator_codes(output_dir):
    import kornia.augmentation as K

    _, run, details = run_vqgan(output_dir, prompt="x", augment=True, augments=["Gn", "Ro", "Af"])
    assert details["status"] == "done" and details["resolved"]["augments"] == ["Gn", "Ro", "Af"]
    stack = list(cut.build_augmenter(["Gn", "Ro", "Af"], 24))
    assert [type(a) for a in stack] == [K.RandomGaussianNoise, K.RandomRotation, K.RandomAffine]
    with pytest.raises(UserError, match="Unknown augmentation 'Zz'. Known: Hf"):
        engine.build_spec({**TINY, "prompt": "x", "augments": ["Zz"]})


# 5. Image prompts keep their aspect ratio --------------------------------------------------------------

def reference_resize_image(image, out_size):
    """The references' ``resize_image`` (notebook, generator, vqgan-clip-app)."""
    ratio = image.size[0] / image.size[1]
    area = min(image.size[0] * image.size[1], out_size[0] * out_size[1])
    size = round((area * ratio) ** 0.5), round((area / ratio) ** 0.5)
    return image.resize(size, Image.LANCZOS)


def test_image_prompts_keep_their_aspect_ratio(tmp_path, monkeypatch):
    path = write_image(tmp_path / "wide.png", size=(120, 30))
    source = Image.open(path).convert("RGB")
    expected = reference_resize_image(source, (32, 32))
    assert fit_area(source, [32, 32]).size == expected.size == (64, 16)
    seen = []
    real_cutter = cut.Cutter.__call__
    monkeypatch.setattr(cut.Cutter, "__call__", lambda self, image: seen.append(image) or real_cutter(self, image))
    optimisation(prompt="x", image_prompts=[str(path)])
    wanted = to_pixels(expected, list(expected.size), "cpu")
    prompt_images = [image for image in seen if image.shape == wanted.shape]  # not the run's own image
    assert prompt_images and torch.allclose(prompt_images[0], wanted)


# 6. Noise prompts ---------------------------------------------------------------------------------------

def test_noise_prompts_are_the_notebooks_seeded_targets():
    opt = optimisation(prompt="x", noise_prompts=["42:0.5", {"seed": 7}])
    noise = [loss for loss in opt.image_losses if loss.name.startswith("noise-")]
    assert [(l.name, l.weight) for l in noise] == [("noise-42", 0.5), ("noise-7", 1.0)]
    dim = noise[0].embedding.shape[-1]
    reference = torch.empty([1, dim]).normal_(generator=torch.Generator().manual_seed(42))
    assert torch.allclose(noise[0].embedding, F.normalize(reference, dim=-1))
    _, metrics = engine.train_step(opt, 1)
    assert "loss/noise-42" in metrics
    with pytest.raises(UserError, match="not SEED:WEIGHT"):
        engine.build_spec({**TINY, "prompt": "x", "noise_prompts": ["fox:1"]})


def test_colour_jitter_is_kornias_with_the_same_draws():
    """The plain jitter (for speed) gives kornia's ColorJitter result for the same seed."""
    import kornia.augmentation as K

    pixels = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    ours = cut.hsv_jitter_class()(hue=0.01, saturation=0.01, p=0.7)
    reference = K.ColorJitter(hue=0.01, saturation=0.01, p=0.7)
    for seed in (3, 4):
        torch.manual_seed(seed)
        mine = ours(pixels)
        torch.manual_seed(seed)
        theirs = reference(pixels)
        assert torch.allclose(mine, theirs, atol=1e-5) and not torch.allclose(mine, pixels.clamp(0, 1), atol=1e-3)


def test_sequence_first_clip_gives_the_same_embeddings():
    """load_clip lays the ViT's attention out sequence-first (faster on a CPU): same numbers."""
    from logic.models.clip import set_sequence_first

    clip = CACHE.get(engine.model_key(engine.build_spec({**TINY, "prompt": "x"}), "cpu"),
                     lambda: engine.load_models(engine.build_spec({**TINY, "prompt": "x"}), "cpu"))[0].clip
    pixels = torch.rand(3, 3, clip.image_size, clip.image_size, generator=torch.Generator().manual_seed(0))
    assert clip.model.visual.transformer.batch_first is False
    fast = clip.encode_image(pixels)
    try:
        set_sequence_first(clip.model.visual, False)
        plain = clip.encode_image(pixels)
    finally:
        set_sequence_first(clip.model.visual, True)
    assert torch.allclose(fast, plain, atol=1e-5)


def test_clip_engine_layout_gives_the_same_embeddings_and_gradients():
    """load_clip lays the ViT out for speed (sequence-first attention, the patch embedding as one
    matmul over the patches, the last block for the class token alone): the same embeddings and
    pixel gradients as open_clip's layout."""
    from logic.models.clip import ClassTokenLastBlock, PatchMatmulConv2d, set_engine_layout

    clip = CACHE.get(engine.model_key(engine.build_spec({**TINY, "prompt": "x"}), "cpu"),
                     lambda: engine.load_models(engine.build_spec({**TINY, "prompt": "x"}), "cpu"))[0].clip
    visual = clip.model.visual
    pixels = torch.rand(3, 3, clip.image_size, clip.image_size, generator=torch.Generator().manual_seed(0))

    def embedded():
        x = pixels.clone().requires_grad_(True)
        embeddings = clip.encode_image(x)
        (embeddings * torch.arange(embeddings.shape[-1])).sum().backward()
        return embeddings, x.grad

    assert type(visual.conv1) is PatchMatmulConv2d and isinstance(visual.transformer, ClassTokenLastBlock)
    fast, fast_grad = embedded()
    try:
        set_engine_layout(visual, False)
        assert type(visual.conv1) is torch.nn.Conv2d and not isinstance(visual.transformer, ClassTokenLastBlock)
        plain, plain_grad = embedded()
    finally:
        set_engine_layout(visual, True)
    assert torch.allclose(fast, plain, atol=1e-5)
    assert torch.allclose(fast_grad, plain_grad, atol=1e-5 * plain_grad.abs().max())


def test_patch_matmul_is_the_convolution_edges_included():
    """Sizes that are not a multiple of the patch lose their last rows and columns, as the
    convolution does."""
    from logic.models.clip import PatchMatmulConv2d

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 16, 8, stride=8)
    x = torch.rand(2, 3, 35, 42)
    reference = conv(x)
    conv.__class__ = PatchMatmulConv2d
    assert torch.allclose(conv(x), reference, atol=1e-5) and conv(x).shape == reference.shape


def test_subpixel_upsample_is_tamings_nearest_upsample_then_conv():
    """The decoder's upsampling convolution computed on the small image (4/9 of the work) gives
    taming's ``Upsample`` (nearest 2x, 3x3 convolution) and its gradient, odd sizes included."""
    from taming.modules.diffusionmodules.model import Upsample

    from logic.models.vqgan import subpixel_upsample

    torch.manual_seed(0)
    upsample = Upsample(6, True)
    x = torch.rand(2, 6, 5, 7, requires_grad=True)
    weights = torch.rand(2, 6, 10, 14)
    reference = upsample(x)
    (reference_grad,) = torch.autograd.grad((reference * weights).sum(), x)
    ours = subpixel_upsample(upsample, x)
    (our_grad,) = torch.autograd.grad((ours * weights).sum(), x)
    assert ours.shape == reference.shape and torch.allclose(ours, reference, atol=1e-5)
    assert torch.allclose(our_grad, reference_grad, atol=1e-5)


def test_built_vqgans_decode_as_taming_does():
    """build_vqgan switches the decoder to sub-pixel upsampling and fused swish; the decode and its
    gradient are taming's."""
    from logic.models.vqgan import build_vqgan, set_engine_decoder

    torch.manual_seed(0)
    vqgan = build_vqgan(DEMO_VQGAN_CONFIG)[0].eval()
    names = {type(m).__name__ for m in vqgan.modules()}
    assert {"SubpixelUpsample", "SiluResnetBlock", "SiluDecoder"} <= names
    z = torch.randn(1, vqgan.embed_dim, 4, 4)
    weights = torch.rand(vqgan.decode(z).shape)

    def decoded():
        latent = z.clone().requires_grad_(True)
        image = vqgan.decode(latent)
        (image * weights).sum().backward()
        return image.detach(), latent.grad

    fast, fast_grad = decoded()
    set_engine_decoder(vqgan, False)
    assert not {"SubpixelUpsample", "SiluResnetBlock", "SiluDecoder"} & {type(m).__name__ for m in vqgan.modules()}
    plain, plain_grad = decoded()
    assert torch.allclose(fast, plain, atol=1e-5)
    assert torch.allclose(fast_grad, plain_grad, atol=1e-5 * plain_grad.abs().max())
