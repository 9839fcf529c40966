"""``python -m logic artists list | embed | match "PROMPT" | eval``: the artist library from the shell."""

from __future__ import annotations

import argparse
import json
import sys

from ..artists import HOW_TO_ADD, artist_settings, load_matcher, scan_library
from ..artists.config import METHODS


def register(subparsers) -> None:
    parser = subparsers.add_parser("artists", help="artist-style matching: list, embed, match, eval",
                                   description="Match prompts to the artists in assets/artists/.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    _options(actions.add_parser("list", help="the artists in the library")).set_defaults(handler=list_artists)
    _options(actions.add_parser("embed", help="embed new or changed artists")).set_defaults(handler=embed)
    match = _options(actions.add_parser("match", help="rank the artists for a prompt and rewrite it"))
    match.add_argument("prompt")
    match.add_argument("--top", type=int, help="how many artists to show (default 5)")
    match.add_argument("--artist", help="use this artist instead of the best match")
    match.add_argument("--json", action="store_true", help="print one JSON object")
    match.set_defaults(handler=match_prompt)
    evaluate = _options(actions.add_parser("eval", help="top-1/top-5/MRR and hub win share, before and after"))
    evaluate.add_argument("--heldout", metavar="DIR", help="held-out works, one folder per artist")
    evaluate.add_argument("--pairs", metavar="FILE", help="prompt -> artist pairs (TSV, '->', JSON or YAML)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=evaluate_matcher)


def _options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--artists-dir", metavar="DIR", help="the artist library (default: assets/artists)")
    parser.add_argument("--demo", action="store_true",
                        help="use the demo CLIP and the generated demo artists (no downloads needed)")
    parser.add_argument("--clip", help="CLIP model:tag (default from defaults.yaml, ViT-B-32:openai)")
    parser.add_argument("--clip-weights", metavar="FILE", help="a local open_clip weights file")
    parser.add_argument("--method", choices=METHODS, help="how scores are debiased (default zscore)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: auto)")
    return parser


def _settings(args):
    return artist_settings(folder=args.artists_dir, demo=args.demo or None, clip=args.clip,
                           clip_weights=args.clip_weights, method=args.method, device=args.device,
                           top=getattr(args, "top", None))


def _matcher(args):
    return load_matcher(_settings(args), progress=_print_progress)


def _print_progress(event: dict) -> None:
    end = "\n" if event["done"] >= event["total"] else ""
    print(f"\rembedding {event['artist'][:40]:<40} {event['done']}/{event['total']} images",
          end=end, file=sys.stderr, flush=True)


def list_artists(args) -> int:
    settings = _settings(args)
    if settings.demo and settings.folder is None:
        from ..artists.demo import ensure_demo_artists
        ensure_demo_artists(settings.artists_dir)
    artists = scan_library(settings.artists_dir)
    if not artists:
        print(HOW_TO_ADD.format(folder=settings.artists_dir))
        return 0
    for artist in artists:
        extra = ", ".join(x for x in (artist.years, artist.licence) if x)
        print(f"{artist.label:<36} {len(artist.images):>5} images" + (f"  ({extra})" if extra else ""))
    print(f"{len(artists)} artists in {settings.artists_dir}")
    return 0


def embed(args) -> int:
    matcher = _matcher(args)
    if matcher.index is None:
        print(HOW_TO_ADD.format(folder=matcher.settings.artists_dir))
        return 0
    print(f"{len(matcher.embedded)} artists embedded, {len(matcher.artists) - len(matcher.embedded)} already "
          f"up to date ({matcher.model}); cache in {matcher.cache.folder}")
    return 0


def match_prompt(args) -> int:
    matcher = _matcher(args)
    result = matcher.match(args.prompt, args.top, args.artist)
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return 0
    for rank, item in enumerate(result.matches, 1):
        print(f"{rank:>2}. {item['artist']:<36} {item['score']:+.3f}")
    print(f"confidence {result.confidence:.2f}" + (" (no strong match)" if result.no_strong_match else ""))
    print(f"prompt: {result.rewritten_prompt}" + (f"   [not rewritten: {result.skipped}]" if result.skipped else ""))
    return 0


def evaluate_matcher(args) -> int:
    from ..artists.evaluate import evaluate

    report = evaluate(_matcher(args), args.heldout, args.pairs)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    print(f"{report['artists']} artists, {report['bank_prompts']} generic prompts, {report['model']}")
    for label in ("before", "after"):
        part = report[label]
        name = "naive" if label == "before" else report["method"]
        print(f"{label:<6} ({name}): largest win share {part['max_win_share']:.1%} ({part['max_win_artist']}), "
              f"uniform {part['uniform_share']:.1%}")
        for key in ("prompts", "heldout"):
            if key in part:
                m = part[key]
                print(f"    {key:<8} n={m['n']}  top-1 {m['top1']:.1%}  top-5 {m['top5']:.1%}  MRR {m['mrr']:.3f}")
    return 0
