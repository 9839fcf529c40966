"""VQGAN+CLIP speed: the engine beside a bare loop of the same computation and the notebook's loop.

CPU (default): full-size architectures with random weights (taming's imagenet_f16_16384 config,
open_clip ViT-B-32), 128x128, cutn 8, the notebook's augmentations, noise and clamp on both sides
(``--no-augment``: off on both). Three loops run side by side, interleaved in rounds so that a
busy machine slows them alike:

  notebook  benchmarks/notebook_reference.py, the public notebook's step (goal: engine <= 0.85x)
  bare      the engine's own step functions in a plain for-loop (no progress, previews, files)
  engine    a whole run through logic.jobs.execute_run (progress, preview, frames, details.json);
            goal: at most 5% slower than bare

GPU (``--gpu``, when CUDA exists): engine it/s and peak VRAM at 480x480 and 640x480, fp32 against
mixed precision (bf16 where supported, else fp16), and the final losses of both.

    python benchmarks/vqgan_bench.py [--steps 6] [--rounds 3] [--size 128 128] [--no-augment] [--cpu-time]
                                     [--threads N] [--gpu]

On a machine shared with other jobs, ``--cpu-time --threads 1`` is the steadiest reading: with two
or more threads, OpenMP workers spin while they wait for a descheduled sibling and that spinning
counts as CPU time (a busy 2-core machine read 3 to 4 times the idle figure).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from logic import jobs, runs  # noqa: E402
from logic.engines import vqgan_clip as engine  # noqa: E402
from logic.engines.base import RunContext  # noqa: E402
from logic.models.clip import ClipModel, set_engine_layout  # noqa: E402
from logic.models.vqgan import build_vqgan, set_engine_decoder  # noqa: E402
from notebook_reference import NotebookLoop  # noqa: E402

IMAGENET_F16_16384 = {"model": {"target": "taming.models.vqgan.VQModel", "params": {
    "embed_dim": 256, "n_embed": 16384,
    "ddconfig": {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3,
                 "ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16],
                 "dropout": 0.0},
}}}
PROMPT = "a lighthouse in a storm, oil painting"


def full_size_models(device: str, folder: Path) -> engine.VqganModels:
    """Random-weight full-size VQGAN and ViT-B-32: the real architectures, so the real costs."""
    import open_clip

    torch.manual_seed(0)
    vqgan, _ = build_vqgan(IMAGENET_F16_16384)
    vqgan = vqgan.eval().requires_grad_(False).to(device)
    model = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True, device=device)
    model = model.eval().requires_grad_(False)
    set_engine_layout(model.visual, True)  # as load_clip lays it out for the engine
    clip = ClipModel(model, open_clip.get_tokenizer("ViT-B-32"), "ViT-B-32", "random", 224,
                     open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    weights = folder / "random-weights.ckpt"
    weights.write_bytes(b"random weights: see vqgan_bench.py")  # describe() fingerprints a file
    return engine.VqganModels(vqgan, clip, weights, "imagenet_f16_16384-random")


AUGMENT = True  # set from --augment / --no-augment
# Wall time by default; --cpu-time: this process's CPU time (all its threads), which a machine
# shared with other jobs disturbs far less than wall time.
clock = time.perf_counter


def bench_spec(size, steps, precision="fp32", **extra) -> engine.VqganSpec:
    return engine.VqganSpec(prompt=PROMPT, size=list(size), steps=steps, seed=0, cutn=8, augment=AUGMENT,
                            precision=precision, **extra)


def time_notebook(models, size, steps) -> float:
    clip = models.clip
    loop = NotebookLoop(models.vqgan, clip.model, clip.mean, clip.std, (clip.tokenizer, [PROMPT]), size, 8,
                        augment=AUGMENT)
    set_engine_layout(clip.model.visual, False)  # the notebook gets CLIP as open_clip makes it
    set_engine_decoder(models.vqgan, False)  # and the decoder as taming wrote it
    try:
        loop.train(0)  # warm-up, as the other loops get
        started = clock()
        for i in range(steps):
            loop.train(i + 1)
        return (clock() - started) / steps
    finally:
        set_engine_layout(clip.model.visual, True)
        set_engine_decoder(models.vqgan, True)


def time_bare(models, size, steps, device="cpu") -> float:
    """The same computation as a run, with none of the bookkeeping (the engine's own functions)."""
    spec = bench_spec(size, steps)
    torch.manual_seed(spec.seed)
    opt = engine.build_optimisation(spec, models, device, torch.Generator().manual_seed(spec.seed))
    engine.train_step(opt, 0)
    started = clock()
    for step in range(1, steps + 1):
        engine.train_step(opt, step)
    return (clock() - started) / steps


def time_engine(models, size, steps, output: Path, device="cpu", precision="fp32") -> tuple[float, dict]:
    """A whole run through execute_run, timed from the first step's end to the last (as bare)."""
    spec = bench_spec(size, steps + 1, precision)
    cache = jobs.ModelCache()
    cache._key, cache._models = engine.model_key(spec, device), models
    run = runs.create_run(output, "vqgan", spec.to_params())
    speedometers = []

    class Recorded(jobs._Speedometer):
        """The run's own step timer, reading ``clock`` (wall or process CPU time)."""

        def __init__(self):
            super().__init__()
            self._last = clock()
            speedometers.append(self)

        def tick(self) -> None:
            now = clock()
            self.durations.append(now - self._last)
            self._last = now

    jobs._Speedometer, original = Recorded, jobs._Speedometer
    try:
        jobs.execute_run(engine, spec, run, device=device, cache=cache)
    finally:
        jobs._Speedometer = original
    cache._models = None  # the models stay alive for the next round; do not free them
    details = runs.read_details(run.path)
    assert details["status"] == "done", details["error"]
    # Step-to-step intervals: everything the loop does, bookkeeping included; the first (model
    # preparation and a warm-up step) is left out, as the other loops leave out their warm-up.
    durations = speedometers[0].durations[1:]
    return sum(durations) / len(durations), details


def cpu(args) -> None:
    torch.set_grad_enabled(True)
    size = list(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        models = full_size_models("cpu", Path(tmp))
        times = {"notebook": [], "bare": [], "engine": []}
        for round_ in range(args.rounds):
            times["notebook"].append(time_notebook(models, size, args.steps))
            times["bare"].append(time_bare(models, size, args.steps))
            times["engine"].append(time_engine(models, size, args.steps, Path(tmp) / "output")[0])
            print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s/step" for k, v in times.items()),
                  flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    augment = "the notebook's augmentations" if AUGMENT else "no augmentation"
    timer = "process CPU time" if clock is time.process_time else "wall time"
    print(f"\nCPU, {torch.get_num_threads()} threads, {size[0]}x{size[1]}, cutn 8, {augment}, {timer}, "
          f"{args.steps} steps x {args.rounds} rounds (median of rounds):")
    for name, value in med.items():
        print(f"  {name:9s} {value:.3f} s/step")
    print(f"  engine / notebook = {med['engine'] / med['notebook']:.2f}  (goal <= 0.85)")
    print(f"  engine bookkeeping = {100 * (med['engine'] / med['bare'] - 1):+.1f}%  (goal <= 5%)")


def gpu(args) -> None:
    if not torch.cuda.is_available():
        print("No CUDA GPU: the GPU part needs one.")
        return
    with tempfile.TemporaryDirectory() as tmp:
        models = full_size_models("cuda", Path(tmp))
        for size in ([480, 480], [640, 480]):
            rows = {}
            for precision in ("fp32", "auto"):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                seconds, details = time_engine(models, size, args.gpu_steps, Path(tmp) / "out", "cuda", precision)
                loss = runs.read_metrics(next((Path(tmp) / "out").glob(f"*{details['run_id']}")))[-1]["loss"]
                rows[details.get("precision_used", precision)] = (1 / seconds, torch.cuda.max_memory_allocated() / 2**30, loss)
            print(f"\nGPU {torch.cuda.get_device_name()}, {size[0]}x{size[1]}, cutn 8, {args.gpu_steps} steps:")
            base = rows["fp32"]
            for name, (it_s, vram, loss) in rows.items():
                print(f"  {name:5s} {it_s:6.2f} it/s  peak VRAM {vram:5.2f} GiB  final loss {loss:.4f}  "
                      f"({it_s / base[0]:.2f}x it/s, {100 * vram / base[1]:.0f}% VRAM)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per loop per round (CPU)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gpu", action="store_true", help="also run the GPU part (needs CUDA)")
    parser.add_argument("--gpu-steps", type=int, default=100)
    parser.add_argument("--size", type=int, nargs=2, default=[128, 128], metavar=("W", "H"), help="CPU run size")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                        help="the notebook's augmentations, noise and clamp on both sides")
    parser.add_argument("--cpu-time", action="store_true", help="time by process CPU time (a busy machine)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    global AUGMENT, clock
    AUGMENT = args.augment
    clock = time.process_time if args.cpu_time else time.perf_counter
    cpu(args)
    if args.gpu:
        gpu(args)


if __name__ == "__main__":
    main()
