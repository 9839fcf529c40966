"""A lean, faithful copy of the public VQGAN+CLIP notebook's training step (Crowson, 2021).

Kept as the yardstick for ``vqgan_bench.py``: one decode per step, cutouts cut and resampled one
by one with the notebook's ``resample`` (Lanczos-2 antialiasing, then bicubic), its augmentation
stack (flip, sharpness, affine, perspective, colour jitter), noise and clamp, the notebook's
``vector_quantize`` (full distance matrix and a one-hot matmul), its ``Prompt`` module and clamp.
What the notebook does only for display (``checkin``: saving images, printing losses) is left
out, so the reference is lean. ``augment=False`` drops the augmentations and the noise, as the
engine's ``augment`` switch does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# The notebook's two autograd helpers (straight-through, clamp with gradient) are the same code
# as the engine's, so they are shared; what differs, and is timed, is below.
from logic.vqgan.synthesis import clamp_with_grad, replace_grad


def sinc(x):
    return torch.where(x != 0, torch.sin(math.pi * x) / (math.pi * x), x.new_ones([]))


def lanczos(x, a):
    cond = torch.logical_and(-a < x, x < a)
    out = torch.where(cond, sinc(x) * sinc(x / a), x.new_zeros([]))
    return out / out.sum()


def ramp(ratio, width):
    n = math.ceil(width / ratio + 1)
    out = torch.empty([n])
    cur = 0
    for i in range(out.shape[0]):
        out[i] = cur
        cur += ratio
    return torch.cat([-out[1:].flip([0]), out])[1:-1]


def resample(input, size, align_corners=True):
    n, c, h, w = input.shape
    dh, dw = size
    input = input.view([n * c, 1, h, w])
    if dh < h:
        kernel_h = lanczos(ramp(dh / h, 2), 2).to(input.device, input.dtype)
        pad_h = (kernel_h.shape[0] - 1) // 2
        input = F.pad(input, (0, 0, pad_h, pad_h), 'reflect')
        input = F.conv2d(input, kernel_h[None, None, :, None])
    if dw < w:
        kernel_w = lanczos(ramp(dw / w, 2), 2).to(input.device, input.dtype)
        pad_w = (kernel_w.shape[0] - 1) // 2
        input = F.pad(input, (pad_w, pad_w, 0, 0), 'reflect')
        input = F.conv2d(input, kernel_w[None, None, None, :])
    input = input.view([n, c, h, w])
    return F.interpolate(input, size, mode='bicubic', align_corners=align_corners)


def vector_quantize(x, codebook):
    d = x.pow(2).sum(dim=-1, keepdim=True) + codebook.pow(2).sum(dim=1) - 2 * x @ codebook.T
    indices = d.argmin(-1)
    x_q = F.one_hot(indices, codebook.shape[0]).to(d.dtype) @ codebook
    return replace_grad(x_q, x)


class Prompt(nn.Module):
    def __init__(self, embed, weight=1., stop=float('-inf')):
        super().__init__()
        self.register_buffer('embed', embed)
        self.register_buffer('weight', torch.as_tensor(weight))
        self.register_buffer('stop', torch.as_tensor(stop))

    def forward(self, input):
        input_normed = F.normalize(input.unsqueeze(1), dim=2)
        embed_normed = F.normalize(self.embed.unsqueeze(0), dim=2)
        dists = input_normed.sub(embed_normed).norm(dim=2).div(2).arcsin().pow(2).mul(2)
        dists = dists * self.weight.sign()
        return self.weight.abs() * replace_grad(dists, torch.maximum(dists, self.stop)).mean()


def notebook_augs():
    import kornia.augmentation as K

    return nn.Sequential(
        K.RandomHorizontalFlip(p=0.5),
        K.RandomSharpness(0.3, p=0.4),
        K.RandomAffine(degrees=30, translate=0.1, p=0.8, padding_mode='border'),
        K.RandomPerspective(0.2, p=0.4),
        K.ColorJitter(hue=0.01, saturation=0.01, p=0.7))


class MakeCutouts(nn.Module):
    def __init__(self, cut_size, cutn, cut_pow=1., augment=True):
        super().__init__()
        self.cut_size = cut_size
        self.cutn = cutn
        self.cut_pow = cut_pow
        self.augs = notebook_augs() if augment else None
        self.noise_fac = 0.1 if augment else None

    def forward(self, input):
        sideY, sideX = input.shape[2:4]
        max_size = min(sideX, sideY)
        min_size = min(sideX, sideY, self.cut_size)
        cutouts = []
        for _ in range(self.cutn):
            size = int(torch.rand([])**self.cut_pow * (max_size - min_size) + min_size)
            offsetx = torch.randint(0, sideX - size + 1, ())
            offsety = torch.randint(0, sideY - size + 1, ())
            cutout = input[:, :, offsety:offsety + size, offsetx:offsetx + size]
            cutouts.append(resample(cutout, (self.cut_size, self.cut_size)))
        batch = torch.cat(cutouts, dim=0)
        if self.augs is not None:
            batch = self.augs(batch)
        if self.noise_fac:
            facs = batch.new_empty([self.cutn, 1, 1, 1]).uniform_(0, self.noise_fac)
            batch = batch + facs * torch.randn_like(batch)
        return clamp_with_grad(batch, 0, 1)


class NotebookLoop:
    """The notebook's globals (model, perceptor, z, opt, pMs) gathered in one object."""

    def __init__(self, vqgan, clip_model, mean, std, prompts, size, cutn, cut_pow=1.0, lr=0.1, seed=0,
                 augment=True):
        torch.manual_seed(seed)
        self.model, self.perceptor = vqgan, clip_model
        self.normalize = lambda x: (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        cut_size = clip_model.visual.image_size
        cut_size = cut_size[0] if isinstance(cut_size, (tuple, list)) else cut_size
        self.make_cutouts = MakeCutouts(cut_size, cutn, cut_pow=cut_pow, augment=augment)
        codebook = vqgan.quantize.embedding.weight
        e_dim, n_toks = codebook.shape[1], codebook.shape[0]
        f = 2**(len(vqgan.decoder.ch_mult) - 1) if hasattr(vqgan.decoder, "ch_mult") else vqgan.factor
        toksX, toksY = size[0] // f, size[1] // f
        self.z_min = codebook.min(dim=0).values[None, :, None, None]
        self.z_max = codebook.max(dim=0).values[None, :, None, None]
        one_hot = F.one_hot(torch.randint(n_toks, [toksY * toksX]), n_toks).float()
        z = one_hot @ codebook
        self.z = z.view([-1, toksY, toksX, e_dim]).permute(0, 3, 1, 2).clone().requires_grad_(True)
        self.opt = torch.optim.Adam([self.z], lr=lr)
        self.pMs = []
        tokenizer, texts = prompts
        for text in texts:
            embed = clip_model.encode_text(tokenizer([text])).float()
            self.pMs.append(Prompt(embed, 1.0, float('-inf')))

    def synth(self, z):
        z_q = vector_quantize(z.movedim(1, 3), self.model.quantize.embedding.weight).movedim(3, 1)
        return clamp_with_grad(self.model.decode(z_q).add(1).div(2), 0, 1)

    def ascend_txt(self):
        out = self.synth(self.z)
        iii = self.perceptor.encode_image(self.normalize(self.make_cutouts(out))).float()
        return [prompt(iii) for prompt in self.pMs]

    def train(self, i):
        self.opt.zero_grad()
        lossAll = self.ascend_txt()
        loss = sum(lossAll)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.z.copy_(self.z.maximum(self.z_min).minimum(self.z_max))
