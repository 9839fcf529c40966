"""Stable Diffusion engine overhead against a plain diffusers pipeline call, same components.

CPU part: the full-size SD 1.5 UNet / VAE / CLIP text encoder (the configs shipped in
logic/models/sd_configs/sd15) with random weights, 128x128, 4 steps, previews every step.
Each variant runs in a fresh process (so "first call" means first call):

* plain  : ``StableDiffusionPipeline.__call__`` on the main thread
* plain-thread : the same call on a helper thread, as the engine makes it (see BENCHMARKS.md: on a
           busy 2-core machine a call from the main thread measured markedly slower, so this is the
           like-for-like baseline for the engine's own cost)
* engine : the whole ``jobs.execute_run`` generate phase (engine + previews + mp4 frames), models
           handed in through the cache so loading is not counted

GPU part (only when CUDA exists): 512x512 fp16, 20 steps, it/s plain vs engine, and what
channels_last and torch.compile(unet) add.

SDXL part (``--family sdxl``): the full-size SDXL base architecture (logic/models/sd_configs/sdxl, about
3.5 billion random weights, ~14 GB of RAM in fp32) is built once, then a plain
``StableDiffusionXLPipeline`` call and the engine's generate phase alternate in one process, side by
side, ``--rounds`` times each (128x128, 2 steps, CFG 7); medians are reported.

    python benchmarks/diffusion_bench.py                 # SD 1.5: prints a Markdown table
    python benchmarks/diffusion_bench.py --family sdxl --size 128 --steps 2 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = ["plain", "plain-thread", "engine"]
PROMPT, NEGATIVE, SCHEDULER = "a lighthouse in a storm, oil painting", "blurry", "Euler"


def random_sd15(dtype=None, device: str = "cpu"):
    """Full-size SD 1.5 components with random weights (no init maths: fill, then set norms to 1)."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from logic.engines import sd_common
    from logic.models.diffusion import CONFIGS_DIR, load_clip_tokenizer

    configs = CONFIGS_DIR / "sd15"
    torch.manual_seed(0)

    def build(factory):
        with torch.device("meta"):
            module = factory()
        module = module.to_empty(device="cpu")
        with torch.no_grad():
            for name, param in module.named_parameters():
                if "norm" in name and name.endswith("weight"):
                    param.fill_(1.0)
                elif name.endswith("bias"):
                    param.zero_()
                else:
                    param.normal_(0, 0.02)
            for name, buffer in module.named_buffers():
                if "position_ids" in name:
                    buffer.copy_(torch.arange(buffer.shape[-1]).expand_as(buffer))
        return module.eval()

    unet = build(lambda: UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet")))
    vae = build(lambda: AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")))
    text = build(lambda: CLIPTextModel(CLIPTextConfig.from_json_file(str(configs / "text_encoder" / "config.json"))))
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text,
                                   tokenizer=load_clip_tokenizer(sd_common.tokenizer_cache()),
                                   scheduler=sd_common.make_scheduler(SCHEDULER, _scheduler_config()),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    if dtype is not None:
        pipe.to(device, dtype)
    return pipe


def random_sdxl():
    """Full-size SDXL base components with random weights, from the shipped configs."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from logic.engines import sd_common
    from logic.models.diffusion import CONFIGS_DIR, load_clip_tokenizer

    configs = CONFIGS_DIR / "sdxl"
    torch.manual_seed(0)
    unet = _random(lambda: UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet")))
    vae = _random(lambda: AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")))
    text = _random(lambda: CLIPTextModel(CLIPTextConfig.from_json_file(str(configs / "text_encoder" / "config.json"))))
    text_2 = _random(lambda: CLIPTextModelWithProjection(
        CLIPTextConfig.from_json_file(str(configs / "text_encoder_2" / "config.json"))))
    from diffusers import EulerDiscreteScheduler

    scheduler_config = EulerDiscreteScheduler.load_config(configs / "scheduler")
    pipe = StableDiffusionXLPipeline(unet=unet, vae=vae, text_encoder=text, text_encoder_2=text_2,
                                     tokenizer=load_clip_tokenizer(sd_common.tokenizer_cache()),
                                     tokenizer_2=load_clip_tokenizer(sd_common.tokenizer_cache(), pad_token="!"),
                                     scheduler=sd_common.make_scheduler(SCHEDULER, scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _random(factory):
    """A module built on the meta device, then filled (no init maths: normal weights, unit norms, zero biases)."""
    import torch

    with torch.device("meta"):
        module = factory()
    module = module.to_empty(device="cpu")
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.fill_(1.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.normal_(0, 0.02)
        for name, buffer in module.named_buffers():
            if "position_ids" in name:
                buffer.copy_(torch.arange(buffer.shape[-1]).expand_as(buffer))
    return module.eval()


def sdxl_side_by_side(size: int, steps: int, rounds: int, variants: list[str]) -> dict[str, list[float]]:
    """Plain call (main thread and/or helper thread) and the engine, alternating in one process."""
    os.environ.setdefault("ATELIER_ASSETS", tempfile.mkdtemp())
    started = time.perf_counter()
    pipe = random_sdxl()
    print(f"  built SDXL in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    output = Path(tempfile.mkdtemp())
    calls = {"plain": lambda: plain_call(pipe, size, steps),
             "plain-thread": lambda: in_thread(lambda: plain_call(pipe, size, steps)),
             "engine": lambda: engine_call(pipe, size, steps, "cpu", output)}
    calls["plain-thread"]()  # warm-up: first-call costs (allocator, oneDNN) are paid once, before any timing
    times = {name: [] for name in variants}
    for round_index in range(rounds):
        shift = round_index % len(variants)
        order = variants[shift:] + variants[:shift]
        for name in order:
            times[name].append(calls[name]())
            print(f"  round {round_index + 1} {name}: {times[name][-1]:.2f} s", file=sys.stderr)
    return times


def _scheduler_config():
    from diffusers import PNDMScheduler

    from logic.models.diffusion import CONFIGS_DIR

    return PNDMScheduler.load_config(CONFIGS_DIR / "sd15" / "scheduler")


def plain_call(pipe, size: int, steps: int) -> float:
    import torch

    started = time.perf_counter()
    pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=7.0, height=size, width=size,
         generator=[torch.Generator().manual_seed(0)], output_type="pil")
    return time.perf_counter() - started


def engine_call(pipe, size: int, steps: int, device: str, output: Path) -> float:
    """The job layer's generate phase for a diffusion run with these components."""
    from logic import jobs
    from logic.engines import diffusion, sd_common
    from logic.models.diffusion import MemoryPlan, ModelSource, SdModels

    params = dict(prompt=PROMPT, negative=NEGATIVE, steps=steps, cfg=7.0, size=[size, size], seed=0,
                  scheduler=SCHEDULER, preview_every=1, model="demo", safety=False)
    engine, spec, run = jobs.submit_run("diffusion", params, output)
    models = SdModels(pipe, ModelSource("folder", "", f"random-{type(pipe).__name__}"), MemoryPlan(), device)
    cache = jobs.ModelCache()
    cache.get(sd_common.model_key(spec, device), lambda: models)
    jobs.execute_run(engine, spec, run, device=device, cache=cache)
    details = json.loads((run.path / "details.json").read_text())
    assert details["status"] == "done", details.get("error")
    return details["timing"]["generate_s"]


def in_thread(function):
    import threading

    result = []
    thread = threading.Thread(target=lambda: result.append(function()))
    thread.start()
    thread.join()
    return result[0]


def child(variant: str, size: int, steps: int) -> dict:
    os.environ.setdefault("ATELIER_ASSETS", tempfile.mkdtemp())
    started = time.perf_counter()
    pipe = random_sd15()
    build_s = time.perf_counter() - started
    output = Path(tempfile.mkdtemp())
    calls = {"plain": lambda: plain_call(pipe, size, steps),
             "plain-thread": lambda: in_thread(lambda: plain_call(pipe, size, steps)),
             "engine": lambda: engine_call(pipe, size, steps, "cpu", output)}
    call = calls[variant]
    first, second = call(), call()
    return {"variant": variant, "first_s": first, "second_s": second, "build_s": build_s}


def cpu_part(size: int, steps: int, order: list[str]) -> list[dict]:
    rows = []
    for variant in order:
        out = subprocess.run([sys.executable, __file__, "--child", variant, "--size", str(size), "--steps", str(steps)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {variant}: first {rows[-1]['first_s']:.2f} s, second {rows[-1]['second_s']:.2f} s", file=sys.stderr)
    return rows


def median_rows(rows: list[dict]) -> dict[str, dict]:
    """Per variant, the median first-call and second-call times over its processes."""
    import statistics

    return {variant: {key: statistics.median(r[key] for r in rows if r["variant"] == variant)
                      for key in ("first_s", "second_s")} for variant in VARIANTS}


def gpu_part(size: int = 512, steps: int = 20) -> list[tuple[str, float]]:
    """it/s at 512x512 fp16: plain, engine, plain + channels_last, plain + torch.compile(unet)."""
    import torch

    pipe = random_sd15(torch.float16, "cuda")
    output = Path(tempfile.mkdtemp())
    results = []
    plain_call(pipe, size, steps)  # warm-up (cuDNN autotune, allocator)
    results.append(("plain fp16", steps / plain_call(pipe, size, steps)))
    results.append(("engine fp16", steps / engine_call(pipe, size, steps, "cuda", output)))
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    plain_call(pipe, size, steps)
    results.append(("plain fp16 + channels_last", steps / plain_call(pipe, size, steps)))
    try:
        pipe.unet = torch.compile(pipe.unet, mode="max-autotune-no-cudagraphs")
        plain_call(pipe, size, steps)  # compile
        results.append(("plain fp16 + channels_last + torch.compile(unet)", steps / plain_call(pipe, size, steps)))
    except Exception as exc:  # noqa: BLE001 - compile is optional; report why it is missing
        results.append((f"torch.compile unavailable ({type(exc).__name__})", float("nan")))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=VARIANTS)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--skip-gpu", action="store_true")
    parser.add_argument("--family", choices=["sd15", "sdxl"], default="sd15")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="--family sdxl: which calls alternate (plain, plain-thread, engine)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="fresh processes per variant, in rotating order; medians are reported (one process "
                             "per variant swings by 20%% on a 2-core machine)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.size, args.steps)))
        return
    import torch

    if args.family == "sdxl":
        return sdxl_report(args)
    rows = median_rows([r for i in range(args.rounds)
                        for r in cpu_part(args.size, args.steps, VARIANTS[i % 3:] + VARIANTS[:i % 3])])
    print(f"CPU ({torch.get_num_threads()} threads), SD 1.5 full size, random weights, {args.size}x{args.size}, "
          f"{args.steps} steps, CFG 7, previews every step; median of {args.rounds} fresh processes per variant:\n")
    print("| variant | first call (s) | second call (s) |\n|---|---|---|")
    for variant in VARIANTS:
        print(f"| {variant} | {rows[variant]['first_s']:.2f} | {rows[variant]['second_s']:.2f} |")
    for base in ("plain-thread", "plain"):
        for key, label in (("first_s", "first"), ("second_s", "second")):
            overhead = 100 * (rows["engine"][key] / rows[base][key] - 1)
            print(f"\nEngine vs {base}, {label} call: {overhead:+.1f}%")
    if torch.cuda.is_available() and not args.skip_gpu:
        print(f"\nGPU ({torch.cuda.get_device_name()}), 512x512 fp16, 20 steps:\n\n| variant | it/s |\n|---|---|")
        for name, rate in gpu_part():
            print(f"| {name} | {rate:.2f} |")
    else:
        print("\nNo CUDA GPU here: the GPU part was skipped.")


def sdxl_report(args) -> None:
    import statistics

    import torch

    variants = args.variants.split(",")
    times = sdxl_side_by_side(args.size, args.steps, args.rounds, variants)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"CPU ({torch.get_num_threads()} threads), SDXL base full size, random weights, {args.size}x{args.size}, "
          f"{args.steps} steps, CFG 7, previews every step; one process, calls alternating, "
          f"median of {args.rounds}:\n")
    print("| variant | median (s) | all (s) |\n|---|---|---|")
    for name in variants:
        print(f"| {name} | {medians[name]:.2f} | {', '.join(f'{t:.2f}' for t in times[name])} |")
    for base in (b for b in ("plain-thread", "plain") if b in medians):
        print(f"\nEngine vs {base}: {100 * (medians['engine'] / medians[base] - 1):+.1f}%")


if __name__ == "__main__":
    main()
