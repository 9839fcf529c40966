"""Run folders exactly as the original vqgan-clip-app (github.com/tnwei/vqgan-clip-app) wrote them.

One folder per shape its app.py and diffusion_app.py wrote over their history (the commit each
copies is named): folder names "YYYYMMDDTHHMMSS" (to 2021-09-20) and "YYYYMMDDTHHMMSS-<run_id>"
(URL-safe base64, so "-" and "_" occur), details.json written with ``json.dump(..., indent=4)``,
details.txt for a run stopped early in the first versions, a details.json cut short where the
2021-09-25 version passed datetimes to json.dump, output.PNG, anim.mp4, init-image.JPEG and
image-prompt-N.JPEG. ``expected`` is what Atelier must show of each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"  # the start of an MP4; never decoded here


@dataclass
class Layout:
    name: str                     # folder name
    commit: str                   # the original app's commit whose code wrote this shape
    details: dict | None = None   # written as that code did (json.dump, indent=4)
    details_file: str = "details.json"
    raw_text: str | None = None   # details written verbatim instead (a file cut short)
    inputs: tuple[str, ...] = ()  # init-image.JPEG, image-prompt-N.JPEG
    expected: dict = field(default_factory=dict)


def _vqgan(**keys) -> dict:
    return keys


LAYOUTS = [
    # 45359ad (2021-08-08) "replaced sqlite w/ fs": two keys; a stopped run wrote details.txt.
    Layout("20210808T101500", "45359ad", {"num_steps": 100, "text_input": "a lighthouse at dusk"},
           expected=dict(date="2021-08-08 10:15", status="done")),
    Layout("20210808T113000", "45359ad", {"num_steps": 37, "text_input": "a stopped harbour"},
           details_file="details.txt", expected=dict(date="2021-08-08 11:30", status="stopped")),
    # 577ce65 (2021-09-05) "added more metadata": seed (null when not set), size, vqgan_ckpt.
    Layout("20210905T090000", "577ce65",
           {"num_steps": 200, "text_input": "an orchard in fog", "seed": None, "Xdim": 256, "ydim": 256,
            "vqgan_ckpt": "vqgan_imagenet_f16_16384"},
           expected=dict(date="2021-09-05 09:00", model="vqgan_imagenet_f16_16384", status="done")),
    Layout("20210905T094500", "577ce65",
           {"num_steps": 61, "text_input": "a stopped wikiart sea", "seed": 42, "Xdim": 300, "ydim": 200,
            "vqgan_ckpt": "wikiart_16384"},
           details_file="details.txt",
           expected=dict(date="2021-09-05 09:45", model="wikiart_16384", status="stopped")),
    # cfb5a6c (2021-09-20) "added seed, total steps": planned_num_steps, -1 = until stopped.
    Layout("20210920T080000", "cfb5a6c",
           {"num_steps": 250, "planned_num_steps": -1, "text_input": "an endless spiral", "seed": 7,
            "Xdim": 256, "ydim": 256, "vqgan_ckpt": "vqgan_imagenet_f16_1024"},
           expected=dict(date="2021-09-20 08:00", model="vqgan_imagenet_f16_1024", status="stopped")),
    # 1cd65e3 (2021-09-20) "output tracking w runid": "<time>-<run_id>" (time of saving);
    # a continued run kept its parent's run_id and recorded no parent.
    Layout("20210920T211500-Qm-x_3aB", "1cd65e3",
           _vqgan(run_id="Qm-x_3aB", num_steps=300, planned_num_steps=300, text_input="a red fox",
                  init_image=False, continue_prev_run=False, seed=None, Xdim=256, ydim=256,
                  vqgan_ckpt="vqgan_imagenet_f16_16384"),
           expected=dict(date="2021-09-20 21:15", model="vqgan_imagenet_f16_16384", run_id="Qm-x_3aB")),
    Layout("20210920T213000-Qm-x_3aB", "1cd65e3",
           _vqgan(run_id="Qm-x_3aB", num_steps=100, planned_num_steps=100, text_input="a red fox, more",
                  init_image=False, continue_prev_run=True, seed=None, Xdim=256, ydim=256,
                  vqgan_ckpt="vqgan_imagenet_f16_16384"),
           expected=dict(date="2021-09-20 21:30", model="vqgan_imagenet_f16_16384", run_id="Qm-x_3aB")),
    # 7b8dd23 (2021-09-25) "output tracking w start end time": datetimes made json.dump raise after
    # "start_time": , leaving this file (the image and video were saved before).
    Layout("20210925T220000-tR7_aQ2w", "7b8dd23",
           raw_text='{\n    "run_id": "tR7_aQ2w",\n    "num_steps": 150,\n    "planned_num_steps": 150,\n'
                    '    "text_input": "a cut-short cathedral",\n    "init_image": false,\n'
                    '    "continue_prev_run": false,\n    "prev_run_id": null,\n    "seed": 12,\n'
                    '    "Xdim": 256,\n    "ydim": 256,\n    "vqgan_ckpt": "vqgan_imagenet_f16_16384",\n'
                    '    "start_time": ',
           expected=dict(date="2021-09-25 22:00", model="vqgan_imagenet_f16_16384", run_id="tR7_aQ2w")),
    # 63dafe3 (2021-09-26) "fixed datetime serialization": times as "%Y%m%dT%H%M%S"; the folder
    # takes the start time; prev_run_id links a continued run (26ba655) to its parent.
    Layout("20210926T100000-AAAAbbbb", "63dafe3",
           _vqgan(run_id="AAAAbbbb", num_steps=300, planned_num_steps=300, text_input="a glass forest",
                  init_image=False, continue_prev_run=False, prev_run_id=None, seed=None, Xdim=256,
                  ydim=256, vqgan_ckpt="vqgan_imagenet_f16_16384", start_time="20210926T100000",
                  end_time="20210926T100512"),
           expected=dict(date="2021-09-26 10:00", model="vqgan_imagenet_f16_16384", run_id="AAAAbbbb",
                         started="2021-09-26T10:00:00", finished="2021-09-26T10:05:12", seconds=312)),
    Layout("20210926T101000-ccDD-eef", "63dafe3",
           _vqgan(run_id="ccDD-eef", num_steps=100, planned_num_steps=100, text_input="a glass forest, later",
                  init_image=False, continue_prev_run=True, prev_run_id="AAAAbbbb", seed=None, Xdim=256,
                  ydim=256, vqgan_ckpt="vqgan_imagenet_f16_16384", start_time="20210926T101000",
                  end_time="20210926T101145"),
           expected=dict(date="2021-09-26 10:10", model="vqgan_imagenet_f16_16384", parent="AAAAbbbb",
                         started="2021-09-26T10:10:00", finished="2021-09-26T10:11:45", seconds=105)),
    # 32de14f (2021-09-28) "set seed to large int from torch.seed": a 64-bit seed.
    Layout("20210928T120000-b1gS33d_", "32de14f",
           _vqgan(run_id="b1gS33d_", num_steps=300, planned_num_steps=300, text_input="a moth",
                  init_image=False, continue_prev_run=False, prev_run_id=None, seed=17286318463253637281,
                  Xdim=256, ydim=256, vqgan_ckpt="coco", start_time="20210928T120000",
                  end_time="20210928T121000"),
           expected=dict(date="2021-09-28 12:00", model="coco", seed=17286318463253637281,
                         started="2021-09-28T12:00:00", finished="2021-09-28T12:10:00", seconds=600)),
    # eef0ff3 (2021-10-11) "tracking uploaded im inputs": init-image.JPEG, image-prompt-N.JPEG.
    Layout("20211011T183000-InPuT5ab", "eef0ff3",
           _vqgan(run_id="InPuT5ab", num_steps=300, planned_num_steps=300, text_input="a portrait in ink",
                  init_image=True, image_prompts=True, continue_prev_run=False, prev_run_id=None, seed=3,
                  Xdim=320, ydim=256, vqgan_ckpt="vqgan_imagenet_f16_16384", start_time="20211011T183000",
                  end_time="20211011T184001"),
           inputs=("init-image.JPEG", "image-prompt-0.JPEG", "image-prompt-1.JPEG"),
           expected=dict(date="2021-10-11 18:30", model="vqgan_imagenet_f16_16384",
                         started="2021-10-11T18:30:00", finished="2021-10-11T18:40:01", seconds=601)),
    # ae32237 (2021-10-14) "add mse regularization": stopped at 120 of 300 steps.
    Layout("20211014T070000-mse_WT01", "ae32237",
           _vqgan(run_id="mse_WT01", num_steps=120, planned_num_steps=300, text_input="a stopped storm",
                  init_image=False, image_prompts=False, continue_prev_run=False, prev_run_id=None, seed=5,
                  Xdim=256, ydim=256, vqgan_ckpt="sflckr", start_time="20211014T070000",
                  end_time="20211014T070230", mse_weight=0.5, mse_weight_decay=0.1,
                  mse_weight_decay_steps=50),
           expected=dict(date="2021-10-14 07:00", model="sflckr", status="stopped",
                         started="2021-10-14T07:00:00", finished="2021-10-14T07:02:30", seconds=150)),
    # edb5fa8 (2021-10-24) "added tv loss weight to JSON output".
    Layout("20211024T230000-tvLoSs-1", "edb5fa8",
           _vqgan(run_id="tvLoSs-1", num_steps=300, planned_num_steps=300, text_input="a calm lake",
                  init_image=False, image_prompts=False, continue_prev_run=False, prev_run_id=None, seed=8,
                  Xdim=256, ydim=256, vqgan_ckpt="vqgan_imagenet_f16_16384", start_time="20211024T230000",
                  end_time="20211025T000100", mse_weight=0.5, mse_weight_decay=0.1,
                  mse_weight_decay_steps=50, tv_loss_weight=0.001),
           expected=dict(date="2021-10-24 23:00", model="vqgan_imagenet_f16_16384",
                         started="2021-10-24T23:00:00", finished="2021-10-25T00:01:00", seconds=3660)),
    # 07d6bc0 (2021-11-04) "support for guided diffusion models": diffusion_app.py, ckpt.
    Layout("20211104T200000-d1FfUs10", "07d6bc0",
           {"run_id": "d1FfUs10", "diffusion_method": "256x256 HQ Uncond", "ckpt": "256x256_diffusion_uncond.pt",
            "num_steps": 500, "planned_num_steps": 500, "text_input": "a diffused garden",
            "continue_prev_run": True, "seed": None, "Xdim": 256, "ydim": 256,
            "start_time": "20211104T200000", "end_time": "20211104T201500"},
           expected=dict(date="2021-11-04 20:00", model="256x256_diffusion_uncond.pt", guided=True,
                         started="2021-11-04T20:00:00", finished="2021-11-04T20:15:00", seconds=900)),
    # 9651bc1 + 19eeb30 (2021-12) guided diffusion with cutout augmentations and the commit SHA.
    Layout("20211212T101010-gD_augs2", "9651bc1",
           {"run_id": "gD_augs2", "diffusion_method": "512x512 HQ Cond", "ckpt": "512x512_diffusion.pt",
            "num_steps": 1000, "planned_num_steps": 1000, "text_input": "a diffused city",
            "continue_prev_run": True, "seed": 4, "Xdim": 512, "ydim": 512,
            "start_time": "20211212T101010", "end_time": "20211212T110010",
            "use_cutout_augmentations": True, "commit_sha": "9651bc"},
           expected=dict(date="2021-12-12 10:10", model="512x512_diffusion.pt", guided=True,
                         started="2021-12-12T10:10:10", finished="2021-12-12T11:00:10", seconds=3000)),
    # faaac35 (2021-12-18) "scrolling/zooming": transform keys, cutout augs, commit SHA.
    Layout("20211218T150000-Zo0m_in1", "faaac35",
           _vqgan(run_id="Zo0m_in1", num_steps=300, planned_num_steps=300, text_input="a zooming tunnel",
                  init_image=False, image_prompts=False, continue_prev_run=False, prev_run_id=None, seed=9,
                  Xdim=256, ydim=256, vqgan_ckpt="vqgan_gumbel_f8", start_time="20211218T150000",
                  end_time="20211218T151500", mse_weight=0.0, mse_weight_decay=0.0,
                  mse_weight_decay_steps=0, tv_loss_weight=0.0, translation_x=0.0, translation_y=2.0,
                  rotation_angle=1.0, zoom_factor=1.02, transform_interval=10,
                  use_cutout_augmentations=True, commit_sha="faaac3"),
           expected=dict(date="2021-12-18 15:00", model="vqgan_gumbel_f8",
                         started="2021-12-18T15:00:00", finished="2021-12-18T15:15:00", seconds=900)),
    # 82aff79 (2022-03-01, the last version): "continue previous run" of the zooming run.
    Layout("20220301T090000-Zo0m_in2", "82aff79",
           _vqgan(run_id="Zo0m_in2", num_steps=200, planned_num_steps=200, text_input="a zooming tunnel, deeper",
                  init_image=False, image_prompts=False, continue_prev_run=True, prev_run_id="Zo0m_in1", seed=9,
                  Xdim=256, ydim=256, vqgan_ckpt="vqgan_gumbel_f8", start_time="20220301T090000",
                  end_time="20220301T090959", mse_weight=0.0, mse_weight_decay=0.0,
                  mse_weight_decay_steps=0, tv_loss_weight=0.0, commit_sha="82aff7"),
           expected=dict(date="2022-03-01 09:00", model="vqgan_gumbel_f8", parent="Zo0m_in1",
                         started="2022-03-01T09:00:00", finished="2022-03-01T09:09:59", seconds=599)),
]


def write_layout(output: Path, layout: Layout) -> Path:
    folder = output / layout.name
    folder.mkdir(parents=True)
    Image.new("RGB", (32, 32), "purple").save(folder / "output.PNG", format="PNG")
    for name in layout.inputs:
        Image.new("RGB", (16, 16), "white").save(folder / name, format="JPEG")
    (folder / "anim.mp4").write_bytes(MP4)
    text = layout.raw_text if layout.raw_text is not None else json.dumps(layout.details, indent=4)
    (folder / layout.details_file).write_text(text)
    return folder


def write_all(output: Path) -> dict[str, Path]:
    return {layout.name: write_layout(output, layout) for layout in LAYOUTS}
