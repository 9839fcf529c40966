"""Artist-matching speed: match latency over a large cached library, and embedding throughput.

    python benchmarks/artists_bench.py                      # 1,000 artists x 50 images, ViT-B-32 and ViT-L-14 on CPU
    python benchmarks/artists_bench.py --device cuda --batch 32

Match latency uses synthetic normalised 512-d embeddings (the real index code, a 219-prompt bank,
text-prototype fusion on); embedding throughput builds the real open_clip architectures with random
weights (``pretrained=None``), so the speed is the real model's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logic.artists.matcher import ArtistIndex, normalise  # noqa: E402


def bench_match(artists: int, images: int, dim: int, queries: int, method: str) -> dict:
    g = torch.Generator().manual_seed(0)
    embeddings = [normalise(torch.randn(images, dim, generator=g)) for _ in range(artists)]
    bank = torch.randn(219, dim, generator=g)
    text_protos = torch.randn(artists, dim, generator=g)
    start = time.perf_counter()
    index = ArtistIndex([f"artist {i}" for i in range(artists)], embeddings, bank, text_protos,
                        method=method, fusion=0.25)
    build_s = time.perf_counter() - start
    prompts = torch.randn(queries, dim, generator=g)
    index.rank(prompts[0])  # warm-up
    times = []
    for prompt in prompts:
        start = time.perf_counter()
        index.rank(prompt, 5)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"artists": artists, "images_per_artist": images, "dim": dim, "method": method,
            "index_build_s": round(build_s, 3), "match_ms_median": round(statistics.median(times), 3),
            "match_ms_p95": round(times[int(0.95 * len(times)) - 1], 3), "match_ms_max": round(times[-1], 3)}


def bench_cache_load(artists: int, images: int, dim: int) -> dict:
    """Reading the embeddings of ``artists`` from safetensors files through EmbeddingCache.load."""
    from types import SimpleNamespace

    from logic.artists.cache import EmbeddingCache
    from logic.artists.library import Artist

    with tempfile.TemporaryDirectory() as tmp:
        fake_clip = SimpleNamespace(name="bench", pretrained="none", image_size=224, mean=(0, 0, 0), std=(1, 1, 1),
                                    model=SimpleNamespace(embed_dim=dim))
        cache = EmbeddingCache(Path(tmp), fake_clip)
        library = [Artist(f"artist {i}", Path(tmp), ()) for i in range(artists)]
        for artist in library:
            cache._save_artist(artist, torch.randn(images, dim), [])
        start = time.perf_counter()
        loaded = cache.load(library)
        seconds = time.perf_counter() - start
    return {"artists": len(loaded), "cache_load_s": round(seconds, 3)}


def bench_embedding(model_name: str, device: str, batch: int, iterations: int) -> dict:
    import open_clip

    model = open_clip.create_model(model_name, pretrained=None, device=device).eval()
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    pixels = torch.rand(batch, 3, size, size, device=device)
    with torch.inference_mode():
        model.encode_image(pixels)  # warm-up
        _sync(device)
        start = time.perf_counter()
        for _ in range(iterations):
            model.encode_image(pixels)
        _sync(device)
        seconds = time.perf_counter() - start
    return {"model": model_name, "device": device, "batch": batch, "threads": torch.get_num_threads(),
            "images_per_s": round(batch * iterations / seconds, 2)}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artists", type=int, default=1000)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--method", default="zscore")
    parser.add_argument("--models", nargs="*", default=["ViT-B-32", "ViT-L-14"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args()
    results = [bench_match(args.artists, args.images, args.dim, args.queries, args.method),
               bench_cache_load(args.artists, args.images, args.dim)]
    print(json.dumps(results[0]), flush=True)
    print(json.dumps(results[1]), flush=True)
    for name in args.models:
        print(json.dumps(bench_embedding(name, args.device, args.batch, args.iterations)), flush=True)


if __name__ == "__main__":
    main()
